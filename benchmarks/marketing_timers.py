"""Marketing timers: 100,000 pending offers in one actor, and how late they fire.

Writes 100,000 scheduled offers as the actor persists them (due in an hour) plus a
sample of offers due over the next `--spread` seconds into real chat sessions,
restarts the marketing actor so it reloads them all into its heap, then records the
actor's memory with everything pending and the lateness of the sample's firing
(p50/p99 ms) into marketing.json.

Firing 100,000 offers at once would measure the database (each firing is an atomic
claim, an inbox write and an update), not the timers: hence the sample.

    python -m benchmarks.marketing_timers                 # 100,000 pending, 500 firing
    python -m benchmarks.marketing_timers --offers 200 --firing 20 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ray
from pymongo import MongoClient

from actors.local_services import local_services
from benchmarks.harness import machine, running_app

RESULTS = Path(__file__).parent / "results"


def offer(offer_id: str, session_id: str, fire_at: datetime) -> dict:
    return {"_id": offer_id, "who": f"session:{session_id}", "customer_id": None,
            "session_id": session_id, "email": None, "plan": "Turbo", "discount_pct": 20.0,
            "text": "Special offer for you: 20% off the Turbo plan.", "status": "scheduled",
            "created_at": datetime.now(UTC), "fire_at": fire_at,
            "expires_at": fire_at + timedelta(days=7)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--firing", type=int, default=500)
    parser.add_argument("--spread", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with running_app() as (settings, _api, _base):
        endpoints = ray.get(local_services(settings).endpoints.remote())
        db = MongoClient(endpoints.mongodb_uri)[settings.mongodb_db]
        actor = ray.get_actor("marketing", namespace="operator-comms")
        empty = ray.get(actor.stats.remote())

        later = datetime.now(UTC) + timedelta(hours=1)
        started = time.perf_counter()
        for start in range(0, args.offers, 5000):
            db.offers.insert_many([offer(f"bench-{n}", f"nosession-{n}", later)
                                   for n in range(start, min(args.offers, start + 5000))])
        write_s = time.perf_counter() - started

        sessions = [uuid.uuid4().hex for _ in range(args.firing)]
        now = datetime.now(UTC)
        db.chat_sessions.insert_many([{"_id": s, "token_hash": "-", "customer_id": None,
                                       "created_at": now, "updated_at": now, "node": "start",
                                       "ended": True} for s in sessions])
        lead = 15.0  # time for the restarted actor to reload everything first
        db.offers.insert_many([
            offer(f"sample-{n}", s, now + timedelta(seconds=lead + args.spread * n / args.firing))
            for n, s in enumerate(sessions)])

        ray.kill(actor, no_restart=False)  # the restart reloads every pending offer
        reload_started = time.perf_counter()
        while True:
            try:
                stats = ray.get(actor.stats.remote(), timeout=60)
                if stats["pending"] >= args.offers + args.firing:
                    break
            except Exception:
                pass
            time.sleep(0.5)
        reload_s = time.perf_counter() - reload_started
        loaded = stats
        deadline = time.monotonic() + lead + args.spread + 120
        while stats["fired"] < args.firing and time.monotonic() < deadline:
            time.sleep(1)
            stats = ray.get(actor.stats.remote())

    result = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": f"python -m benchmarks.marketing_timers --offers {args.offers} "
                   f"--firing {args.firing} --spread {args.spread}",
        "pending_offers": loaded["pending"], "offers_written_s": round(write_s, 1),
        "reload_s": round(reload_s, 1),
        "actor_rss_mb_empty": empty["rss_mb"], "actor_rss_mb_loaded": loaded["rss_mb"],
        "fired": stats["fired"], "lateness_p50_ms": stats["lateness_p50_ms"],
        "lateness_p99_ms": stats["lateness_p99_ms"],
    }
    result["target"] = {
        "memory_under_300_mb": bool(loaded["rss_mb"] and loaded["rss_mb"] < 300),
        "lateness_p99_at_most_200_ms": bool(stats["lateness_p99_ms"] is not None
                                            and stats["lateness_p99_ms"] <= 200)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "marketing.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
