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
    routes: dict[str, Check] = Field(default_factory=dict, description=(
        "each relay and SMSC: down while a breaker has it out"))
    mode: dict[str, str]


class RouteView(Reply):
    channel: str = Field(description="the channel it carries (email, sms)")
    weight: float = Field(description="its share of the channel's messages")
    state: str = Field(description="in service, or out (a breaker took it out)")
    out_for_s: float | None = Field(default=None, description="seconds out, while out")
    outages: int = Field(default=0, description="times a breaker took it out")
    last_error: str | None = Field(default=None, description="why it last went out")
    rate_per_s: float | None = Field(default=None, description=(
        "the rate the route adapted to, now (routes with a ceiling, once they answered)"))
    ceiling_per_s: float | None = Field(default=None, description=(
        "the operator's ceiling for it (none: no cap)"))
    throttled: int = Field(default=0, description=(
        "'slow down' answers heard (messages deferred)"))
    clean: int = Field(default=0, description="other answers heard")
    cuts: int = Field(default=0, description="times the rate was cut")
    last_throttled_s_ago: float | None = None


class Routes(Reply):
    routes: dict[str, RouteView] = Field(description=(
        "every relay and SMSC by route key (relay, relay:<name>, smsc, smsc:<name>)"))


class SystemView(Reply):
    nodes: list[Any_]
    health: Health
    ray_dashboard_port: int
    local_mode: bool
