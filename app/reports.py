"""Consolidated reports: deliveries from the daily roll-ups, the rest by pipelines.

- Performance: per campaign and for the period (recipients, outcomes, delivery rate,
  retries, throughput, send latency p50/p95, failures by SMTP code, spread over
  nodes and workers), the chatbot (sessions, completion, drop-off per flow node,
  handoffs) and marketing (refusals, offers sent and accepted, conversion rate,
  median time to accept).
- Billing: revenue from conversions (monthly value from the plan catalogue, less the
  discount, times `billing_months`), messaging cost (`email_cost` per email sent),
  and the net, per campaign and per day.

Delivery figures (campaigns, emails, cost) and conversions are summed from the
roll-ups of `app.rollups` (one document per campaign and day), so a report's cost
grows with campaigns x days, not with deliveries; latency percentiles come from their
histograms (within one bucket). Chat and marketing figures come from pipelines over
sessions, events and offers. A period is [start, end) in whole days for the roll-ups
(a part day counts whole); a period with no data is an empty report, not an error.
`rows()` flattens a report into (section, item, metric, value) for CSV and XLSX, so
both downloads hold exactly the figures of the JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app import rollups
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
    per_campaign: dict[str, dict[str, Any]] = {}
    for doc in await rollups.read(db, rollups.CAMPAIGN, start, end, campaign_id):
        row = per_campaign.setdefault(doc["campaign_id"], {
            "counts": {}, "retries": 0, "latency": {}, "failures": {}, "by_node": {},
            "by_worker": {}, "first_sent": None, "last_sent": None})
        for field in ("counts", "latency", "failures", "by_node", "by_worker"):
            for key, n in (doc.get(field) or {}).items():
                row[field][key] = row[field].get(key, 0) + n
        row["retries"] += doc.get("retries", 0)
        for field, pick in (("first_sent", min), ("last_sent", max)):
            if doc.get(field) is not None:
                row[field] = doc[field] if row[field] is None else pick(row[field], doc[field])
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": sorted(per_campaign)}}, {"name": 1})}

    campaigns = []
    for cid in sorted(per_campaign):
        row = per_campaign[cid]
        counts = {status: row["counts"].get(status, 0) for status in rollups.STATUSES}
        recipients = sum(counts.values())
        if not recipients:
            continue
        minutes = ((row["last_sent"] - row["first_sent"]).total_seconds() / 60
                   if row["first_sent"] and row["last_sent"] else 0)
        campaigns.append({
            "campaign_id": cid, "name": names.get(cid, cid),
            "recipients": recipients, "sent": counts["sent"], "failed": counts["failed"],
            "dead": counts["dead"], "pending": counts["pending"],
            "skipped": counts["skipped"],
            "delivery_rate": _rate(counts["sent"], recipients),
            "retries": row["retries"],
            "throughput_per_min": round(counts["sent"] / minutes, 2) if minutes > 0 else None,
            "latency_p50_ms": rollups.percentile(row["latency"], 0.5),
            "latency_p95_ms": rollups.percentile(row["latency"], 0.95),
            "failures_by_code": {code: n for code, n in row["failures"].items() if n},
            "by_node": {k: n for k, n in row["by_node"].items() if n},
            "by_worker": {k: n for k, n in row["by_worker"].items() if n},
        })
    totals = {key: sum(c[key] for c in campaigns)
              for key in ("recipients", "sent", "failed", "dead", "pending", "retries")}
    totals["delivery_rate"] = _rate(totals["sent"], totals["recipients"])
    return {"period": {"from": start.isoformat(), "to": end.isoformat()},
            "campaigns": campaigns, "totals": totals,
            "chat": await _chat_figures(db, start, end),
            "marketing": await _marketing_figures(db, start, end)}


async def _chat_figures(db: AsyncDatabase, start: datetime, end: datetime) -> dict:
    # One pass over the period's sessions (the embedded database groups in Python).
    groups = await _all(db, "chat_sessions", [
        {"$match": {"created_at": _in(start, end)}},
        {"$group": {"_id": {"ended": "$ended", "node": "$node"}, "n": {"$sum": 1}}}])
    completed = sum(g["n"] for g in groups if g["_id"].get("ended") is True)
    open_by_node: dict[str, int] = {}
    for g in groups:
        if g["_id"].get("ended") is not True:
            node = g["_id"].get("node")
            open_by_node[node] = open_by_node.get(node, 0) + g["n"]
    funnel = [{"_id": node, "sessions": n} for node, n in sorted(
        open_by_node.items(), key=lambda item: (-item[1], str(item[0])))]
    sessions = {"sessions": sum(g["n"] for g in groups), "completed": completed}
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
    conversions = [
        {"_id": {"day": doc["day"], "source": source}, "n": n,
         "monthly": (doc.get("monthly") or {}).get(source, 0.0)}
        for doc in await rollups.read(db, rollups.CONVERSIONS, start, end)
        for source, n in (doc.get("n") or {}).items()]
    emails = [{"_id": {"day": doc["day"], "campaign": doc["campaign_id"]},
               "n": doc.get("emails", 0)}
              for doc in await rollups.read(db, rollups.CAMPAIGN, start, end)
              if doc.get("emails")]
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": sorted({row["_id"]["campaign"] for row in emails})}}, {"name": 1})}

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
