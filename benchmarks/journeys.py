"""Journeys at scale: customers waiting in journeys over the shards, timers firing at a
steady rate, events answered, and a shard's restart.

Writes `--customers` enrollments as the shards persist them (waiting an hour) over
`--shards` shards, plus a sample due at `--rate` steps a second for `--window`
seconds, and restarts every shard so it reloads its customers (its load time and
memory are recorded). Then:
- timer lateness: the sample's steps fire (wait -> exit), p50/p99 from due to walked;
- reaction: `--events` real customers wait for an event; the driver posts it through
  the API at `--events-rate` a second, and each event's next step emails them:
  p50/p99 from the post to the sink's receipt;
- database commands per step (serverStatus opcounters) and CPU by part.
Results: journeys.json and journeys.png (and the comparison in docs/performance.md).

    python -m benchmarks.journeys                       # 1,000,000 customers, 4 shards
    python -m benchmarks.journeys --customers 20000 --window 5 --events 500 --out /tmp/j
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
from actors.journeys import shard_name
from actors.local_services import local_services
from app.audience.customers import bucket_of
from benchmarks.harness import CpuWatch, machine, opcount, percentile, running_app

RESULTS = Path(__file__).parent / "results"
WRITE_CHUNK = 5_000


def journey(api, key: str, steps: list[dict], event: str) -> str:
    created = api.post("/api/journeys", json={"key": key, "definition": {
        "name": key, "entry": {"event": event}, "steps": steps}})
    created.raise_for_status()
    api.post(f"/api/journeys/{key}/publish").raise_for_status()
    return f"{key}@1"


def enrollment(version_id: str, customer_id: str, step: str, due_at: datetime,
               waiting_for: str | None = None) -> dict:
    key = version_id.partition("@")[0]
    now = datetime.now(UTC)
    doc = {"_id": f"{key}|{customer_id}", "key": key, "version": 1, "version_id": version_id,
           "customer_id": customer_id, "bucket": bucket_of(customer_id), "entered_at": now,
           "entry_event": f"bench-{customer_id}", "seq": 1, "updated_at": now, "arms": {},
           "status": "active", "step": step, "due_at": due_at, "outbox": [],
           "has_outbox": False}
    if waiting_for:
        doc["waiting_for"] = waiting_for
    return doc


def write(db, docs) -> float:
    started = time.perf_counter()
    chunk: list[dict] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == WRITE_CHUNK:
            db.journey_enrollments.insert_many(chunk, ordered=False)
            chunk = []
    if chunk:
        db.journey_enrollments.insert_many(chunk, ordered=False)
    return time.perf_counter() - started


def restart_shards(shards: int, expected: int, timeout_s: float = 1800) -> list[dict]:
    """Kill every shard (each restarts and reloads its customers); their stats once
    loaded, with the time from the kill."""
    handles = [registry.find(shard_name(n)) for n in range(shards)]
    killed = time.monotonic()
    for handle in handles:
        ray.kill(handle, no_restart=False)
    time.sleep(1)
    stats = []
    for handle in handles:
        ray.get(handle.ready.remote(), timeout=timeout_s)
        stats.append({**ray.get(handle.stats.remote()),
                      "ready_after_kill_s": round(time.monotonic() - killed, 1)})
    held = sum(s["timers"] + s["fired"] for s in stats)
    if held < expected:  # (or some are in a round in flight)
        print(f"note: the shards hold {held} timers of {expected}", flush=True)
    return stats


def chart(result: dict, path: Path) -> None:
    """Timer lateness and event reaction (p50, p99) against their targets, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    timers, reaction = result["timers"], result["reaction"]
    for ax, title, values, target in (
            (axes[0], f"timer lateness at {timers['rate_per_s']:,} steps/s",
             [timers["lateness_p50_ms"], timers["lateness_p99_ms"]], 100),
            (axes[1], f"event to message at {reaction['posted_per_s']:,.0f} events/s",
             [reaction["p50_ms"], reaction["p99_ms"]], 1000)):
        ax.bar(["p50", "p99"], [max(v or 0, 0.1) for v in values], color="#7d4fb0")
        ax.axhline(target, color="#c0392b", linestyle="--", label=f"target {target:,} ms")
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    figure.suptitle(f"journeys: {result['customers_in_journeys']:,} customers, "
                    f"{len(result['shards'])} shards", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rate", type=int, default=2_000, help="steps due a second")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of them")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--events-rate", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with running_app(journey_shards=args.shards, http_timeout_s=300) as (settings, api, _):
        endpoints = ray.get(local_services(settings).endpoints.remote())
        mongo = MongoClient(endpoints.mongodb_uri)
        db = mongo[settings.mongodb_db]
        hold = journey(api, "bench-hold", [{"id": "hold", "type": "wait", "seconds": 3600}],
                       "bench_hold")
        due = journey(api, "bench-due", [{"id": "tick", "type": "wait", "seconds": 1}],
                      "bench_due")
        react = journey(api, "bench-react", [
            {"id": "ping", "type": "wait_for", "event": "ping", "timeout_s": 3600},
            {"id": "pong", "type": "send", "channel": "email", "subject": "Pong",
             "text": "Hi {{ first_name }}", "track": False}], "bench_react")
        later = datetime.now(UTC) + timedelta(hours=1)
        write_s = write(db, (enrollment(hold, f"h{n:07d}", "hold", later)
                             for n in range(args.customers)))
        domain = f"react-{uuid.uuid4().hex[:6]}.example"
        api.post("/api/customers/generate?wait=true", json={
            "count": args.events, "domain": domain, "tag": domain}).raise_for_status()
        reacting = [(d["_id"], d["email"]) for d in db.customers.find(
            {"tags": domain}, {"email": 1})]
        write(db, (enrollment(react, cid, "ping", later, "ping") for cid, _ in reacting))
        sample = int(args.rate * args.window)
        lead = 30.0 + args.customers / 5_000  # for the shards to reload first (at 1M:
        # about 110 s, all four at once)
        start = datetime.now(UTC) + timedelta(seconds=lead)
        write(db, (enrollment(due, f"d{n:07d}", "tick",
                              start + timedelta(seconds=args.window * n / sample))
                   for n in range(sample)))
        total = args.customers + len(reacting) + sample
        loaded = restart_shards(args.shards, total)
        if datetime.now(UTC) > start:
            print("warning: the shards reloaded after the sample fell due", flush=True)

        # Timer lateness: wait for the sample to fire.
        ops_before = opcount(mongo)
        watch = CpuWatch()
        timing_started = time.monotonic()
        deadline = time.monotonic() + lead + args.window + 600
        while True:
            stats = [ray.get(registry.find(shard_name(n)).stats.remote())
                     for n in range(args.shards)]
            if sum(s["fired"] for s in stats) >= sample or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        timing_cpu = watch.done(time.monotonic() - timing_started)
        timing_ops = opcount(mongo) - ops_before
        fired = sum(s["fired"] for s in stats)
        lateness = {"p50": max(s["lateness_p50_ms"] or 0 for s in stats),
                    "p99": max(s["lateness_p99_ms"] or 0 for s in stats)}

        # Reaction: events in through the API, the next step's email out.
        posted: dict[str, float] = {}
        batch = max(1, args.events_rate // 10)
        ops_before = opcount(mongo)
        watch = CpuWatch()
        began = time.monotonic()
        for n in range(0, len(reacting), batch):
            chunk = reacting[n:n + batch]
            at = time.time()
            api.post("/api/journeys/events", json={"events": [
                {"id": f"ping-{cid}", "type": "ping", "customer_id": cid}
                for cid, _ in chunk]}).raise_for_status()
            for _, address in chunk:
                posted[address] = at
            pause = began + (n + batch) / args.events_rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        post_s = time.monotonic() - began
        services = local_services(settings)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            arrived = ray.get(services.outbox_counts.remote(domain))
            if len(arrived) >= len(reacting):
                break
            time.sleep(1)
        react_cpu = watch.done(time.monotonic() - began)
        react_ops = opcount(mongo) - ops_before
        received = ray.get(services.outbox.remote(domain, len(reacting) + 10))["messages"]
        reactions = [(datetime.fromisoformat(m["received_at"]).timestamp()
                      - posted[m["to"][0]]) * 1000 for m in received if m["to"][0] in posted]
        per_shard = [{k: s[k] for k in ("shard", "timers", "rss_mb", "load_s", "node")}
                     | {"ready_after_kill_s": load["ready_after_kill_s"]}
                     for s, load in zip(stats, loaded, strict=True)]
    result = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": f"python -m benchmarks.journeys --customers {args.customers} "
                   f"--shards {args.shards} --rate {args.rate} --window {args.window} "
                   f"--events {args.events} --events-rate {args.events_rate}",
        "customers_in_journeys": total, "enrollments_written_s": round(write_s, 1),
        "shards": per_shard,
        "rss_mb_total": round(sum(s["rss_mb"] or 0 for s in per_shard), 1),
        "restart_s_per_shard": max(s["load_s"] or 0 for s in per_shard),
        "customers_per_shard": round(total / args.shards),
        "timers": {"due": sample, "fired": fired, "rate_per_s": args.rate,
                   "lateness_p50_ms": lateness["p50"], "lateness_p99_ms": lateness["p99"],
                   "db_commands_per_step": round(timing_ops / max(1, fired), 3),
                   "cpu": timing_cpu},
        "reaction": {"events": len(reacting), "answered": len(reactions),
                     "posted_per_s": round(len(reacting) / post_s, 1),
                     "p50_ms": percentile(reactions, 50), "p99_ms": percentile(reactions, 99),
                     "db_commands_per_event": round(react_ops / max(1, len(reactions)), 3),
                     "cpu": react_cpu},
    }
    result["target"] = {
        "lateness_p99_at_most_100_ms": lateness["p99"] <= 100,
        "reaction_p99_under_1_s": bool(reactions) and percentile(reactions, 99) < 1000}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "journeys.json").write_text(json.dumps(result, indent=2, default=str))
    chart(result, args.out / "journeys.png")
    print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
