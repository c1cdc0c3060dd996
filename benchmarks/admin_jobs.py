"""The API while heavy admin jobs are queued or running: how long requests wait.

Starts the app, submits `--jobs` customer generations of `--customers` each at once
(the app runs `admin_jobs_at_once` of them, the rest wait queued), and meanwhile a
probe in a process of its own asks, every `--every-s`: the public health, a new chat
session, a chat turn, and the campaign list (signed in). It records each request's
time until every job is done. Each chat session comes from an address of its own
(X-Forwarded-For, trusted as behind a balancer), as customers' would. Results:
admin_jobs.json.

    python -m benchmarks.admin_jobs                 # 5 jobs of 50,000 customers
    python -m benchmarks.admin_jobs --jobs 2 --customers 2000 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time
from pathlib import Path

import httpx

from benchmarks.harness import machine, percentile, running_app

RESULTS = Path(__file__).parent / "results"


def customer_address() -> dict[str, str]:
    """A customer's own address (as the Locust users say theirs; not imported from
    there: Locust patches the standard library when imported)."""
    return {"X-Forwarded-For": f"127.{random.randrange(1, 255)}.{random.randrange(256)}."
                               f"{random.randrange(1, 255)}"}


def probe(base: str, token: str, every_s: float, stop, out) -> None:
    """Requests a customer and an operator make, timed, until `stop` is set."""
    times: dict[str, list[float]] = {"health": [], "new_session": [], "turn": [],
                                     "campaigns": []}
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/api/health").raise_for_status()
            times["health"].append(time.perf_counter() - started)
            address = customer_address()  # a customer of its own, as behind a balancer
            started = time.perf_counter()
            created = client.post("/chat/api/sessions", json={}, headers=address)
            created.raise_for_status()
            times["new_session"].append(time.perf_counter() - started)
            session = created.json()
            started = time.perf_counter()
            client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                        json={"text": "1"}, headers={
                            "Authorization": f"Bearer {session['token']}", **address}
                        ).raise_for_status()
            times["turn"].append(time.perf_counter() - started)
            started = time.perf_counter()
            client.get("/api/campaigns", params={"limit": 20},
                       headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            times["campaigns"].append(time.perf_counter() - started)
            time.sleep(every_s)
    out.put(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--every-s", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with running_app(trust_forwarded_for=True) as (settings, api, base):
        context = multiprocessing.get_context("spawn")
        stop, out = context.Event(), context.Queue()
        token = api.headers["Authorization"].removeprefix("Bearer ")
        prober = context.Process(target=probe, args=(base, token, args.every_s, stop, out))
        prober.start()
        time.sleep(5)  # the probe's idle baseline is part of its record
        started = time.monotonic()
        ids = [api.post("/api/customers/generate", json={
            "count": args.customers, "domain": f"jobs{n}.example", "tag": f"jobs-{n}"}
        ).json()["job_id"] for n in range(args.jobs)]
        most_running = 0
        while True:
            statuses = [api.get(f"/api/jobs/{job_id}").json()["status"] for job_id in ids]
            most_running = max(most_running, statuses.count("running"))
            if all(s in ("done", "failed") for s in statuses):
                break
            time.sleep(1)
        elapsed = time.monotonic() - started
        stop.set()
        times = out.get(timeout=120)
        prober.join(timeout=30)
    summary = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": (f"python -m benchmarks.admin_jobs --jobs {args.jobs} --customers "
                    f"{args.customers} --every-s {args.every_s}"),
        "jobs": args.jobs, "customers_each": args.customers, "statuses": statuses,
        "jobs_at_once": settings.admin_jobs_at_once, "most_running_seen": most_running,
        "all_done_s": round(elapsed, 1),
        "requests": {name: {"n": len(values),
                            "p50_ms": round(percentile(values, 50) * 1000, 1),
                            "p99_ms": round(percentile(values, 99) * 1000, 1),
                            "max_ms": round(max(values) * 1000, 1),
                            "over_1s": sum(v > 1.0 for v in values)}
                     for name, values in times.items() if values},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "admin_jobs.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["requests"]), flush=True)


if __name__ == "__main__":
    main()
