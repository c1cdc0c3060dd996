"""API models of audience: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from app.core.models import Any_, Reply, Strict, Tag
from app.core.statuses import JobStatus


class GenerateCustomers(Strict):
    count: int = Field(ge=1, le=1_000_000)
    domain: str = Field(default="demo.operator.example", pattern=r"^[A-Za-z0-9.-]{1,200}$")
    tag: Tag | None = None


class Audience(Strict):
    """Who receives a campaign. Unsubscribed customers are always left out."""

    tag: Tag | None = None
    plan: str | None = Field(default=None, max_length=100)
    is_client: bool | None = None
    email_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,200}$")


class JobStarted(Reply):
    job_id: str
    status_url: str
    status: JobStatus = Field(description="queued: it runs when one of the jobs before "
                                          "it ends (a few run at a time)")


class JobView(Reply):
    id: str
    kind: str
    status: JobStatus
    total: int | None
    done: int
    progress: float
    result: Any_ | None
    error: str | None
    created_at: str
    finished_at: str | None


class GenerationResult(Reply):
    created: int
    tag: str
    domain: str


class ImportResult(Reply):
    imported: int
    invalid: list[Any_]
    duplicates: list[Any_]
    tag: str | None


class CustomerView(Reply):
    id: str
    email: str
    created_at: str


class CustomerList(Reply):
    customers: list[CustomerView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null on the last page")
    estimated_total: int = Field(description="about how many match (from a 1/1,024 "
                                             "sample): an estimate, not a count")


SuppressedChannel = Literal["email", "sms", "all"]


class NewSuppression(Strict):
    channel: SuppressedChannel = Field(description="the channel, or `all` (unsubscribed)")
    address: str = Field(min_length=3, max_length=320,
                         description="an email address, or a phone number in E.164")
    note: str | None = Field(default=None, max_length=300)


class SuppressionView(Reply):
    channel: str
    address: str
    reason: str = Field(description="hard-bounce, soft-bounces, complaint, unsubscribe, "
                                    "stop, blocked or operator")
    detail: Any_
    at: str


class SuppressionList(Reply):
    suppressions: list[SuppressionView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null on the last page")
