"""API models: what clients send (validated, with limits) and the shapes we return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from app.accounts import Role
from app.statuses import CampaignStatus, JobStatus
from app.webhooks import EVENT_TYPES

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


Channel = Literal["email", "sms"]


class Templates(Strict):
    """What a campaign says: an email's subject and bodies, or an SMS's text (body_text;
    an SMS has no subject or HTML)."""

    channel: Channel = "email"
    subject: str = Field(default="", max_length=1000, validate_default=True,
                         description="email: required")
    body_text: str = Field(min_length=1, max_length=200_000,
                           description="the email's text part, or the SMS text")
    body_html: str | None = Field(default=None, max_length=500_000, description="email only")

    @field_validator("subject")
    @classmethod
    def _email_has_a_subject(cls, subject: str, info: ValidationInfo) -> str:
        if info.data.get("channel", "email") == "email" and not subject.strip():
            raise ValueError("an email campaign needs a subject")
        return subject

    @field_validator("body_html")
    @classmethod
    def _sms_has_no_html(cls, body_html: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("channel") == "sms" and body_html:
            raise ValueError("an SMS has no HTML body")
        return body_html


class Tracking(Strict):
    """Open and click tracking of a campaign's emails (`app.tracking`); off unless asked."""

    opens: bool = Field(default=False, description="a 1x1 image in the HTML part")
    clicks: bool = Field(default=False, description="links go through a signed redirect")


class CampaignCreate(Templates):
    name: Name
    audience: Audience = Field(default_factory=Audience)
    tracking: Tracking = Field(default_factory=Tracking)


class PreviewRequest(Templates):
    customer_email: str | None = Field(default=None, max_length=320)


class LaunchOptions(Strict):
    workers: int = Field(default=4, ge=1, le=512, description="send tasks in flight")
    batch_size: int = Field(default=50, ge=1, le=5000)
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=100_000)
    connections: int | None = Field(default=None, ge=1, le=64,
                                    description="SMTP connections per send task")



# Replies. Each names the fields clients rely on; `extra="allow"` keeps what a view adds
# beyond them (open-ended maps such as counts by status or by worker), so the schema
# documents the reply without the model filtering it.


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


class CampaignView(Reply):
    id: str
    name: str
    status: CampaignStatus
    audience: Any_ | None
    templates: Any_ | None
    launch: Any_ | None = Field(description="the launch options: workers, batch size, "
                                            "rate limit, connections")
    counts: dict[str, int] = Field(description="recipients by delivery status, and total")
    retries: int
    audience_counted: bool = Field(description="false while the audience is still read")
    progress: float
    throughput_per_s: float
    recent_throughput_per_s: float | None
    eta_s: float | None
    elapsed_s: float
    by_node: dict[str, int]
    by_worker: dict[str, int]
    timeline: list[Any_]
    failure_reason: str | None
    created_at: str
    launched_at: str | None
    tasks_in_flight: int | None = Field(default=None, description="while it is active")


