"""Marketing timers: 100,000 pending offers in one actor, and how late they fire.

Writes 100,000 scheduled offers as the actor persists them (due in an hour) plus a
sample of offers due over the next `--spread` seconds into chat sessions, restarts
the marketing actor so it reloads them all into its heap, then records the actor's
memory with everything pending and the lateness of the sample's firing (p50/p99 ms,
from due time to marked sent). Then a burst: `--burst` offers due at the same
instant, fired in batches; its duration and the database commands per offer
(`serverStatus` opcounters). Results: marketing.json.

    python -m benchmarks.marketing_timers                 # 100,000 pending, 500 + 2,000 firing
    python -m benchmarks.marketing_timers --offers 200 --firing 20 --burst 50 --out /tmp/x
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

from actors import registry
from actors.local_services import local_services
from benchmarks.harness import machine, opcount, running_app

RESULTS = Path(__file__).parent / "results"


def offer(offer_id: str, session_id: str, fire_at: datetime) -> dict:
    return {"_id": offer_id, "who": f"session:{session_id}", "customer_id": None,
            "session_id": session_id, "email": None, "plan": "Turbo", "discount_pct": 20.0,
            "text": "Special offer for you: 20% off the Turbo plan.", "status": "scheduled",
            "created_at": datetime.now(UTC), "fire_at": fire_at,
            "expires_at": fire_at + timedelta(days=7)}


def new_sessions(db, n: int) -> list[str]:
    """Chat sessions as the app creates them (summary included), with no messages yet."""
    sessions = [uuid.uuid4().hex for _ in range(n)]
    now = datetime.now(UTC)
    db.chat_sessions.insert_many([{"_id": s, "token_hash": "-", "customer_id": None,
                                   "created_at": now, "updated_at": now, "node": "start",
                                   "ended": True, "state": {"node": "start", "ended": True},
                                   "last_seq": 0} for s in sessions])
    return sessions


def restart_and_reload(actor, pending: int, timeout_s: float = 600) -> dict:
    """Kill the actor (it restarts and reloads every offer still to fire); its stats
    once it holds `pending` of them, counting those it fired since it restarted (on a
    busy machine the restart can outlast an offer's lead, which then fires at once)."""
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stats = ray.get(actor.stats.remote(), timeout=60)
            if stats["pending"] + stats["fired"] >= pending:
                return stats
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the marketing actor did not reload {pending} offers "
                               f"within {timeout_s} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offers", type=int, default=100_000)
    parser.add_argument("--firing", type=int, default=500)
    parser.add_argument("--spread", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with running_app() as (settings, _api, _base):
        endpoints = ray.get(local_services(settings).endpoints.remote())
        db = MongoClient(endpoints.mongodb_uri)[settings.mongodb_db]
        actor = registry.find(registry.MARKETING)
        empty = ray.get(actor.stats.remote())

        later = datetime.now(UTC) + timedelta(hours=1)
        started = time.perf_counter()
        for start in range(0, args.offers, 5000):
            db.offers.insert_many([offer(f"bench-{n}", f"nosession-{n}", later)
                                   for n in range(start, min(args.offers, start + 5000))])
        write_s = time.perf_counter() - started

        sessions = new_sessions(db, args.firing)
        now = datetime.now(UTC)
        lead = 15.0  # time for the restarted actor to reload everything first
        db.offers.insert_many([
            offer(f"sample-{n}", s, now + timedelta(seconds=lead + args.spread * n / args.firing))
            for n, s in enumerate(sessions)])

        reload_started = time.perf_counter()
        stats = restart_and_reload(actor, args.offers + args.firing)
        reload_s = time.perf_counter() - reload_started
        loaded = stats
        deadline = time.monotonic() + lead + args.spread + 120
        while stats["fired"] < args.firing and time.monotonic() < deadline:
            time.sleep(1)
            stats = ray.get(actor.stats.remote())
        sample = stats

        # The burst: offers all due at once, through the actor as refusals arrive.
        sessions = new_sessions(db, args.burst)
        at = datetime.now(UTC) + timedelta(seconds=5)
        db.offers.insert_many([offer(f"burst-{n}", s, at) for n, s in enumerate(sessions)])
        stats = restart_and_reload(actor, args.offers + args.burst)  # the burst joins
        mongo = MongoClient(endpoints.mongodb_uri)
        ops_before = opcount(mongo)
        deadline = time.monotonic() + 300
        while stats["fired"] < args.burst and time.monotonic() < deadline:
            time.sleep(0.2)
            stats = ray.get(actor.stats.remote())
        burst_ops = opcount(mongo) - ops_before - 1
        burst_s = (datetime.now(UTC) - at).total_seconds()  # to the poll that saw it done
    result = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": f"python -m benchmarks.marketing_timers --offers {args.offers} "
                   f"--firing {args.firing} --spread {args.spread} --burst {args.burst}",
        "pending_offers": loaded["pending"], "offers_written_s": round(write_s, 1),
        "reload_s": round(reload_s, 1),
        "actor_rss_mb_empty": empty["rss_mb"], "actor_rss_mb_loaded": loaded["rss_mb"],
        "fired": sample["fired"], "batches": sample["batches"],
        "lateness_p50_ms": sample["lateness_p50_ms"],
        "lateness_p99_ms": sample["lateness_p99_ms"],
        "burst": {"offers": args.burst, "fired": stats["fired"], "batches": stats["batches"],
                  "last_sent_after_due_s": round(burst_s, 2) if burst_s is not None else None,
                  "db_commands": burst_ops,
                  "db_commands_per_offer": round(burst_ops / max(1, stats["fired"]), 3),
                  "lateness_p50_ms": stats["lateness_p50_ms"],
                  "lateness_p99_ms": stats["lateness_p99_ms"]},
    }
    result["target"] = {
        "memory_under_300_mb": bool(loaded["rss_mb"] and loaded["rss_mb"] < 300),
        "lateness_p99_at_most_100_ms": bool(sample["lateness_p99_ms"] is not None
                                            and sample["lateness_p99_ms"] <= 100)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "marketing.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
