"""Consolidated reports, computed in MongoDB with aggregation pipelines.

- Performance: per campaign and for the period (recipients, outcomes, delivery rate,
  retries, throughput, send latency p50/p95, failures by SMTP code, spread over
  nodes and workers), the chatbot (sessions, completion, drop-off per flow node,
  handoffs) and marketing (refusals, offers sent and accepted, conversion rate,
  median time to accept).
- Billing: revenue from conversions (monthly value from the plan catalogue, less the
  discount, times `billing_months`), messaging cost (`email_cost` per email sent),
  and the net, per campaign and per day.

Nothing loads deliveries into Python: every figure comes out of a pipeline. A period
is [start, end); a period with no data is an empty report, not an error. `rows()`
flattens a report into (section, item, metric, value) for CSV and XLSX, so both
downloads hold exactly the figures of the JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.catalogue import catalogue
from app.config import Settings

PERCENTILE = {"method": "approximate"}


class BadPeriod(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def parse_period(start: str | None, end: str | None, today: date | None = None
                 ) -> tuple[datetime, datetime]:
    """`from`/`to` as ISO dates or datetimes; default the last 30 days. `to` is exclusive
    (a plain date means the end of that day)."""
    today = today or datetime.now(UTC).date()
    end_at = _parse("to", end, end_of_day=True) if end else datetime.combine(
        today + timedelta(days=1), time(), UTC)
    start_at = _parse("from", start, end_of_day=False) if start else end_at - timedelta(days=30)
    if start_at >= end_at:
        raise BadPeriod("from", "must be before `to`")
    return start_at, end_at


def _parse(field: str, text: str, end_of_day: bool) -> datetime:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day + timedelta(days=1 if end_of_day else 0), time(), UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadPeriod(field, f"not a date: {text!r} (use YYYY-MM-DD)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _in(start: datetime, end: datetime) -> dict:
    return {"$gte": start, "$lt": end}


async def _one(db: AsyncDatabase, collection: str, pipeline: list[dict]) -> dict:
    rows = await (await db[collection].aggregate(pipeline)).to_list()
    return rows[0] if rows else {}


async def _all(db: AsyncDatabase, collection: str, pipeline: list[dict]) -> list[dict]:
    return await (await db[collection].aggregate(pipeline)).to_list()


def _rate(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


async def performance_report(db: AsyncDatabase, start: datetime, end: datetime,
                             campaign_id: str | None = None) -> dict[str, Any]:
    match: dict[str, Any] = {"created_at": _in(start, end)}
    if campaign_id:
        match["campaign_id"] = campaign_id
    per_campaign = await _all(db, "deliveries", [
        {"$match": match},
        {"$group": {
            "_id": "$campaign_id",
            "recipients": {"$sum": 1},
            **{status: {"$sum": {"$cond": [{"$eq": ["$status", status]}, 1, 0]}}
               for status in ("sent", "failed", "dead", "pending", "sending", "skipped")},
            "retries": {"$sum": {"$cond": [{"$gt": ["$attempts", 1]},
                                           {"$subtract": ["$attempts", 1]}, 0]}},
            "first_sent": {"$min": "$sent_at"}, "last_sent": {"$max": "$sent_at"},
            "latency": {"$percentile": {"input": "$latency_ms", "p": [0.5, 0.95],
                                        **PERCENTILE}},
        }},
        {"$sort": {"_id": 1}},
    ])
    # Status is filtered in a second stage: the first one is the indexed one.
    failures = await _all(db, "deliveries", [
        {"$match": match}, {"$match": {"status": {"$in": ["failed", "dead"]}}},
        {"$group": {"_id": {"campaign": "$campaign_id", "code": "$last_code"},
                    "n": {"$sum": 1}}}])
    spread = await _all(db, "deliveries", [
        {"$match": match}, {"$match": {"status": "sent"}},
        {"$group": {"_id": {"campaign": "$campaign_id", "node": "$node", "worker": "$worker"},
                    "n": {"$sum": 1}}}])
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": [row["_id"] for row in per_campaign]}}, {"name": 1})}

    campaigns = []
    for row in per_campaign:
        cid = row["_id"]
        minutes = ((row["last_sent"] - row["first_sent"]).total_seconds() / 60
                   if row.get("first_sent") and row.get("last_sent") else 0)
        latency = row.get("latency") or [None, None]
        by_node: dict[str, int] = {}
        by_worker: dict[str, int] = {}
        for item in spread:
            if item["_id"]["campaign"] == cid:
                node = item["_id"].get("node") or "?"
                worker = item["_id"].get("worker") or "?"
                by_node[node] = by_node.get(node, 0) + item["n"]
                by_worker[worker] = by_worker.get(worker, 0) + item["n"]
        campaigns.append({
            "campaign_id": cid, "name": names.get(cid, cid),
            "recipients": row["recipients"], "sent": row["sent"], "failed": row["failed"],
            "dead": row["dead"], "pending": row["pending"] + row["sending"],
            "skipped": row["skipped"],
            "delivery_rate": _rate(row["sent"], row["recipients"]),
            "retries": row["retries"],
            "throughput_per_min": round(row["sent"] / minutes, 2) if minutes > 0 else None,
            "latency_p50_ms": latency[0], "latency_p95_ms": latency[1],
            "failures_by_code": {str(f["_id"].get("code")): f["n"] for f in failures
                                 if f["_id"]["campaign"] == cid},
            "by_node": by_node, "by_worker": by_worker,
        })
    totals = {key: sum(c[key] for c in campaigns)
              for key in ("recipients", "sent", "failed", "dead", "pending", "retries")}
    totals["delivery_rate"] = _rate(totals["sent"], totals["recipients"])
    return {"period": {"from": start.isoformat(), "to": end.isoformat()},
            "campaigns": campaigns, "totals": totals,
            "chat": await _chat_figures(db, start, end),
            "marketing": await _marketing_figures(db, start, end)}


async def _chat_figures(db: AsyncDatabase, start: datetime, end: datetime) -> dict:
    sessions = await _one(db, "chat_sessions", [
        {"$match": {"created_at": _in(start, end)}},
        {"$group": {"_id": None, "sessions": {"$sum": 1},
                    "completed": {"$sum": {"$cond": ["$ended", 1, 0]}}}}])
    funnel = await _all(db, "chat_sessions", [
        {"$match": {"created_at": _in(start, end), "ended": {"$ne": True}}},
        {"$group": {"_id": "$node", "sessions": {"$sum": 1}}},
        {"$sort": {"sessions": -1, "_id": 1}}])
    handoffs = await db.events.count_documents({"type": "handoff_requested",
                                                "created_at": _in(start, end)})
    total = sessions.get("sessions", 0)
    return {"sessions": total, "completed": sessions.get("completed", 0),
            "completion_rate": _rate(sessions.get("completed", 0), total),
            "drop_off": [{"node": row["_id"], "sessions": row["sessions"]} for row in funnel],
            "handoffs": handoffs}


async def _marketing_figures(db: AsyncDatabase, start: datetime, end: datetime) -> dict:
    refusals = await db.events.count_documents({"type": "offer_refused",
                                                "created_at": _in(start, end)})
    sent = await db.offers.count_documents({"sent_at": _in(start, end)})
    accepted = await _one(db, "offers", [
        {"$match": {"accepted_at": _in(start, end)}},
        {"$group": {"_id": None, "n": {"$sum": 1},
                    "median_ms": {"$median": {"input": {"$subtract": ["$accepted_at",
                                                                       "$sent_at"]},
                                              **PERCENTILE}}}}])
    median_ms = accepted.get("median_ms")
    return {"refusals": refusals, "counter_offers_sent": sent,
            "accepted": accepted.get("n", 0),
            "conversion_rate": _rate(accepted.get("n", 0), sent),
            "median_time_to_accept_s": round(median_ms / 1000, 1) if median_ms is not None
            else None}


async def billing_report(db: AsyncDatabase, settings: Settings, start: datetime,
                         end: datetime) -> dict[str, Any]:
    months, cost_each = settings.billing_months, settings.email_cost
    day = {"$dateToString": {"format": "%Y-%m-%d", "date": "$created_at"}}
    conversions = await _all(db, "events", [
        {"$match": {"type": "conversion", "created_at": _in(start, end)}},
        {"$group": {"_id": {"day": day, "source": "$source"}, "n": {"$sum": 1},
                    "monthly": {"$sum": "$monthly_value"}}}])
    sent_day = {"$dateToString": {"format": "%Y-%m-%d", "date": "$sent_at"}}
    emails = await _all(db, "deliveries", [
        {"$match": {"sent_at": _in(start, end)}}, {"$match": {"status": "sent"}},
        {"$group": {"_id": {"day": sent_day, "campaign": "$campaign_id"}, "n": {"$sum": 1}}}])
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": list({row["_id"]["campaign"] for row in emails})}}, {"name": 1})}

    days: dict[str, dict[str, float]] = {}

    def on(day_key: str) -> dict[str, float]:
        return days.setdefault(day_key, {"revenue": 0.0, "cost": 0.0, "conversions": 0,
                                         "emails": 0})

    by_source: dict[str, float] = {}
    conversions_total = 0
    for row in conversions:
        revenue = round(row["monthly"] * months, 2)
        entry = on(row["_id"]["day"])
        entry["revenue"] = round(entry["revenue"] + revenue, 2)
        entry["conversions"] += row["n"]
        conversions_total += row["n"]
        source = row["_id"].get("source") or "other"
        by_source[source] = round(by_source.get(source, 0.0) + revenue, 2)
    campaigns: dict[str, dict[str, Any]] = {}
    for row in emails:
        cost = round(row["n"] * cost_each, 4)
        entry = on(row["_id"]["day"])
        entry["cost"] = round(entry["cost"] + cost, 4)
        entry["emails"] += row["n"]
        cid = row["_id"]["campaign"]
        camp = campaigns.setdefault(cid, {"campaign_id": cid, "name": names.get(cid, cid),
                                          "emails": 0, "cost": 0.0})
        camp["emails"] += row["n"]
        camp["cost"] = round(camp["cost"] + cost, 4)
    for camp in campaigns.values():
        camp["net"] = round(-camp["cost"], 4)  # conversions come from the chat, not a campaign
    revenue = round(sum(d["revenue"] for d in days.values()), 2)
    cost = round(sum(d["cost"] for d in days.values()), 4)
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "currency": catalogue().currency,
        "assumptions": {"billing_months": months, "email_cost": cost_each},
        "totals": {"revenue": revenue, "conversions": conversions_total,
                   "emails": sum(d["emails"] for d in days.values()), "cost": cost,
                   "net": round(revenue - cost, 4)},
        "revenue_by_source": by_source,
        "by_day": [{"day": d, **v, "net": round(v["revenue"] - v["cost"], 4)}
                   for d, v in sorted(days.items())],
        "by_campaign": sorted(campaigns.values(), key=lambda c: c["campaign_id"]),
    }


# Downloads -----------------------------------------------------------------------------


def rows(report: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str, Any]]:
    """The report as (section, item, metric, value) rows, every figure exactly once."""
    out: list[tuple[str, str, str, Any]] = []

    def walk(value: Any, section: str, item: str, metric: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, section, item, f"{metric}.{key}" if metric else str(key))
        elif isinstance(value, list):
            for entry in value:
                label = next((str(entry[k]) for k in ("campaign_id", "day", "node")
                              if isinstance(entry, dict) and k in entry), "")
                walk({k: v for k, v in entry.items()
                      if k not in ("campaign_id", "day", "node")}, section, label, "")
        else:
            out.append((section, item, metric, value))

    for section, value in report.items():
        walk(value, f"{prefix}{section}", "", "")
    return out


def to_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "item", "metric", "value"])
    writer.writerows(rows(report))
    return buffer.getvalue()


def to_xlsx(report: dict[str, Any], title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(["section", "item", "metric", "value"])
    for row in rows(report):
        sheet.append(list(row))
    for column, width in zip("ABCD", (18, 24, 32, 18), strict=True):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
