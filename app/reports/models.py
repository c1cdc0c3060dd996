"""API models of reports: what the performance, billing and reconcile routes return."""

from __future__ import annotations

from pydantic import Field

from app.core.models import Any_, Period, Reply

FUNNEL = ("per channel that carried messages: sent, delivered, read, clicked, "
          "undeliverable, where the channel reports them (an email's open is its read)")


class CampaignPerformance(Reply):
    campaign_id: str
    name: str
    recipients: int
    sent: int
    failed: int
    dead: int
    pending: int
    skipped: int = 0
    delivery_rate: float
    opened: int
    clicked: int
    open_rate: float
    click_rate: float
    retries: int
    throughput_per_min: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    failures_by_code: dict[str, int]
    by_node: dict[str, int]
    by_worker: dict[str, int]
    funnel: dict[str, dict[str, int]] = Field(default_factory=dict, description=FUNNEL)


class PerformanceTotals(Reply):
    recipients: int
    sent: int
    failed: int
    dead: int
    pending: int
    retries: int
    opened: int
    clicked: int
    delivery_rate: float
    open_rate: float
    click_rate: float
    funnel: dict[str, dict[str, int]] = Field(default_factory=dict, description=FUNNEL)


class DropOff(Reply):
    node: str | None = Field(description="the flow node open sessions stopped at")
    sessions: int


class ChatFigures(Reply):
    sessions: int
    completed: int
    completion_rate: float
    drop_off: list[DropOff]
    handoffs: int


class MarketingFigures(Reply):
    refusals: int
    counter_offers_sent: int
    accepted: int
    conversion_rate: float
    median_time_to_accept_s: float | None


class PerformanceReport(Reply):
    period: Period
    campaigns: list[CampaignPerformance]
    totals: PerformanceTotals
    chat: ChatFigures
    marketing: MarketingFigures


class BillingAssumptions(Reply):
    billing_months: int
    email_cost: float
    sms_cost: float


class BillingTotals(Reply):
    revenue: float
    conversions: int
    emails: int
    sms_segments: int
    cost: float
    net: float


class BillingDay(BillingTotals):
    day: str


class CampaignCost(Reply):
    campaign_id: str
    name: str
    emails: int
    sms_segments: int
    cost: float
    net: float


class BillingReport(Reply):
    period: Period
    currency: str
    assumptions: BillingAssumptions
    totals: BillingTotals
    revenue_by_source: dict[str, float]
    by_day: list[BillingDay]
    by_campaign: list[CampaignCost]


class ReconcileReply(Reply):
    period: Period
    checked: int
    drifted: int
    drift: list[Any_]
    repaired: bool
