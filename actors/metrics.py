"""The app's metrics beyond the send path, exported like it through Ray's metrics
agent on every node (Ray prefixes `ray_` on export: `ray_comms_chat_turns_total`).

`EXPORTED` names every metric the app records, with its kind: the Grafana dashboard in
`monitoring/` is checked against it (`tests/test_monitoring.py`). Each holder is created
once per process, where its metrics are recorded.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge

from app.campaigns.send_tasks import SendMetrics

CHAT_TURNS = "comms_chat_turns_total"
OFFERS = "comms_offers_total"
WEBHOOK_ATTEMPTS = "comms_webhook_attempts_total"
ROUTE_RATE = "comms_route_rate_per_s"
ROUTE_THROTTLED = "comms_route_throttled_total"
ROUTE_UP = "comms_route_up"
FUNNEL = "comms_funnel_total"
JOURNEY_CUSTOMERS = "comms_journey_customers"
JOURNEY_MOVES = "comms_journey_moves_total"

EXPORTED = {
    **SendMetrics.EXPORTED,
    CHAT_TURNS: "counter",
    OFFERS: "counter",
    WEBHOOK_ATTEMPTS: "counter",
    ROUTE_RATE: "gauge",
    ROUTE_THROTTLED: "counter",
    ROUTE_UP: "gauge",
    FUNNEL: "counter",
    JOURNEY_CUSTOMERS: "gauge",
    JOURNEY_MOVES: "counter",
}


class ChatMetrics:
    """Chat turns taken, by how they came in (REST or WebSocket); in ChatBot replicas."""

    _instance: ChatMetrics | None = None

    def __init__(self) -> None:
        self.turns = Counter(CHAT_TURNS, description="Chat turns taken.", tag_keys=("via",))

    @classmethod
    def get(cls) -> ChatMetrics:
        if cls._instance is None:
            cls._instance = ChatMetrics()
        return cls._instance


class OfferMetrics:
    """Counter-offers by what happened to them (scheduled, sent, accepted); in the
    marketing actor."""

    _instance: OfferMetrics | None = None

    def __init__(self) -> None:
        self.offers = Counter(OFFERS, description="Counter-offers by status.",
                              tag_keys=("status",))

    @classmethod
    def get(cls) -> OfferMetrics:
        if cls._instance is None:
            cls._instance = OfferMetrics()
        return cls._instance

    def count(self, status: str, n: int = 1) -> None:
        if n:
            self.offers.inc(n, tags={"status": status})


class JourneyMetrics:
    """Customers at each step of each journey (a gauge per shard: sum over `shard`),
    and the ways they leave steps; in the journey shards."""

    _instance: JourneyMetrics | None = None

    def __init__(self) -> None:
        self.customers = Gauge(JOURNEY_CUSTOMERS, description="Customers at a journey step.",
                               tag_keys=("journey", "version", "step", "shard"))
        self.moves = Counter(JOURNEY_MOVES, description="Customers leaving journey steps, "
                             "by the way they went (done, event, timeout, a case, an arm).",
                             tag_keys=("journey", "step", "way"))
        self.shown: set[tuple[str, str]] = set()

    @classmethod
    def get(cls) -> JourneyMetrics:
        if cls._instance is None:
            cls._instance = JourneyMetrics()
        return cls._instance

    def at(self, shard: int, counts: dict[tuple[str, str], int]) -> None:
        """This shard's customers at each (version id, step) now; steps emptied since
        the last call are set to 0."""
        now = {(version_id, step) for version_id, step in counts}
        for version_id, step in self.shown | now:
            journey, _, version = version_id.partition("@")
            self.customers.set(counts.get((version_id, step), 0), tags={
                "journey": journey, "version": version, "step": step, "shard": str(shard)})
        self.shown = now

    def moved(self, ways: dict[tuple[str, str, str], int]) -> None:
        for (journey, step, way), n in ways.items():
            if n:
                self.moves.inc(n, tags={"journey": journey, "step": step, "way": way})


class WebhookMetrics:
    """Webhook attempts by outcome (delivered, retry, dead); in the webhook actor."""

    _instance: WebhookMetrics | None = None

    def __init__(self) -> None:
        self.attempts = Counter(WEBHOOK_ATTEMPTS, description="Webhook delivery attempts.",
                                tag_keys=("outcome",))

    @classmethod
    def get(cls) -> WebhookMetrics:
        if cls._instance is None:
            cls._instance = WebhookMetrics()
        return cls._instance


class RouteMetrics:
    """A route's adapted rate, its "slow down" answers and whether it is in service, by
    route (relay, smsc, relay:<name>...); in the rate limiter."""

    _instance: RouteMetrics | None = None

    def __init__(self) -> None:
        self.rate = Gauge(ROUTE_RATE, description="A route's adapted send rate (units/s).",
                          tag_keys=("route",))
        self.throttled = Counter(ROUTE_THROTTLED, description=(
            "Answers asking to slow down; their messages were deferred."),
            tag_keys=("route",))
        self.up = Gauge(ROUTE_UP, description=(
            "1 while a route is in service, 0 while a breaker has it out."),
            tag_keys=("route",))

    @classmethod
    def get(cls) -> RouteMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def observe(self, routes: dict[str, dict], heard: dict[str, tuple[int, int]]) -> None:
        for route, (_clean, throttled) in heard.items():
            if route in routes:
                self.rate.set(float(routes[route]["rate_per_s"]), tags={"route": route})
            if throttled:
                self.throttled.inc(throttled, tags={"route": route})

    def in_service(self, route: str, up: bool) -> None:
        self.up.set(1.0 if up else 0.0, tags={"route": route})


class FunnelMetrics:
    """Messages by channel and funnel stage (sent, delivered, read, clicked,
    undeliverable), counted where each stage is learnt: the runner for sends (from its
    tasks' roll-up increments), the webhooks and the SMS gateway for statuses and
    receipts, the tracking routes for reads and clicks."""

    _instance: FunnelMetrics | None = None
    STAGE = {"opened": "read", "clicked": "clicked", "delivered": "delivered",
             "undeliverable": "undeliverable", "sent": "sent", "read": "read"}

    def __init__(self) -> None:
        self.messages = Counter(FUNNEL, description="Messages by channel and funnel stage.",
                                tag_keys=("channel", "stage"))

    @classmethod
    def get(cls) -> FunnelMetrics:
        if cls._instance is None:
            cls._instance = FunnelMetrics()
        return cls._instance

    def count(self, channel: str, counts: dict[str, int]) -> None:
        """Counts by stage (or by what a status set: opened is a read)."""
        for stage, n in counts.items():
            if n > 0 and stage in self.STAGE:
                self.messages.inc(n, tags={"channel": channel, "stage": self.STAGE[stage]})

    def from_rollups(self, increments: dict[str, float]) -> None:
        """The `funnel.<channel>.<stage>` of roll-up increments (a batch's sends)."""
        for key, n in increments.items():
            if key.startswith("funnel.") and n > 0:
                _, channel, stage = key.split(".", 2)
                self.messages.inc(n, tags={"channel": channel, "stage": stage})