class CampaignList(Reply):
    campaigns: list[CampaignView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null on the last page")


class PreviewReply(Reply):
    subject: str
    body_text: str
    body_html: str | None
    customer: str
    sms: dict[str, Any] | None = Field(
        default=None, description="an SMS's encoding (GSM-7 or UCS-2), segments, characters")


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


class ChatMessage(Reply):
    seq: int
    role: str
    text: str
    options: list[Any]
    node: str | None
    kind: str
    offer: Any_ | None
    created_at: str


class ChatHealth(Reply):
    status: str
    replica: str
    remembered_sessions: int


class NewSessionReply(Reply):
    session_id: str
    token: str = Field(description="send as Authorization: Bearer <token>")
    verification: str | None = Field(
        default=None, description="'pending' when an email or phone was claimed: if it is "
        "on file, a code went to it; POST it to /api/sessions/{id}/verify to link the "
        "session. The same answer for any address.")
    messages: list[ChatMessage]


class VerifiedReply(Reply):
    verified: bool


class TurnReply(Reply):
    messages: list[ChatMessage]


class InboxReply(Reply):
    messages: list[ChatMessage]
    cursor: int = Field(description="pass as `after` to read only what is newer")


class ClearedReply(Reply):
    messages: list[ChatMessage]
    cleared: bool


class SessionsOverview(Reply):
    sessions: list[Any_] = Field(description="most recently active first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page of "
                                                "sessions; null on the last page")
    open_handoffs: list[Any_]
    total_sessions: int


class MarketingOverview(Reply):
    counts: dict[str, int]
    conversion_rate: float
    scheduled: list[Any_]
    recent: list[Any_]


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


class SystemView(Reply):
    nodes: list[Any_]
    health: Health
    ray_dashboard_port: int
    local_mode: bool


class Outbox(Reply):
    total: int
    matched: int
    messages: list[Any_]


class PerformanceReport(Reply):
    period: Period
    campaigns: list[Any_]
    totals: Any_
    chat: Any_
    marketing: Any_


class BillingReport(Reply):
    period: Period
    currency: str
    assumptions: Any_
    totals: Any_
    revenue_by_source: Any_
    by_day: list[Any_]
    by_campaign: list[Any_]


class ReconcileReply(Reply):
    period: Period
    checked: int
    drifted: int
    drift: list[Any_]
    repaired: bool


class SignupOverview(Reply):
    configured: bool
    account: str | None
    state: Any_ | None
    counts: dict[str, int]
    by_campaign: list[Any_]
    recent: list[Any_]
    review_queue: list[Any_]
    watcher: Any_


class Poked(Reply):
    poked: bool


# Accounts.

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{2,63}$")]
Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]


class SignIn(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenReply(Reply):
    token: str = Field(description="send as Authorization: Bearer <token>")
    token_type: str
    expires_at: str
    username: str
    role: str


class Me(Reply):
    username: str
    role: str
    via: str = Field(description="password, api-key or admin-token")


class NewUser(Strict):
    username: Username
    password: Password
    role: Role


class UserChange(Strict):
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = None


class UserView(Reply):
    username: str
    role: str
    disabled: bool
    created_at: str
    created_by: str | None
    api_keys: list[Any_] = Field(description="id, label and creation time; never the key")


class UserList(Reply):
    users: list[UserView]


class NewApiKey(Strict):
    label: str | None = Field(default=None, max_length=100)


class ApiKeyReply(Reply):
    key: str = Field(description="shown once: only a hash of it is kept")
    id: str
    label: str | None
    created_at: str


class AuditEntry(Reply):
    id: str
    at: str
    who: str
    role: str
    via: str
    action: str
    target: str | None
    detail: Any_


class AuditList(Reply):
    entries: list[AuditEntry]
    next_cursor: str | None


# Webhooks -------------------------------------------------------------------------------

WebhookUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000,
                                              pattern=r"^https?://[^\s/?#]+[^\s]*$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z]+\.[a-z_]+$")]


class WebhookEvents(Strict):
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str] | None) -> list[str] | None:
        unknown = sorted(set(events or []) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
        return events


class NewWebhook(WebhookEvents):
    url: WebhookUrl
    events: list[EventType] = Field(min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=200)
    ordered: bool = Field(default=False, description="one at a time, in creation order")
    max_in_flight: int = Field(default=4, ge=1, le=32)


class WebhookChange(WebhookEvents):
    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=200)
    ordered: bool | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=32)
    enabled: bool | None = None


class WebhookView(Reply):
    id: str
    url: str
    events: list[str]
    ordered: bool
    max_in_flight: int
    enabled: bool
    disabled_reason: str | None
    waiting: dict[str, int] | None = Field(default=None,
                                           description="messages pending and dead")
    secret: str | None = Field(default=None, description="shown once, at creation")


class WebhookList(Reply):
    webhooks: list[WebhookView]
    event_types: dict[str, str]


class WebhookMessages(Reply):
    messages: list[Any_]
    next_cursor: str | None


class Replayed(Reply):
    replayed: int
