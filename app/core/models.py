"""API models of core: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reply(BaseModel):
    model_config = ConfigDict(extra="allow")


Any_ = dict[str, Any]


class FieldProblem(Reply):
    field: str = Field(description="where: body.<name>, query.<name>, path.<name>, file")
    message: str


class InvalidInput(Reply):
    """A 422: every problem with the request, each naming its field (never echoing the
    submitted value, which may be a secret)."""

    detail: list[FieldProblem]


class Period(Reply):
    from_: str = Field(alias="from")
    to: str


class Check(Reply):
    status: str = Field(description="up or down")
    error: str | None = None


class Liveness(Reply):
    status: str = Field(description="ok, or degraded (HTTP 503)")


class Health(Reply):
    status: str = Field(description="ok, or degraded (HTTP 503) naming what is down")
    down: list[str]
    mongodb: Check
    smtp: Check
    ray: Check
    mode: dict[str, str]


class RouteView(Reply):
    rate_per_s: float = Field(description="the rate the route adapted to, now")
    ceiling_per_s: float = Field(description="the operator's ceiling for it")
    throttled: int = Field(description="'slow down' answers heard (messages deferred)")
    clean: int = Field(description="other answers heard")
    cuts: int = Field(description="times the rate was cut")
    last_throttled_s_ago: float | None


class Routes(Reply):
    routes: dict[str, RouteView] = Field(description=(
        "each route that adapts (relay, smsc), by name; empty until one has answered"))


class SystemView(Reply):
    nodes: list[Any_]
    health: Health
    ray_dashboard_port: int
    local_mode: bool
