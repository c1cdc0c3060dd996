"""Launching to a large audience: how soon the first message reaches the sink, and the
campaign runner's memory, at 10,000 and at 1,000,000 recipients.

The runner reads the audience a page at a time, so the first batch goes out after one
page read, and its memory holds a page, not the audience. For each size (ascending,
customers accumulate) it seeds the customers straight into the database (the same
documents the API makes), launches a campaign through the real API against a 0 ms
sink in its own process, records the time to the first arrival, samples the runner's
RSS for `--watch-s` seconds (or until the campaign completes), then cancels it.

    python -m benchmarks.audience                         # 10,000 and 1,000,000
    python -m benchmarks.audience --sizes 2000 20000 --watch-s 10 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import psutil
from pymongo import MongoClient

from app.audience.customers import new_customer
from benchmarks.harness import machine, mongodb_uri, running_app
from benchmarks.smtp_sink import BenchSink

RESULTS = Path(__file__).parent / "results"


def seed(db, tag: str, count: int, chunk: int = 10_000) -> float:
    started = time.perf_counter()
    for start in range(0, count, chunk):
        db.customers.insert_many([
            new_customer(f"a{start + n:07d}.{tag}@bench.example", "Ana Silva", tags=[tag])
            for n in range(min(chunk, count - start))], ordered=False)
    return time.perf_counter() - started


def seeded_total(db) -> int:
    """How many customers the database holds: exact up to about 100,000 (the embedded
    database counts by scanning), beyond that one bucket times 1,024."""
    in_bucket = db.customers.count_documents({"bucket": 0})
    return db.customers.count_documents({}) if in_bucket < 100 else 1024 * in_bucket


def runner_process(campaign_id: str) -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "ray::CampaignRunner" in " ".join(proc.info["cmdline"] or []):
                return proc
        except psutil.Error:
            continue
    return None


def measure(api, sink: BenchSink, tag: str, size: int, workers: int, watch_s: float) -> dict:
    created = api.post("/api/campaigns", json={
        "name": f"audience {size}", "subject": "Hello {{ first_name }}",
        "body_text": "Dear {{ name }}, your plan is {{ plan }}.", "audience": {"tag": tag}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    sink.reset()
    started = time.time()
    launched = api.post(f"/api/campaigns/{campaign_id}/launch",
                        json={"workers": workers, "batch_size": 100})
    launch_ms = (time.time() - started) * 1000
    launched.raise_for_status()
    # One loop from the launch: the runner's memory is sampled from its first moment (a
    # small campaign can complete, and its runner exit, before its first message is
    # counted here), the first message noted when the sink has one.
    first, rss, runner = None, [], None
    while time.time() - started < max(watch_s, 120 if first is None else 0):
        runner = runner or runner_process(campaign_id)
        try:
            if runner is not None:
                rss.append(runner.memory_info().rss)
        except psutil.Error:
            runner = None
        if first is None and sink.accepted():
            first = min(sink.stats()["arrivals"].values()) - started
        if first is not None and (time.time() - started >= watch_s or api.get(
                f"/api/campaigns/{campaign_id}").json()["status"] == "completed"):
            break
        time.sleep(0.05 if first is None else 0.5)
    sent = sink.accepted()
    elapsed = time.time() - started
    api.post(f"/api/campaigns/{campaign_id}/cancel")
    return {"recipients": size, "launch_response_ms": round(launch_ms, 1),
            "first_message_s": round(first, 2) if first is not None else None,
            "runner_rss_mb_peak": round(max(rss) / 2**20, 1) if rss else None,
            "runner_rss_mb_last": round(rss[-1] / 2**20, 1) if rss else None,
            "sent_while_watched": sent, "watched_s": round(elapsed, 1),
            "messages_per_s": round(sent / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--watch-s", type=float, default=60.0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="reuse the data of an earlier run (its customers are kept)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    reuse = {"data_dir": args.data_dir} if args.data_dir else {}
    with BenchSink(delay_ms=0, processes=2) as sink, running_app(
            smtp_host="127.0.0.1", smtp_port=sink.port, **reuse) as (settings, api, _base):
        db = MongoClient(mongodb_uri(settings))[settings.mongodb_db]
        for size in sorted(args.sizes):
            tag = f"audience-{size}"
            seeded_s = 0.0 if db.customers.find_one({"tags": tag}) else seed(db, tag, size)
            row = {**measure(api, sink, tag, size, args.workers, args.watch_s),
                   "seed_s": round(seeded_s, 1),
                   "customers_in_database": seeded_total(db)}
            print(json.dumps(row), flush=True)
            results.append(row)
    small, large = results[0], results[-1]
    targets = {}
    if small["runner_rss_mb_peak"] and large["runner_rss_mb_peak"]:
        targets["rss_large_vs_small"] = round(
            large["runner_rss_mb_peak"] / small["runner_rss_mb_peak"], 3)
        targets["rss_within_10_percent"] = targets["rss_large_vs_small"] <= 1.1
    if large["first_message_s"] is not None:
        targets["first_message_within_10_s"] = large["first_message_s"] <= 10
    out = {"machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "command": "python -m benchmarks.audience --sizes "
                      + " ".join(map(str, args.sizes)) + f" --watch-s {args.watch_s:g}",
           "results": results, "targets": targets}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audience.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(targets), flush=True)


if __name__ == "__main__":
    main()
