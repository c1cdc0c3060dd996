"""Report build time over 100,000 and 1,000,000 deliveries on the embedded database.

Seeds N deliveries (ten campaigns over 30 days, a realistic mix of outcomes) plus
chat sessions, offers and conversions into the real, indexed collections, then times
each report through the HTTP API (JSON, CSV and XLSX) and writes reports.json.

    python -m benchmarks.reports                          # 100,000 deliveries
    python -m benchmarks.reports --sizes 100000 1000000 --repeats 1   # both (about 1.5 h)
    python -m benchmarks.reports --sizes 2000 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ray
from pymongo import MongoClient

from actors.local_services import local_services
from benchmarks.harness import machine, running_app

RESULTS = Path(__file__).parent / "results"
START = datetime(2026, 10, 1, tzinfo=UTC)


def seed(db, count: int, already: int, rng: random.Random) -> None:
    """Add deliveries until there are `count` (they accumulate across sizes)."""
    chunk = []
    for n in range(already, count):
        created = START + timedelta(seconds=rng.randrange(30 * 86400))
        roll = rng.random()
        status = "sent" if roll < 0.93 else "failed" if roll < 0.97 else "dead" \
            if roll < 0.99 else "pending"
        doc = {"_id": f"c{n % 10}:{n}", "campaign_id": f"c{n % 10}", "customer_id": f"k{n}",
               "status": status, "attempts": 1 if status != "dead" else 3,
               "created_at": created, "claim": None, "next_attempt_at": created}
        if status == "sent":
            doc.update(sent_at=created + timedelta(seconds=rng.randrange(600)),
                       latency_ms=rng.uniform(20, 200), node=f"node{n % 3}",
                       worker=f"node{n % 3}-{n % 16}")
        elif status in ("failed", "dead"):
            doc["last_code"] = 550 if status == "failed" else 451
        chunk.append(doc)
        if len(chunk) == 5000:
            db.deliveries.insert_many(chunk, ordered=False)
            chunk = []
    if chunk:
        db.deliveries.insert_many(chunk, ordered=False)


def seed_rest(db, rng: random.Random) -> None:
    db.campaigns.insert_many([{"_id": f"c{i}", "name": f"Campaign {i}",
                               "created_at": START} for i in range(10)])
    nodes = ["start", "upgrade", "turbo_offer", "client_menu", "billing", "support"]
    db.chat_sessions.insert_many([{"_id": f"s{i}", "created_at": START + timedelta(
        seconds=rng.randrange(30 * 86400)), "ended": rng.random() < .6,
        "node": rng.choice(nodes)} for i in range(10_000)])
    db.events.insert_many([{"_id": f"v{i}", "type": "conversion", "monthly_value": 103.92,
                            "source": "counter_offer", "created_at": START + timedelta(
                                seconds=rng.randrange(30 * 86400))} for i in range(1000)])
    db.offers.insert_many([{"_id": f"o{i}", "status": "accepted", "sent_at": START,
                            "accepted_at": START + timedelta(minutes=5)} for i in range(1000)])


def timed(api, path: str, params: dict, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        response = api.get(path, params=params)
        response.raise_for_status()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeats", type=int, default=3, help="JSON runs; the best counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(11)
    results = []
    with running_app(http_timeout_s=3600) as (settings, api, _base):
        endpoints = ray.get(local_services(settings).endpoints.remote())
        db = MongoClient(endpoints.mongodb_uri)[settings.mongodb_db]
        seed_rest(db, rng)
        seeded = 0
        period = {"from": "2026-10-01", "to": "2026-10-30"}
        for size in sorted(args.sizes):
            started = time.perf_counter()
            seed(db, size, seeded, rng)
            seeded = size
            row = {"deliveries": size, "seed_s": round(time.perf_counter() - started, 1)}
            for kind in ("performance", "billing"):
                path = f"/api/reports/{kind}"
                row[f"{kind}_json_ms"] = timed(api, path, period, args.repeats)
                row[f"{kind}_csv_ms"] = timed(api, path, {**period, "format": "csv"}, 1)
                row[f"{kind}_xlsx_ms"] = timed(api, path, {**period, "format": "xlsx"}, 1)
            print(json.dumps(row), flush=True)
            results.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reports.json").write_text(json.dumps({
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m benchmarks.reports --sizes " + " ".join(map(str, args.sizes))
                   + f" --repeats {args.repeats}",
        "note": f"best of {args.repeats} for JSON, one run for CSV and XLSX; period of 30 days",
        "results": results}, indent=2))


if __name__ == "__main__":
    main()
