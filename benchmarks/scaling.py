"""Worker-count scaling: messages/s against send tasks in flight, through the real API.

For each sink delay (default 50 ms, like a real relay, then 0 ms, the CPU-bound case)
and each W (default 1, 2, 4, 8, 16), it launches a campaign of N messages through
the real HTTP API with `workers=W` and records messages/s, the p50 and p99 time from
launch to delivery at the sink, and the machine's CPU use. In the same run it
measures the raw pipeline limit: aiosmtplib straight into the same sink, with as many
connections as the largest W uses, no Ray and no MongoDB.

Each send task drives `--connections` SMTP connections (default 1, so a worker sends
one message at a time, like a Celery prefork worker, and the gain comes from W alone).

    python -m benchmarks.scaling                      # what `make bench` runs
    python -m benchmarks.scaling --messages 200 --workers 1 2 --delays 0 --out /tmp/x

Writes scaling.json, scaling.csv, scaling.md and scaling.png into --out.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import time
from pathlib import Path

import aiosmtplib
import psutil

from app.mailer import Mail, build_message
from benchmarks.harness import machine, percentile, running_app
from benchmarks.smtp_sink import BenchSink

RESULTS = Path(__file__).parent / "results"


def run_campaign(api, sink: BenchSink, tag: str, workers: int, messages: int,
                 connections: int, batch_size: int) -> dict:
    sink.handler.reset()
    created = api.post("/api/campaigns", json={
        "name": f"scaling W={workers}", "subject": "Hello {{ first_name }}",
        "body_text": "Dear {{ name }}, your plan is {{ plan }}.\n{{ unsubscribe_url }}",
        "audience": {"tag": tag}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    psutil.cpu_percent(interval=None)
    started = time.time()
    api.post(f"/api/campaigns/{campaign_id}/launch", json={
        "workers": workers, "batch_size": batch_size, "connections": connections,
    }).raise_for_status()
    while True:
        view = api.get(f"/api/campaigns/{campaign_id}").json()
        if view["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.25)
    cpu = psutil.cpu_percent(interval=None)
    arrivals = sorted(sink.handler.arrivals.values())
    latencies = [(t - started) * 1000 for t in arrivals]
    elapsed = (arrivals[-1] - started) if arrivals else float("nan")
    return {"workers": workers, "messages": len(arrivals), "status": view["status"],
            "messages_per_s": round(len(arrivals) / elapsed, 2) if arrivals else 0.0,
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "elapsed_s": round(elapsed, 2), "cpu_percent": cpu,
            "connections_per_worker": connections, "batch_size": batch_size}


async def raw_pipeline(port: int, messages: int, connections: int) -> dict:
    """aiosmtplib into the sink: build each message and send it, nothing else."""
    counter = iter(range(messages))
    started = time.perf_counter()

    async def connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for n in counter:
            mail = Mail(to_email=f"raw{n}@bench.example", to_name=f"Raw {n}",
                        subject=f"Hello {n}", text="Dear customer, your plan is Basic.",
                        message_id=f"<raw{n}@bench.example>")
            message = build_message(mail, "Operator <no-reply@operator.example>")
            await client.sendmail("no-reply@operator.example", [mail.to_email],
                                  message.as_bytes())
        await client.quit()

    psutil.cpu_percent(interval=None)
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {"workers": "raw", "connections": connections, "messages": messages,
            "messages_per_s": round(messages / elapsed, 2), "elapsed_s": round(elapsed, 2),
            "cpu_percent": psutil.cpu_percent(interval=None), "p50_ms": None, "p99_ms": None}


def write_outputs(results: list[dict], meta: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    fields = ["sink_delay_ms", "workers", "connections_per_worker", "messages",
              "messages_per_s", "p50_ms", "p99_ms", "cpu_percent", "elapsed_s"]
    with open(out / "scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = ["| sink delay | workers | messages | messages/s | vs W=1 | p50 ms | p99 ms | CPU % |",
             "|---|---|---|---|---|---|---|---|"]
    for delay in sorted({r["sink_delay_ms"] for r in results}, reverse=True):
        rows = [r for r in results if r["sink_delay_ms"] == delay]
        base = next((r["messages_per_s"] for r in rows if r["workers"] == 1), None)
        for r in rows:
            speedup = (f"{r['messages_per_s'] / base:.2f}x"
                       if base and r["workers"] != "raw" else "")
            workers = (f"raw ({r['connections']} connections)" if r["workers"] == "raw"
                       else r["workers"])
            lines.append(f"| {delay} ms | {workers} | {r['messages']} | {r['messages_per_s']} "
                         f"| {speedup} | {r['p50_ms'] or ''} | {r['p99_ms'] or ''} "
                         f"| {r['cpu_percent']} |")
    targets = meta.get("targets", {})
    lines += ["", "Targets: " + json.dumps(targets)]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    chart(results, out / "scaling.png", meta)


def chart(results: list[dict], path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays = sorted({r["sink_delay_ms"] for r in results}, reverse=True)
    fig, axes = plt.subplots(1, len(delays), figsize=(6 * len(delays), 4.5), squeeze=False)
    for ax, delay in zip(axes[0], delays, strict=True):
        rows = [r for r in results if r["sink_delay_ms"] == delay and r["workers"] != "raw"]
        raw = next((r for r in results if r["sink_delay_ms"] == delay
                    and r["workers"] == "raw"), None)
        xs = [r["workers"] for r in rows]
        ys = [r["messages_per_s"] for r in rows]
        ax.plot(xs, ys, "o-", color="#5b2a86", label="measured")
        if rows and rows[0]["workers"] == 1:
            ax.plot(xs, [ys[0] * x for x in xs], "--", color="#999", label="ideal (linear)")
        if raw:
            ax.axhline(raw["messages_per_s"], color="#1f8a4c", linestyle=":",
                       label=f"raw aiosmtplib ({raw['connections']} conns)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("workers (send tasks in flight)")
        ax.set_ylabel("messages/s")
        ax.set_title(f"sink delay {delay} ms")
        ax.grid(alpha=.3)
        ax.legend()
    fig.suptitle(f"operator-comms scaling on {meta['machine']['cpu_count']} cores, "
                 f"{meta['machine']['memory_gib']} GiB")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--delays", type=float, nargs="+", default=[50.0, 0.0])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    results: list[dict] = []
    meta = {"machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": "python -m benchmarks.scaling " + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items() if k != "out")}
    for delay in args.delays:
        with BenchSink(delay_ms=delay) as sink, running_app(
                smtp_host="127.0.0.1", smtp_port=sink.port, send_lease_s=60) as (_, api, _base):
            tag = f"scaling-{int(delay)}"
            api.post("/api/customers/generate", json={
                "count": args.messages, "tag": tag}).raise_for_status()
            for workers in args.workers:
                row = {"sink_delay_ms": delay, **run_campaign(
                    api, sink, tag, workers, args.messages, args.connections,
                    args.batch_size)}
                print(json.dumps(row), flush=True)
                results.append(row)
            sink.handler.reset()
            raw = {"sink_delay_ms": delay, **asyncio.run(raw_pipeline(
                sink.port, args.messages, max(args.workers) * args.connections))}
            print(json.dumps(raw), flush=True)
            results.append(raw)
    meta["targets"] = targets(results, args.workers)
    write_outputs(results, meta, args.out)
    print(json.dumps(meta["targets"]), flush=True)


def targets(results: list[dict], workers: list[int]) -> dict:
    found: dict = {}
    delayed = {r["workers"]: r for r in results if r["sink_delay_ms"] > 0}
    if 1 in delayed and 8 in delayed:
        ratio = delayed[8]["messages_per_s"] / (8 * delayed[1]["messages_per_s"])
        found["delayed_w8_vs_8x_w1"] = round(ratio, 3)
        found["delayed_target_met"] = ratio >= 0.85
    zero = [r for r in results if r["sink_delay_ms"] == 0]
    raw = next((r for r in zero if r["workers"] == "raw"), None)
    best = max((r for r in zero if r["workers"] != "raw"), key=lambda r: r["messages_per_s"],
               default=None)
    if raw and best:
        ratio = best["messages_per_s"] / raw["messages_per_s"]
        found["zero_delay_best_vs_raw"] = round(ratio, 3)
        found["zero_delay_best_workers"] = best["workers"]
        found["zero_delay_target_met"] = ratio >= 0.65
    return found


if __name__ == "__main__":
    main()
