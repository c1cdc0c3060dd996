"""Reports over a known, seeded data set: every figure checked exactly.

The seed goes into its own database on the session's real MongoDB (SecantusDB), so
other tests' data cannot change a figure.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from pymongo import MongoClient

from app.core.config import load_settings
from app.core.db import database, ensure_indexes
from app.core.paging import encode_cursor
from app.core.rollup_repair import reconcile_period
from app.reports.consolidated import (
    BadPeriod,
    billing_report,
    cell,
    parse_period,
    performance_report,
    rows,
    to_csv,
    to_xlsx,
)


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def delivery(n: int, campaign: str, status: str, created: datetime, **fields) -> dict:
    return {"_id": f"{campaign}:{n}", "campaign_id": campaign, "customer_id": f"cust{n}",
            "status": status, "attempts": 1, "created_at": created, **fields}


SEED = {
    "campaigns": [{"_id": "c1", "name": "Spring"}, {"_id": "c2", "name": "Summer"}],
    # A period's recount finds deliveries through their batches, as the send path
    # leaves them: c2's batch opened before delivery 10 (outside the period).
    "batches": [
        {"_id": "c1:000000000", "campaign_id": "c1", "recipients": [str(n) for n in range(1, 7)],
         "status": "done", "created_at": at(10, 9), "done_at": at(10, 11)},
        {"_id": "c2:000000000", "campaign_id": "c2", "recipients": [str(n) for n in range(7, 11)],
         "status": "pending", "created_at": datetime(2026, 9, 30, tzinfo=UTC)},
    ],
    "deliveries": [
        # Tracked: 1 opened twice and clicked, 2 opened, 7 opened (on later days).
        delivery(1, "c1", "sent", at(10), latency_ms=10.0, sent_at=at(10, 10, 0),
                 node="n1", worker="w1", opened={"first": at(11), "last": at(12), "count": 2},
                 clicked={"first": at(11), "last": at(11), "count": 1}),
        delivery(2, "c1", "sent", at(10), latency_ms=20.0, sent_at=at(10, 10, 1),
                 node="n1", worker="w1", opened={"first": at(10), "last": at(10), "count": 1}),
        delivery(3, "c1", "sent", at(10), latency_ms=30.0, sent_at=at(10, 10, 2),
                 node="n1", worker="w2", attempts=2),
        delivery(4, "c1", "sent", at(10), latency_ms=40.0, sent_at=at(10, 10, 3),
                 node="n2", worker="w3"),
        delivery(5, "c1", "failed", at(10), last_code=550),
        delivery(6, "c1", "dead", at(10), last_code=451, attempts=3),
        delivery(7, "c2", "sent", at(11), latency_ms=5.0, sent_at=at(11, 9, 0),
                 node="n2", worker="w4", opened={"first": at(14), "last": at(14), "count": 1}),
        delivery(8, "c2", "sent", at(11), latency_ms=15.0, sent_at=at(11, 9, 0),
                 node="n2", worker="w4", channel="sms", segments=2),  # billed as 2 parts
        delivery(9, "c2", "pending", at(11), attempts=0),
        # Outside the period: must not count anywhere.
        delivery(10, "c2", "sent", datetime(2026, 10, 1, tzinfo=UTC), latency_ms=999.0,
                 sent_at=datetime(2026, 10, 1, tzinfo=UTC), node="n9", worker="w9"),
    ],
    "chat_sessions": [
        {"_id": "s1", "created_at": at(12), "ended": True, "node": "turbo_refused"},
        {"_id": "s2", "created_at": at(12), "ended": True, "node": "goodbye"},
        {"_id": "s3", "created_at": at(12), "ended": False, "node": "turbo_offer"},
        {"_id": "s4", "created_at": at(13), "ended": False, "node": "upgrade"},
        {"_id": "s5", "created_at": datetime(2026, 10, 5, tzinfo=UTC), "ended": False,
         "node": "start"},
    ],
    "events": [
        {"_id": "e1", "type": "handoff_requested", "created_at": at(12)},
        {"_id": "e2", "type": "offer_refused", "created_at": at(12)},
        {"_id": "e3", "type": "offer_refused", "created_at": at(12)},
        {"_id": "e4", "type": "offer_refused", "created_at": datetime(2026, 10, 2, tzinfo=UTC)},
        {"_id": "v1", "type": "conversion", "source": "counter_offer", "monthly_value": 103.92,
         "created_at": at(12)},
        {"_id": "v2", "type": "conversion", "source": "upgrade", "monthly_value": 129.90,
         "created_at": at(12)},
        {"_id": "v3", "type": "conversion", "source": "upgrade", "monthly_value": 79.90,
         "created_at": at(13)},
    ],
    "offers": [
        {"_id": "o1", "status": "accepted", "sent_at": at(12, 10),
         "accepted_at": at(12, 10) + timedelta(seconds=60)},
        {"_id": "o2", "status": "accepted", "sent_at": at(12, 11),
         "accepted_at": at(12, 11) + timedelta(seconds=180)},
        {"_id": "o3", "status": "sent", "sent_at": at(12, 12)},
    ],
}


SETTINGS = load_settings()


@pytest.fixture
async def seeded(mongodb_uri: str):
    name = f"reports_{uuid.uuid4().hex[:8]}"
    db = database(mongodb_uri, name)
    await ensure_indexes(db)
    sync = MongoClient(mongodb_uri)[name]
    for collection, docs in SEED.items():
        sync[collection].insert_many(docs)
    # Seeded behind the send path's back: the reports' roll-ups are recounted from it.
    drift = await reconcile_period(db, datetime(2026, 9, 1, tzinfo=UTC),
                                   datetime(2026, 12, 31, tzinfo=UTC))
    assert drift["drifted"] == drift["checked"] > 0
    assert (await reconcile_period(db, datetime(2026, 9, 1, tzinfo=UTC),
                                   datetime(2026, 12, 31, tzinfo=UTC)))["drifted"] == 0
    return db


PERIOD = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


async def test_performance_report_figures(seeded) -> None:
    report = await performance_report(seeded, *PERIOD)
    spring, summer = report["campaigns"]
    assert spring == {
        "campaign_id": "c1", "name": "Spring", "recipients": 6, "sent": 4, "failed": 1,
        "dead": 1, "pending": 0, "skipped": 0, "delivery_rate": 0.6667, "retries": 3,
        "opened": 2, "clicked": 1, "open_rate": 0.5, "click_rate": 0.25,
        "throughput_per_min": 1.33, "latency_p50_ms": 20.0, "latency_p95_ms": 40.0,
        "failures_by_code": {"550": 1, "451": 1},
        "by_node": {"n1": 3, "n2": 1}, "by_worker": {"w1": 2, "w2": 1, "w3": 1},
        "funnel": {"email": {"sent": 4, "read": 2, "clicked": 1}}}
    assert summer == {
        "campaign_id": "c2", "name": "Summer", "recipients": 3, "sent": 2, "failed": 0,
        "dead": 0, "pending": 1, "skipped": 0, "delivery_rate": 0.6667, "retries": 0,
        "opened": 1, "clicked": 0, "open_rate": 0.5, "click_rate": 0.0,
        "throughput_per_min": None, "latency_p50_ms": 5.0, "latency_p95_ms": 15.0,
        "failures_by_code": {}, "by_node": {"n2": 2}, "by_worker": {"w4": 2},
        "funnel": {"email": {"sent": 1, "read": 1}, "sms": {"sent": 1}}}
    assert report["totals"] == {"recipients": 9, "sent": 6, "failed": 1, "dead": 1,
                                "pending": 1, "retries": 3, "delivery_rate": 0.6667,
                                "opened": 3, "clicked": 1, "open_rate": 0.5,
                                "click_rate": 0.1667,
                                "funnel": {"email": {"sent": 5, "read": 3, "clicked": 1},
                                           "sms": {"sent": 1}}}
    assert report["chat"] == {
        "sessions": 4, "completed": 2, "completion_rate": 0.5, "handoffs": 1,
        "drop_off": [{"node": "turbo_offer", "sessions": 1}, {"node": "upgrade", "sessions": 1}]}
    assert report["marketing"] == {"refusals": 2, "counter_offers_sent": 3, "accepted": 2,
                                   "conversion_rate": 0.6667, "median_time_to_accept_s": 60.0}


async def test_performance_report_for_one_campaign(seeded) -> None:
    report = await performance_report(seeded, *PERIOD, campaign_id="c2")
    assert [c["campaign_id"] for c in report["campaigns"]] == ["c2"]
    assert report["totals"]["recipients"] == 3


async def test_billing_report_figures(seeded) -> None:
    settings = SETTINGS.model_copy(update={"billing_months": 12, "email_cost": 0.002,
                                                 "sms_cost": 0.01})
    report = await billing_report(seeded, settings, *PERIOD)
    assert report["currency"] == "BRL"
    assert report["totals"] == {"revenue": 3764.64, "conversions": 3, "emails": 5,
                                "sms_segments": 2, "cost": 0.03, "net": 3764.61}
    assert report["revenue_by_source"] == {"counter_offer": 1247.04, "upgrade": 2517.6}
    assert report["by_day"] == [
        {"day": "2026-11-10", "revenue": 0.0, "cost": 0.008, "conversions": 0, "emails": 4,
         "sms_segments": 0, "net": -0.008},
        {"day": "2026-11-11", "revenue": 0.0, "cost": 0.022, "conversions": 0, "emails": 1,
         "sms_segments": 2, "net": -0.022},
        {"day": "2026-11-12", "revenue": 2805.84, "cost": 0.0, "conversions": 2, "emails": 0,
         "sms_segments": 0, "net": 2805.84},
        {"day": "2026-11-13", "revenue": 958.8, "cost": 0.0, "conversions": 1, "emails": 0,
         "sms_segments": 0, "net": 958.8}]
    assert report["by_campaign"] == [
        {"campaign_id": "c1", "name": "Spring", "emails": 4, "sms_segments": 0, "cost": 0.008,
         "net": -0.008},
        {"campaign_id": "c2", "name": "Summer", "emails": 1, "sms_segments": 2, "cost": 0.022,
         "net": -0.022}]


async def test_empty_period_is_an_empty_report(seeded) -> None:
    empty = (datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 2, 1, tzinfo=UTC))
    report = await performance_report(seeded, *empty)
    assert report["campaigns"] == [] and report["totals"]["recipients"] == 0
    assert report["chat"]["sessions"] == 0 and report["marketing"]["accepted"] == 0
    billing = await billing_report(seeded, SETTINGS, *empty)
    assert billing["totals"] == {"revenue": 0, "conversions": 0, "emails": 0,
                                 "sms_segments": 0, "cost": 0, "net": 0}


async def test_csv_and_xlsx_hold_the_same_figures_as_json(seeded) -> None:
    for report in (await performance_report(seeded, *PERIOD),
                   await billing_report(seeded, SETTINGS, *PERIOD)):
        expected = rows(report)
        read_csv = list(csv.reader(io.StringIO(to_csv(report))))
        assert read_csv[0] == ["section", "item", "metric", "value"]
        assert read_csv[1:] == [[str(v) if v is not None else "" for v in row]
                                for row in expected]
        sheet = load_workbook(io.BytesIO(to_xlsx(report, "report"))).active
        read_xlsx = [tuple(cell.value for cell in row) for row in sheet.iter_rows(min_row=2)]
        assert read_xlsx == [tuple(None if v == "" else v for v in row) for row in expected]


def test_periods() -> None:
    start, end = parse_period("2026-11-01", "2026-11-30")
    assert (start, end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(BadPeriod) as caught:
        parse_period("2026-13-01", None)
    assert caught.value.field == "from"
    with pytest.raises(BadPeriod) as caught:
        parse_period("2026-11-05", "2026-11-01")
    assert caught.value.field == "from"
    default_start, default_end = parse_period(None, None, today=datetime(2026, 11, 22).date())
    assert (default_end - default_start).days == 30
    # The edges of the calendar are a named field, not an overflow.
    for start, end, field in ((None, "9999-12-31", "to"), ("0001-01-01", None, "from"),
                              (None, "0001-01-02T00:00:00", "to")):
        with pytest.raises(BadPeriod) as caught:
            parse_period(start, end)
        assert caught.value.field == field


def test_report_routes_over_http(api) -> None:
    bad = api.get("/api/reports/performance", params={"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "query.from"
    old = {"from": "2001-01-01", "to": "2001-01-31"}
    json_report = api.get("/api/reports/billing", params=old).json()
    assert json_report["totals"]["revenue"] == 0
    as_csv = api.get("/api/reports/billing", params={**old, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert 'filename="operator-comms-billing-2001-01-01-to-2001-02-01.csv"' in \
        as_csv.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(as_csv.text)))[1:] == [
        [str(v) if v is not None else "" for v in row] for row in rows(json_report)]
    as_xlsx = api.get("/api/reports/performance", params={**old, "format": "xlsx"})
    assert as_xlsx.status_code == 200 and as_xlsx.content[:2] == b"PK"
    assert api.get("/api/reports/performance", params={"format": "pdf"}).status_code == 422
    # The calendar's edges are 422s naming the field, in reports and in cursors.
    for route in ("performance", "billing"):
        for field, value in (("to", "9999-12-31"), ("from", "0001-01-01")):
            edge = api.get(f"/api/reports/{route}", params={field: value})
            assert edge.status_code == 422 and edge.json()["detail"][0]["field"] == \
                f"query.{field}"
    assert api.post("/api/reports/reconcile", params={"to": "9999-12-31"}).status_code == 422
    for year in (1, 9999):
        cursor = encode_cursor(datetime(year, 1, 1, tzinfo=UTC), "x")
        for listing in ("/api/campaigns", "/api/customers", "/api/audit", "/api/chat/sessions"):
            edge = api.get(listing, params={"cursor": cursor})
            assert edge.status_code == 422, listing


def test_exported_text_that_looks_like_a_formula_is_neutralised() -> None:
    """A campaign named "=HYPERLINK(...)" must not run when the CSV is opened."""
    report = {"campaigns": [{"campaign_id": "c1", "name": '=HYPERLINK("http://x","y")',
                             "sent": -0.0, "note": "@cmd"}]}
    text = to_csv(report)
    assert "'=HYPERLINK" in text and "'@cmd" in text
    assert cell(-5) == -5 and cell("-5") == "-5" and cell("Spring") == "Spring"
