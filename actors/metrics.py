"""The app's metrics beyond the send path, exported like it through Ray's metrics
agent on every node (Ray prefixes `ray_` on export: `ray_comms_chat_turns_total`).

`EXPORTED` names every metric the app records, with its kind: the Grafana dashboard in
`monitoring/` is checked against it (`tests/test_monitoring.py`). Each holder is created
once per process, where its metrics are recorded.
"""

from __future__ import annotations

from ray.util.metrics import Counter

from app.campaigns.send_tasks import SendMetrics

CHAT_TURNS = "comms_chat_turns_total"
OFFERS = "comms_offers_total"
WEBHOOK_ATTEMPTS = "comms_webhook_attempts_total"

EXPORTED = {
    **SendMetrics.EXPORTED,
    CHAT_TURNS: "counter",
    OFFERS: "counter",
    WEBHOOK_ATTEMPTS: "counter",
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
