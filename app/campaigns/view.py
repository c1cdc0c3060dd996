"""The API's picture of a campaign: counts, rates, throughput and ETA, the spread over
nodes and workers, and the throughput series (a campaign's `timeline`)."""

from __future__ import annotations

from typing import Any

from app.campaigns.batches import now
from app.campaigns.ledger import empty_counts
from app.channels.registry import channel_named
from app.core import rollups
from app.core.statuses import (
    FINAL_DELIVERY,
    FINISHED,
    CampaignStatus,
    DeliveryStatus,
)


def campaign_view(doc: dict, in_flight: int | None = None) -> dict[str, Any]:
    """The API's picture of a campaign: counts, throughput, ETA, spread over workers."""
    channel = channel_named(doc.get("channel"))
    counts = {**empty_counts(), **{kind: 0 for kind in rollups.ENGAGEMENT},
              **dict.fromkeys(channel.receipts, 0), **doc.get("counts", {})}
    done = sum(counts.get(k, 0) for k in FINAL_DELIVERY)
    sent = counts[DeliveryStatus.SENT]
    counts[DeliveryStatus.PENDING] = max(0, counts.get("total", 0) - done)
    launched, finished = doc.get("launched_at"), doc.get(f"{doc['status']}_at")
    end = finished if doc["status"] in FINISHED and finished else now()
    elapsed = (end - launched).total_seconds() if launched else 0.0
    throughput = counts.get(DeliveryStatus.SENT, 0) / elapsed if elapsed > 0 else 0.0
    recent = _recent_rate(doc.get("timeline", []))
    rate = recent if recent is not None else throughput
    running = doc["status"] == CampaignStatus.RUNNING
    eta = counts[DeliveryStatus.PENDING] / rate if running and rate > 0 else None
    view = {
        "id": doc["_id"], "name": doc["name"], "status": doc["status"],
        "audience": doc.get("audience"), "templates": doc.get("templates"),
        "launch": doc.get("launch"), "counts": counts, "retries": doc.get("retries", 0),
        "retry_rounds": doc.get("retry_rounds", 0),
        # False while the runner is still streaming the audience (total still growing).
        "audience_counted": bool(doc.get("audience_done",
                                                doc["status"] != CampaignStatus.RUNNING)),
        "progress": round(done / counts["total"], 4) if counts.get("total") else 0.0,
        # delivered: for email, accepted by the relay and not bounced since, of those
        # attempted; for SMS, receipted as delivered to the handset, of those sent.
        # opened, clicked: of those sent (counted when tracking is on).
        "rates": {"delivered": channel.delivered_rate(counts),
                  **{kind: round(counts[kind] / sent, 4) if sent else 0.0
                     for kind in rollups.ENGAGEMENT}},
        "tracking": doc.get("tracking") or {"opens": False, "clicks": False},
        "channel": channel.name, "fallback": doc.get("fallback", []),
        "customers_choice": doc.get("customers_choice", False),
        "fallback_after_s": doc.get("fallback_after_s"),
        "confirm": doc.get("confirm", "delivered"),
        "throughput_per_s": round(throughput, 2),
        "recent_throughput_per_s": round(recent, 2) if recent is not None else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "elapsed_s": round(elapsed, 2),
        "by_node": doc.get("by_node", {}), "by_worker": doc.get("by_worker", {}),
        "timeline": [{**s, "t": s["t"].isoformat()} for s in doc.get("timeline", [])],
        "failure_reason": doc.get("failure_reason"),
        "created_at": doc["created_at"].isoformat(),
        "launched_at": launched.isoformat() if launched else None,
    }
    if in_flight is not None:
        view["tasks_in_flight"] = in_flight
    return view


def _recent_rate(timeline: list[dict], window: int = 10) -> float | None:
    if len(timeline) < 2:
        return None
    first, last = timeline[max(0, len(timeline) - window)], timeline[-1]
    seconds = (last["t"] - first["t"]).total_seconds()
    sent = DeliveryStatus.SENT
    return (last[sent] - first[sent]) / seconds if seconds > 0 else None
