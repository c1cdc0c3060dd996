"""Adaptive route rate against fixed limits, in one run: a relay that answers "421 slow
down" above its limit, sent to by the real send path (`run_batch`) three ways:

- adaptive: the operator's ceiling 20% above the relay's limit, the route's rate
  adapting to the answers (`app.core.ratelimit.AdaptiveRate`);
- fixed above: the same ceiling, not adapting (every answer over the limit a deferral);
- fixed below: 20% under the limit, not adapting (no deferral, 25% slower).

For each relay limit: time to finish against the ideal (messages / limit), deferrals
("slow down" answers), outcomes. The sink runs in a process of its own; the limiter
is the rate limiter actor's code (`RateLimits`) in the sending process, as a send task
reaches it. Writes throttle.json and throttle.png (the accepted rate over time).

    python -m benchmarks.throttle                          # limits 20, 50, 100 a second
    python -m benchmarks.throttle --limits 50 --seconds 8 --out /tmp/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from app.campaigns.rounds import record_round
from app.campaigns.sending import run_batch
from app.core.db import close_clients
from app.core.ratelimit import RateLimits
from benchmarks.harness import machine
from benchmarks.send_path_cpu import jobs_for
from benchmarks.smtp_sink import BenchSink
from embedded.mongo import EmbeddedMongo

RESULTS = Path(__file__).parent / "results"
MODES = {"adaptive": (1.2, True), "fixed_above": (1.2, False), "fixed_below": (0.8, False)}
CONNECTIONS = 4
PARALLEL = 2  # batches at once, as two send tasks


async def run_mode(uri: str, limit: float, mode: str, messages: int) -> dict:
    share, adapting = MODES[mode]
    ceiling = limit * share
    with BenchSink(delay_ms=0, processes=1, throttle_per_s=limit) as sink:
        jobs = await jobs_for(uri, sink.port, messages, CONNECTIONS,
                              db_name=f"throttle_{mode}_{int(limit)}",
                              limits={"relay": ceiling}, relay_rate_limit_per_s=ceiling)
        limits = RateLimits()
        rates: list[tuple[float, float]] = []

        async def reserve(wanted: dict, n: float, heard: dict | None = None) -> float:
            wait = limits.reserve(wanted, n, heard if adapting else None)
            if adapting and heard:
                rates.append((time.time(), limits.routes()["relay"]["rate_per_s"]))
            return wait

        queue = list(jobs)
        totals: dict[str, int] = {}
        deferred = 0

        async def worker() -> None:
            nonlocal deferred
            while queue:
                job = queue.pop(0)
                summary = await run_batch(job, reserve=reserve)
                await record_round(job.runtime.database(), job.campaign_id, {}, None,
                                   [summary.close] if summary.close else [])
                deferred += summary.deferred
                for status, n in summary.counts.items():
                    totals[status] = totals.get(status, 0) + n

        started = time.time()
        await asyncio.gather(*(worker() for _ in range(PARALLEL)))
        stats = sink.stats()
        await close_clients()
    arrivals = sorted(stats["arrivals"].values())
    elapsed = (arrivals[-1] - started) if arrivals else time.time() - started
    ideal = messages / limit
    return {"mode": mode, "relay_limit_per_s": limit, "ceiling_per_s": round(ceiling, 1),
            "messages": messages, "outcomes": totals, "accepted": stats["accepted"],
            "deferrals": deferred, "throttled_by_relay": stats["throttled"],
            "elapsed_s": round(elapsed, 2), "ideal_s": round(ideal, 2),
            "of_ideal": round(elapsed / ideal, 3),
            "accepted_per_s": series([t - started for t in arrivals]),
            "adapted_rate": [(round(t - started, 2), r) for t, r in rates[::10]]}


def series(times: list[float], step: float = 0.5) -> list[tuple[float, float]]:
    """Accepted messages a second, in steps of `step` seconds."""
    if not times:
        return []
    counts = [0] * (int(max(times) / step) + 1)
    for t in times:
        counts[int(t / step)] += 1
    return [(round(i * step, 1), round(n / step, 1)) for i, n in enumerate(counts)]


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    limits = sorted({r["relay_limit_per_s"] for r in rows})
    figure, axes = plt.subplots(1, len(limits), figsize=(6 * len(limits), 4), squeeze=False)
    for axis, limit in zip(axes[0], limits, strict=True):
        for row in (r for r in rows if r["relay_limit_per_s"] == limit):
            xs, ys = zip(*row["accepted_per_s"], strict=True) if row["accepted_per_s"] \
                else ((), ())
            axis.plot(xs, ys, label=f"{row['mode']} ({row['of_ideal']:.2f}x ideal, "
                                    f"{row['deferrals']} deferrals)")
        axis.axhline(limit, color="grey", linestyle=":", label="relay limit")
        axis.set_title(f"relay limit {limit:g}/s")
        axis.set_xlabel("seconds")
        axis.set_ylabel("accepted messages/s")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[20, 50, 100])
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="each run sends this many seconds' worth at the limit")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    server = EmbeddedMongo(Path(tempfile.mkdtemp(prefix="throttle-")) / "db")
    uri = server.start()
    rows = []
    try:
        for limit in args.limits:
            messages = int(limit * args.seconds)
            for mode in MODES:
                rows.append(asyncio.run(run_mode(uri, limit, mode, messages)))
                print(json.dumps({k: v for k, v in rows[-1].items()
                                  if k not in ("accepted_per_s", "adapted_rate")}), flush=True)
    finally:
        server.stop()
    targets = []
    for limit in args.limits:
        by_mode = {r["mode"]: r for r in rows if r["relay_limit_per_s"] == limit}
        adaptive, above = by_mode["adaptive"], by_mode["fixed_above"]
        targets.append({
            "relay_limit_per_s": limit,
            "adaptive_within_15pct_of_ideal": adaptive["of_ideal"] <= 1.15,
            "adaptive_5x_fewer_deferrals_than_fixed_above":
                adaptive["deferrals"] * 5 <= above["deferrals"],
            "nothing_failed": all(set(r["outcomes"]) == {"sent"} for r in by_mode.values())})
    result = {"machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "command": "python -m benchmarks.throttle --limits "
                         f"{' '.join(f'{x:g}' for x in args.limits)} --seconds {args.seconds:g}",
              "runs": rows, "targets": targets}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "throttle.json").write_text(json.dumps(result, indent=2) + "\n")
    chart(rows, args.out / "throttle.png")
    print(json.dumps(targets, indent=2))


if __name__ == "__main__":
    main()
