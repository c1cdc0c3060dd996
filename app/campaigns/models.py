"""API models of campaigns: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import (
    AwareDatetime,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.audience.models import Audience
from app.channels.registry import ChannelOptions, channel_named
from app.core.models import Any_, Name, Reply, Strict
from app.core.statuses import CampaignStatus
from app.core.windows import Window

# The names in `app.channels.registry` (a test checks).
Channel = Literal["email", "sms", "telegram", "whatsapp", "webpush"]


def _rule(info: ValidationInfo) -> list:
    """The campaign's channel and its fallback, as validated so far."""
    return [channel_named(name) for name in
            [info.data.get("channel"), *(info.data.get("fallback") or [])]]


class Templates(Strict):
    """What a campaign says: an email's subject and bodies, or an SMS's text (body_text;
    an SMS has no subject or HTML)."""

    channel: Channel = "email"
    fallback: list[Channel] = Field(default_factory=list, max_length=3, description=(
        "channels to try, in order, for a recipient the campaign's channel cannot reach "
        "(no address or linked chat there, or suppressed there); one message per "
        "recipient whichever carries it"))
    subject: str = Field(default="", max_length=1000, validate_default=True,
                         description="email (or an email fallback): required")
    body_text: str = Field(min_length=1, max_length=200_000,
                           description="the email's text part, or the SMS text")
    body_html: str | None = Field(default=None, max_length=500_000, description="email only")
    channel_options: ChannelOptions = Field(default_factory=ChannelOptions, description=(
        "what a channel needs beyond the text (WhatsApp: its approved template)"))

    @field_validator("fallback")
    @classmethod
    def _each_channel_once(cls, fallback: list[str], info: ValidationInfo) -> list[str]:
        rule = [info.data.get("channel") or "email", *fallback]
        if len(set(rule)) != len(rule):
            raise ValueError("each channel at most once, the campaign's own not again")
        return fallback

    @field_validator("subject")
    @classmethod
    def _email_has_a_subject(cls, subject: str, info: ValidationInfo) -> str:
        for channel in _rule(info):
            if channel.needs_subject and not subject.strip():
                raise ValueError(f"an {channel.name} campaign (or fallback) needs a subject")
        return subject

    @field_validator("body_html")
    @classmethod
    def _sms_has_no_html(cls, body_html: str | None, info: ValidationInfo) -> str | None:
        if body_html and not any(channel.takes_html for channel in _rule(info)):
            raise ValueError(f"an {info.data.get('channel')} campaign has no HTML body")
        return body_html


class Tracking(Strict):
    """Open and click tracking of a campaign's emails (`app.channels.email.tracking`);
    off unless asked."""

    opens: bool = Field(default=False, description="a 1x1 image in the HTML part")
    clicks: bool = Field(default=False, description="links go through a signed redirect")


class CampaignCreate(Templates):
    name: Name
    audience: Audience = Field(default_factory=Audience)
    tracking: Tracking = Field(default_factory=Tracking)
    customers_choice: bool = Field(default=False, description=(
        "a customer's own `preferred_channel` (an imported column), when it is one of "
        "the campaign's channels and reaches them, goes first; needs a fallback"))
    fallback_after_s: int | None = Field(default=None, ge=10, le=7 * 86400, description=(
        "a message a channel of the rule does not confirm within this many seconds (or "
        "that it reports failed) goes by the next channel; unset: only who a channel "
        "cannot reach, or refuses at once, goes by the next"))
    confirm: Literal["delivered", "read"] = Field(default="delivered", description=(
        "what confirms a message for `fallback_after_s`: its delivery (a WhatsApp or "
        "SMS receipt), or its reading (a WhatsApp read receipt, an email's open)"))

    @model_validator(mode="after")
    def _a_choice_needs_channels(self) -> Self:
        if self.customers_choice and not self.fallback:
            raise ValueError("customers_choice needs a fallback: with one channel there "
                             "is nothing to choose")
        if self.fallback_after_s is not None and not self.fallback:
            raise ValueError("fallback_after_s needs a fallback: a channel to go by next")
        return self


class PreviewRequest(Templates):
    customer_email: str | None = Field(default=None, max_length=320)


class FrequencyCap(Strict):
    messages: int = Field(ge=1, le=50, description="at most this many campaign messages")
    days: float = Field(gt=0, le=365, description="per customer in this many days")


class LaunchOptions(Strict):
    workers: int = Field(default=4, ge=1, le=512, description="send tasks in flight")
    batch_size: int = Field(default=50, ge=1, le=5000)
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=100_000)
    connections: int | None = Field(default=None, ge=1, le=64,
                                    description="SMTP connections per send task")
    frequency_cap: FrequencyCap | Literal["off"] | None = Field(default=None, description=(
        "this campaign's frequency cap across campaigns and channels; `off` for none; "
        "unset: the operator's (COMMS_FREQUENCY_CAP_MESSAGES)"))
    start_at: AwareDatetime | None = Field(default=None, description=(
        "send from this time on (with its offset, e.g. 2026-12-24T10:00:00-03:00); at "
        "launch it must be in the future, within a year"))
    send_window: str | None = Field(default=None, max_length=11, description=(
        "HH:MM-HH:MM in each recipient's local time: messages outside it wait for it "
        "(the channel's window, COMMS_SEND_WINDOWS, applies too)"))

    @field_validator("send_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            Window.parse(value)  # ValueError: a 422 naming the field
        return value


class Sample(Reply):
    """The campaign's counts at one moment of its run (the throughput series)."""

    t: str
    sent: int = 0
    failed: int = 0
    dead: int = 0


class CampaignView(Reply):
    id: str
    name: str
    status: CampaignStatus
    channel: Channel = "email"
    fallback: list[Channel] = Field(default_factory=list, description=(
        "the channels tried, in order, for whom the channel cannot reach"))
    customers_choice: bool = Field(default=False, description=(
        "a customer's own preferred channel goes first"))
    fallback_after_s: int | None = Field(default=None, description=(
        "the time a channel of the rule has to confirm a message"))
    confirm: Literal["delivered", "read"] = "delivered"
    funnel: dict[str, dict[str, int]] = Field(default_factory=dict, description=(
        "per channel that carried messages: sent, delivered, read, clicked, "
        "undeliverable (where the channel reports them)"))
    audience: Audience | None
    templates: Any_ | None
    tracking: Tracking
    launch: LaunchOptions | None = Field(description="the launch options, as launched "
                                                     "(connections resolved)")
    counts: dict[str, int] = Field(description="recipients by delivery status, and total")
    retries: int
    retry_rounds: int = Field(default=0, description="times its failed sends were retried")
    audience_counted: bool = Field(description="false while the audience is still read")
    progress: float
    throughput_per_s: float
    recent_throughput_per_s: float | None
    eta_s: float | None
    elapsed_s: float
    by_node: dict[str, int]
    by_worker: dict[str, int]
    rates: dict[str, float] = Field(description="delivered (the channel's meaning), opened "
                                                "and clicked (of those sent)")
    timeline: list[Sample]
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


class RetryReply(Reply):
    round: int = Field(description="this retry round's number (1 for the first)")
    retrying: int = Field(description="deliveries sent again")
    by_status: dict[str, int] = Field(description="of those, how many were dead or failed")
