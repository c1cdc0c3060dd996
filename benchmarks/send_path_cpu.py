"""CPU per message of the send path without Ray, against raw aiosmtplib, in one run.

One plain process drives `app.campaigns.sending.run_batch` over pre-made batches (the runner's
part done up front), against the benchmark sink (its own processes) and an embedded
database of its own; then raw aiosmtplib from the same process to the same sink.
Reports CPU milliseconds per message of the sending process, the database and the
sink: what the send path costs beyond the SMTP exchange itself, Ray aside.

    python -m benchmarks.send_path_cpu                  # 10,000 messages, 4 connections
    python -m benchmarks.send_path_cpu --messages 2000 --out /tmp/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import psutil
from pymongo import MongoClient

from app.audience.customers import bucket_of
from app.audience.models import Audience
from app.campaigns import batches
from app.campaigns import records as campaigns
from app.campaigns.batch import BatchJob
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.campaigns.rounds import record_round
from app.campaigns.sending import run_batch
from app.core.config import load_settings
from app.core.db import database, ensure_indexes
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from benchmarks.harness import machine
from benchmarks.scaling import raw_pipeline
from benchmarks.smtp_sink import BenchSink
from embedded.mongo import EmbeddedMongo

RESULTS = Path(__file__).parent / "results"


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def jobs_for(uri: str, port: int, messages: int, connections: int,
                   db_name: str = "cpu", limits: dict[str, float] | None = None,
                   **settings) -> list[BatchJob]:
    """Batches of 100 as the runner hands them to send tasks, over `messages` new
    customers (`settings`: the app's, overridden; `limits`: the rates they keep to)."""
    db = database(uri, db_name)
    await ensure_indexes(db)
    ids = [f"c{n:06d}" for n in range(messages)]
    MongoClient(uri)[db_name].customers.insert_many([
        {"_id": c, "email": f"{c}@bench.example", "name": f"Ana Silva {c}", "plan": "Basic",
         "tags": ["t"], "unsubscribed": False, "bucket": bucket_of(c),
         "shard": bucket_of(c) % 32} for c in ids])
    doc = await campaigns.create_campaign(db, CampaignCreate(
        name="cpu", subject="Hello {{ first_name }}",
        body_text="Dear {{ name }}, your plan is {{ plan }}.\n{{ unsubscribe_url }}",
        audience=Audience(tag="t")), created_by="bench")
    campaign = await campaigns.launch_campaign(db, doc["_id"], LaunchOptions(),
                                               connections=connections, audience_pages=1)
    app_settings = load_settings(mongodb_db=db_name, data_dir=Path(tempfile.mkdtemp()),
                                 **settings)
    customers = {c["_id"]: c async for c in db.customers.find({})}
    jobs = []
    for seq, start in enumerate(range(0, messages, 100)):
        chunk = ids[start:start + 100]
        batch = await batches.insert_claimed_batch(db, doc["_id"], seq, chunk,
                                                     [1, chunk[-1]], "bench", lease_s=600)
        jobs.append(BatchJob(
            campaign_id=doc["_id"], batch_id=batch, claim="bench", attempt=0,
            customer_ids=chunk,
            runtime=Runtime(app_settings, Endpoints(uri, "127.0.0.1", port),
                            KeyRing.of("bench")),
            templates=campaign["templates"], connections=connections,
            fresh=True, lease_left_s=600, customers=[customers[c] for c in chunk],
            customers_read_at=batches.now(), limits=dict(limits or {})))
    return jobs


async def measure(uri: str, sink: BenchSink, db_process: psutil.Process, messages: int,
                  connections: int, parallel: int) -> dict:
    me = psutil.Process()
    sinks = [psutil.Process(process.pid) for process, _ in sink.workers]
    jobs = await jobs_for(uri, sink.port, messages, connections)

    def sample() -> tuple[float, float, float, float]:
        return time.time(), cpu_s(me), cpu_s(db_process), sum(map(cpu_s, sinks))

    before = sample()
    queue = list(jobs)

    async def worker() -> None:
        while queue:
            job = queue.pop(0)
            summary = await run_batch(job)  # and its close, as the runner writes it
            await record_round(job.runtime.database(), job.campaign_id, {}, None,
                               [summary.close] if summary.close else [])

    await asyncio.gather(*(worker() for _ in range(parallel)))
    after = sample()
    await raw_pipeline(sink.port, messages, connections * parallel)
    raw = sample()

    def per_message(a: tuple, b: tuple, i: int) -> float:
        return round(1000 * (b[i] - a[i]) / messages, 3)

    return {"messages": messages, "connections": connections * parallel,
            "send_path": {"messages_per_s": round(messages / (after[0] - before[0]), 1),
                          "sender_cpu_ms": per_message(before, after, 1),
                          "database_cpu_ms": per_message(before, after, 2),
                          "sink_cpu_ms": per_message(before, after, 3)},
            "raw": {"messages_per_s": round(messages / (raw[0] - after[0]), 1),
                    "sender_cpu_ms": per_message(after, raw, 1),
                    "sink_cpu_ms": per_message(after, raw, 3)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=1, help="batches at once")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    server = EmbeddedMongo(Path(tempfile.mkdtemp(prefix="cpu-")) / "db")
    uri = server.start()
    try:
        with BenchSink(delay_ms=0, processes=2) as sink:
            result = asyncio.run(measure(uri, sink, psutil.Process(server.process.pid),
                                         args.messages, args.connections, args.parallel))
    finally:
        server.stop()
    result = {"machine": machine(), "command": "python -m benchmarks.send_path_cpu "
              f"--messages {args.messages} --connections {args.connections} "
              f"--parallel {args.parallel}", **result}
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "send_path_cpu.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
