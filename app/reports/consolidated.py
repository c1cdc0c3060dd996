"""Consolidated reports, read from the daily roll-ups of `app.core.rollups`.

- Performance: per campaign and for the period (recipients, outcomes, delivery rate,
  opens and clicks of tracked campaigns with their rates (of those sent), retries,
  throughput, send latency p50/p95, failures by SMTP code, spread over nodes and
  workers), the chatbot (sessions, completion, drop-off per flow node,
  handoffs) and marketing (refusals, offers sent and accepted, conversion rate,
  median time to accept).
- Billing: revenue from conversions (monthly value from the plan catalogue, less the
  discount, times `billing_months`), messaging cost (`email_cost` per email sent,
  `sms_cost` per SMS part),
  and the net, per campaign and per day.

Delivery figures (campaigns, emails, cost) and conversions are summed from the
roll-ups of `app.core.rollups` (one document per campaign and day), so a report's cost
grows with campaigns x days, not with deliveries; latency percentiles come from their
histograms (within one bucket). Chat and marketing figures come from the chat
roll-ups, one document per day (the median time to accept within one bucket). A
period is [start, end) in whole days for the roll-ups (a part day counts whole); a
period with no data is an empty report, not an error.
`rows()` flattens a report into (section, item, metric, value) for CSV and XLSX, so
both downloads hold exactly the figures of the JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.core import rollups
from app.core.config import Settings
from app.core.paging import EARLIEST, LATEST
from app.core.spreadsheets import safe_cell
from app.core.statuses import DeliveryStatus
from app.marketing.catalogue import catalogue


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
            value = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time(), UTC)
        else:
            value = datetime.fromisoformat(text)
    except (ValueError, OverflowError):  # 9999-12-31 as an end: the day after overflows
        value = None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value is None or not EARLIEST <= value <= LATEST:  # a period's arithmetic stays in range
        raise BadPeriod(field, f"not a date in {EARLIEST.year}-{LATEST.year - 1}: "
                               f"{text!r} (use YYYY-MM-DD)")
    return value


def _rate(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


async def performance_report(db: AsyncDatabase, start: datetime, end: datetime,
                             campaign_id: str | None = None) -> dict[str, Any]:
    per_campaign: dict[str, dict[str, Any]] = {}
    for doc in await rollups.read(db, rollups.CAMPAIGN, start, end, campaign_id):
        row = per_campaign.setdefault(doc["campaign_id"], {
            "counts": {}, "retries": 0, "latency": {}, "failures": {}, "by_node": {},
            "by_worker": {}, "first_sent": None, "last_sent": None, "opened": 0, "clicked": 0,
            "days": []})
        row["days"].append(doc)
        for field in ("counts", "latency", "failures", "by_node", "by_worker"):
            for key, n in (doc.get(field) or {}).items():
                row[field][key] = row[field].get(key, 0) + n
        for field in ("retries", *rollups.ENGAGEMENT):
            row[field] += doc.get(field, 0)
        for field, pick in (("first_sent", min), ("last_sent", max)):
            if doc.get(field) is not None:
                row[field] = doc[field] if row[field] is None else pick(row[field], doc[field])
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": sorted(per_campaign)}}, {"name": 1})}

    campaigns = []
    for cid in sorted(per_campaign):
        row = per_campaign[cid]
        counts = {str(status): row["counts"].get(status, 0) for status in rollups.STATUSES}
        sent = counts[DeliveryStatus.SENT]
        recipients = sum(counts.values())
        if not recipients:
            continue
        minutes = ((row["last_sent"] - row["first_sent"]).total_seconds() / 60
                   if row["first_sent"] and row["last_sent"] else 0)
        campaigns.append({
            "campaign_id": cid, "name": names.get(cid, cid),
            "recipients": recipients, **counts,  # sent, failed, dead, pending, skipped
            "delivery_rate": _rate(sent, recipients),
            "opened": row["opened"], "clicked": row["clicked"],
            "open_rate": _rate(row["opened"], sent), "click_rate": _rate(row["clicked"], sent),
            "retries": row["retries"],
            "throughput_per_min": round(sent / minutes, 2) if minutes > 0 else None,
            "latency_p50_ms": rollups.percentile(row["latency"], 0.5),
            "latency_p95_ms": rollups.percentile(row["latency"], 0.95),
            "failures_by_code": {code: n for code, n in row["failures"].items() if n},
            "by_node": {k: n for k, n in row["by_node"].items() if n},
            "by_worker": {k: n for k, n in row["by_worker"].items() if n},
            # per channel that carried its messages: sent, delivered, read, clicked
            "funnel": rollups.merged_funnel(row["days"]),
        })
    totals = {key: sum(c[key] for c in campaigns)
              for key in ("recipients", DeliveryStatus.SENT, DeliveryStatus.FAILED,
                          DeliveryStatus.DEAD, DeliveryStatus.PENDING, "retries",
                          *rollups.ENGAGEMENT)}
    totals["funnel"] = rollups.merged_funnel([{"funnel": c["funnel"]} for c in campaigns])
    totals["delivery_rate"] = _rate(totals[DeliveryStatus.SENT], totals["recipients"])
    totals["open_rate"] = _rate(totals["opened"], totals[DeliveryStatus.SENT])
    totals["click_rate"] = _rate(totals["clicked"], totals[DeliveryStatus.SENT])
    chat, marketing = _chat_and_marketing(await rollups.read(db, rollups.CHAT, start, end))
    return {"period": {"from": start.isoformat(), "to": end.isoformat()},
            "campaigns": campaigns, "totals": totals,
            "chat": chat, "marketing": marketing}


def _chat_and_marketing(docs: list[dict]) -> tuple[dict, dict]:
    """The chat and marketing figures of a period, from its chat roll-ups."""
    total: dict[str, Any] = {"sessions": 0, "completed": 0, "offers_sent": 0, "accepted": 0}
    open_at: dict[str, int] = {}
    events: dict[str, int] = {}
    accept_s: dict[str, int] = {}
    for doc in docs:
        for key in total:
            total[key] += doc.get(key, 0)
        for into, field in ((open_at, "open_at"), (events, "events"), (accept_s, "accept_s")):
            for key, n in (doc.get(field) or {}).items():
                into[key] = into.get(key, 0) + n
    drop_off = sorted(((node, n) for node, n in open_at.items() if n > 0),
                      key=lambda item: (-item[1], item[0]))
    chat = {"sessions": total["sessions"], "completed": total["completed"],
            "completion_rate": _rate(total["completed"], total["sessions"]),
            "drop_off": [{"node": None if node == "?" else node, "sessions": n}
                         for node, n in drop_off],
            "handoffs": events.get("handoff_requested", 0)}
    median_s = rollups.percentile(accept_s, 0.5)
    marketing = {"refusals": events.get("offer_refused", 0),
                 "counter_offers_sent": total["offers_sent"], "accepted": total["accepted"],
                 "conversion_rate": _rate(total["accepted"], total["offers_sent"]),
                 "median_time_to_accept_s": median_s}
    return chat, marketing


async def billing_report(db: AsyncDatabase, settings: Settings, start: datetime,
                         end: datetime) -> dict[str, Any]:
    months, cost_each, sms_each = (settings.billing_months, settings.email_cost,
                                   settings.sms_cost)
    conversions = [
        {"_id": {"day": doc["day"], "source": source}, "n": n,
         "monthly": (doc.get("monthly") or {}).get(source, 0.0)}
        for doc in await rollups.read(db, rollups.CONVERSIONS, start, end)
        for source, n in (doc.get("n") or {}).items()]
    emails = [{"_id": {"day": doc["day"], "campaign": doc["campaign_id"]},
               "n": doc.get("emails", 0), "sms": doc.get("sms_segments", 0)}
              for doc in await rollups.read(db, rollups.CAMPAIGN, start, end)
              if doc.get("emails") or doc.get("sms_segments")]
    names = {c["_id"]: c["name"] async for c in db.campaigns.find(
        {"_id": {"$in": sorted({row["_id"]["campaign"] for row in emails})}}, {"name": 1})}

    days: dict[str, dict[str, float]] = {}

    def on(day_key: str) -> dict[str, float]:
        return days.setdefault(day_key, {"revenue": 0.0, "cost": 0.0, "conversions": 0,
                                         "emails": 0, "sms_segments": 0})

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
        cost = round(row["n"] * cost_each + row["sms"] * sms_each, 4)
        entry = on(row["_id"]["day"])
        entry["cost"] = round(entry["cost"] + cost, 4)
        entry["emails"] += row["n"]
        entry["sms_segments"] += row["sms"]
        cid = row["_id"]["campaign"]
        camp = campaigns.setdefault(cid, {"campaign_id": cid, "name": names.get(cid, cid),
                                          "emails": 0, "sms_segments": 0, "cost": 0.0})
        camp["emails"] += row["n"]
        camp["sms_segments"] += row["sms"]
        camp["cost"] = round(camp["cost"] + cost, 4)
    for camp in campaigns.values():
        camp["net"] = round(-camp["cost"], 4)  # conversions come from the chat, not a campaign
    revenue = round(sum(d["revenue"] for d in days.values()), 2)
    cost = round(sum(d["cost"] for d in days.values()), 4)
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "currency": catalogue().currency,
        "assumptions": {"billing_months": months, "email_cost": cost_each,
                        "sms_cost": sms_each},
        "totals": {"revenue": revenue, "conversions": conversions_total,
                   "emails": sum(d["emails"] for d in days.values()),
                   "sms_segments": sum(d["sms_segments"] for d in days.values()), "cost": cost,
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


def cell(value: Any) -> Any:
    """A text a spreadsheet would run as a formula (a campaign named "=HYPERLINK(...)")
    gets a leading apostrophe (`app.core.spreadsheets`); numbers stay numbers."""
    return safe_cell(value)


def to_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["section", "item", "metric", "value"])
    writer.writerows([cell(v) for v in row] for row in rows(report))
    return buffer.getvalue()


def to_xlsx(report: dict[str, Any], title: str) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = title[:31]
    sheet.append(["section", "item", "metric", "value"])
    for row in rows(report):
        sheet.append([cell(v) for v in row])
    for column, width in zip("ABCD", (18, 24, 32, 18), strict=True):
        sheet.column_dimensions[column].width = width
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
