"""Worker-count scaling: messages/s against send tasks in flight, through the real API,
beside the Celery design it replaces and the raw SMTP limit, all in one run.

For each sink delay (default 50 ms, like a real relay, then 0 ms, the CPU-bound case)
the sink runs in processes of its own (`--sink-processes`, behind SO_REUSEPORT), and:
- **Celery** (`benchmarks.celery_peer`, RabbitMQ started and stopped here): one task
  per email, prefork with `--concurrency W` for each W, then gevent with
  `--gevent-greenlets` greenlets, its best pool for a slow relay. Run before the app
  starts, so it does not share the machine with an idle Ray.
- **raw**: aiosmtplib straight into the sink with `--raw-connections` connections,
  building the same messages; no Ray, no database. Measured before the app starts and
  again after it stops (rates on this machine drift by 10-25% over minutes); the 0 ms
  target is against the mean of the two, and each is reported.
- **operator-comms**: a campaign through the real HTTP API for each W with one SMTP
  connection per send task (one message at a time, like a prefork child), then for
  `--default-workers` with the app's default connections per task, and for
  `--wide-workers` with `--wide-connections` per task and batches of
  `--wide-batch-size` (one send process per core, many connections each, fewer and
  larger batches: the cheapest shape for a fast relay).

All those rows share one app start, whose warm send workers (`COMMS_SEND_WARM_WORKERS`)
are sized for its largest W; the `--wide-workers` rows run again in an app start of
their own, with warm workers sized for them, as an operator who launches only such
campaigns would set it (`--no-wide-own-start` skips that). An idle Ray worker process
wakes every 10 ms to check for signals (4-6 ms of CPU a second each, here), so the
18 idle workers a W=2 row has beside it in the shared start cost it about 6% at 0 ms.

Every row runs at least `--min-seconds` (its audience is sized from an estimate, or from
a rate this run already measured, and tried again larger until it does), and the
one-connection rows (Celery prefork and operator-comms at each W) send at least
`--min-batches` full batches per worker, the same number for both: a row of two or three
batches a worker measures its first and last batches (the first wave's and the tail's
smaller ones) more than its steady state. Rows report messages/s, launch-to-delivery
p50/p99, machine CPU, the busiest processes' CPU, and for operator-comms the database
commands per delivered message from `serverStatus` opcounters (net of the app's idle
background, measured before the rows): over the whole campaign (launch and completion
included) and over the steady window the rate is taken from (10th to 90th percentile
arrival), which is the per-batch work the target is about.

    python -m benchmarks.scaling                      # what `make bench` runs
    python -m benchmarks.scaling --workers 1 2 --delays 0 --min-seconds 2 --out /tmp/x

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
import ray
from pymongo import MongoClient, UpdateOne

from actors.local_services import local_services
from app.channels.email.mailer import Mail, build_message, message_id
from app.core.config import Settings
from app.core.db import monitoring_options
from app.core.signing_keys import LINKS, KeyRing
from app.core.tokens import customer_unsubscribe_url
from benchmarks.harness import (
    CpuWatch,
    machine,
    mongodb_uri,
    opcount,
    percentile,
    running_app,
)
from benchmarks.smtp_sink import BenchSink

RESULTS = Path(__file__).parent / "results"
OC, OC_DEFAULT, PREFORK, GEVENT, RAW, OC_SMS, OC_WIDE, OC_WIDE_OWN = (
    "operator-comms", "operator-comms (default connections)", "celery prefork",
    "celery gevent", "raw aiosmtplib", "operator-comms SMS (embedded SMSC)",
    "operator-comms (many connections)",
    "operator-comms (many connections, own app start)")
OC_CLUSTER = "operator-comms on 3 local hosts (default connections)"
OC_TELEGRAM, OC_WHATSAPP = ("operator-comms Telegram (local Bot API)",
                            "operator-comms WhatsApp (local Cloud API)")
MESSAGING = (OC_SMS, OC_TELEGRAM, OC_WHATSAPP)  # rows timed by their provider's arrivals
SMS_TEXT = "Ola {{ first_name }}, seu plano {{ plan }} pode ir para Turbo por R$ 129,90."
RAW_FROM = Settings.model_fields["mail_from"].default  # the app's default sender
RAW_KEY = KeyRing.of("raw").signing(LINKS)  # a link key of the app's shape
CPU_CEILING = 800  # messages/s assumed possible here, for sizing rows only (doubled if short)
def row_stats(sink: BenchSink, started: float, messages: int) -> dict:
    return arrival_stats(sorted(sink.stats()["arrivals"].values()), started, messages)


def arrival_stats(arrivals: list[float], started: float, messages: int) -> dict:
    latencies = [(t - started) * 1000 for t in arrivals]
    elapsed = (arrivals[-1] - started) if arrivals else float("nan")
    # Steady: between the 10th and 90th percentile arrivals, the same for every system,
    # so neither the ramp-up (a new runner actor and its first batches; send workers are
    # warm, as Celery's are started and warmed before its rows) nor the last stragglers
    # count.
    low, high = int(0.1 * (len(arrivals) - 1)), int(0.9 * (len(arrivals) - 1))
    steady = arrivals[high] - arrivals[low] if high > low else 0.0
    return {"messages": len(arrivals), "expected": messages,
            "messages_per_s": round(len(arrivals) / elapsed, 2) if arrivals else 0.0,
            "steady_messages_per_s": round((high - low) / steady, 2) if steady else 0.0,
            "first_message_s": round(arrivals[0] - started, 2) if arrivals else None,
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
            "elapsed_s": round(elapsed, 2)}


def wait_for_sink(sink: BenchSink, messages: int, timeout_s: float) -> None:
    wait_marking(sink.accepted, messages, timeout_s, mark=lambda: None)


def wait_marking(arrived, messages: int, timeout_s: float, mark,
                 poll_s: float = 0.05) -> dict[float, tuple]:
    """Wait until `arrived()` reaches messages; when it first passes 10% and 90% of
    them, `mark()` (e.g. the database's opcount) with the count and the time."""
    deadline = time.monotonic() + timeout_s
    marks: dict[float, tuple] = {}
    while (count := arrived()) < messages and time.monotonic() < deadline:
        for share in (0.1, 0.9):
            if share not in marks and count >= share * messages:
                marks[share] = (mark(), count, time.time())
        time.sleep(poll_s)
    return marks


def estimate(delay_ms: float, workers: int, connections: int) -> float:
    if delay_ms <= 0:
        return CPU_CEILING
    return min(CPU_CEILING, workers * connections * 1000 / (delay_ms + 3))


def sized_runs(run, rate: float, min_seconds: float, smallest: int, largest: int,
               resize_from_rate: bool = False) -> dict:
    """Run with an audience sized for min_seconds; double it until the row lasts, or
    (`resize_from_rate`, for rows with no audience to generate) size the next try from
    the rate the short one measured. The app's rows double, so that their audiences
    come in a few sizes, generated once each."""
    messages = max(smallest, min(largest, int(rate * min_seconds * 1.2)))
    while True:
        row = run(messages)
        if row["elapsed_s"] >= min_seconds or messages >= largest:
            return row
        if resize_from_rate:  # at least a quarter more, so that a try always grows
            messages = max(int(messages * 1.25),
                           int(row["messages_per_s"] * min_seconds * 1.2))
        else:
            messages *= 2
        messages = min(largest, messages)


# Celery ------------------------------------------------------------------------------


def celery_rows(sink: BenchSink, delay: float, workers: list[int], greenlets: int,
                per_worker: int, min_seconds: float, smallest: int, largest: int
                ) -> list[dict]:
    from benchmarks.celery_peer import RabbitMQ, celery_worker, enqueue, producer

    rows = []
    broker = RabbitMQ().start()
    try:
        client = producer(broker.url)
        configs = [(PREFORK, "prefork", w) for w in workers] + [(GEVENT, "gevent", greenlets)]
        last = None  # the previous prefork row's rate from launch
        for system, pool, concurrency in configs:
            with celery_worker(broker.url, sink.port, pool, concurrency):
                warm = max(4, min(concurrency, 64))
                sink.reset()
                for n in range(warm):  # until every child is up and connected
                    enqueue(client, -n - 1, f"warm{n}@bench.example", "Warm Up", "Basic")
                wait_for_sink(sink, warm, 120)

                def run(messages: int, client=client) -> dict:
                    sink.reset()
                    watch = CpuWatch()
                    started = time.time()
                    for n in range(messages):
                        enqueue(client, n, f"peer{n}@bench.example", "Ana Silva", "Basic")
                    wait_for_sink(sink, messages, 600)
                    stats = row_stats(sink, started, messages)
                    return {**stats, **watch.done(time.time() - started)}

                rate = estimate(delay, concurrency, 1)
                if delay <= 0 and pool == "prefork" and last:
                    # CPU-bound: a little above the last W's rate, not the 800/s guess
                    # (rows of 9.5 s at about 1,000/s each ran twice).
                    rate = 1.25 * last
                floor = max(smallest, per_worker * concurrency) if pool == "prefork" else (
                    smallest)
                row = {"sink_delay_ms": delay, "system": system, "workers": concurrency,
                       "connections_per_worker": 1,
                       **sized_runs(run, rate, min_seconds, floor, largest,
                                    resize_from_rate=True)}
                last = row["messages_per_s"] if pool == "prefork" else last
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        broker.stop()
    return rows


# raw ------------------------------------------------------------------------------------


async def raw_pipeline(port: int, messages: int, connections: int) -> float:
    """aiosmtplib into the sink: build each message and send it, nothing else."""
    counter = iter(range(messages))
    started = time.time()

    async def connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for n in counter:
            # The bytes the app's campaign sends: its template, a signed unsubscribe link
            # in the body and the headers, a Message-ID made from a delivery id (ids of
            # the app's shape: 32 hex digits).
            link = customer_unsubscribe_url(f"http://127.0.0.1:{port}", f"{n:032x}", RAW_KEY)
            mail = Mail(to_email=f"raw{n}@bench.example", to_name="Ana Silva",
                        subject="Hello Ana", text=f"Dear Ana Silva, your plan is Basic.\n{link}",
                        message_id=message_id(f"{0:024x}:{n:032x}", RAW_FROM),
                        unsubscribe_url=link)
            message = build_message(mail, RAW_FROM)
            await client.sendmail(message.sender, [message.recipient], message.data)
        await client.quit()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return started


def raw_row(sink: BenchSink, delay: float, connections: int, min_seconds: float,
            smallest: int, largest: int, measured: str) -> dict:
    def run(messages: int) -> dict:
        sink.reset()
        watch = CpuWatch()
        started = asyncio.run(raw_pipeline(sink.port, messages, connections))
        wait_for_sink(sink, messages, 60)
        stats = row_stats(sink, started, messages)
        return {**stats, **watch.done(time.time() - started)}

    row = {"sink_delay_ms": delay, "system": RAW, "workers": "raw", "measured": measured,
           "connections_per_worker": connections,
           **sized_runs(run, estimate(delay, connections, 1), min_seconds, smallest, largest,
                        resize_from_rate=True)}
    print(json.dumps(row), flush=True)
    return row


# operator-comms ------------------------------------------------------------------------


class Audiences:
    """Tagged audiences of the sizes the rows ask for, generated once each."""

    def __init__(self, api) -> None:
        self.api, self.tags = api, {}

    def tag(self, size: int) -> str:
        if size not in self.tags:
            tag = f"scale-{size}"
            for start in range(0, size, 100_000):
                self.api.post("/api/customers/generate?wait=true", json={
                    "count": min(100_000, size - start), "tag": tag}).raise_for_status()
            self.tags[size] = tag
        return self.tags[size]


def app_rows(sink: BenchSink, delay: float, runs: list[tuple[str, int, int | None, int]],
             per_worker: int, min_seconds: float, smallest: int, largest: int,
             measured: dict[tuple[int, int | None, int], float] | None = None
             ) -> list[dict]:
    """operator-comms rows: email into the sink; the SMS rows (OC_SMS) into the app's
    embedded SMSC (its own actor process), answering each part after the same delay.
    `measured`: rates (from launch) already seen for a (W, connections, batch size), to
    size a row's audience from in place of the estimate."""
    rows = []
    # Send workers for the largest W started with the app (COMMS_SEND_WARM_WORKERS), as
    # Celery's pool processes are started before its rows; and a few more, for the next
    # batches that start while others drain.
    most = max(workers for _, workers, _, _ in runs)
    warm = most + max(2, most // 4)
    # The messaging rows' providers answer each call after the same delay; their
    # ceilings (Telegram's 30/s, a number's 80/s) are lifted: the rows measure the send
    # path, not the provider's policy.
    with running_app(smtp_host="127.0.0.1", smtp_port=sink.port, send_lease_s=60,
                     smsc_submit_delay_s=delay / 1000, send_warm_workers=warm,
                     local_telegram_latency_s=delay / 1000,
                     local_whatsapp_latency_s=delay / 1000,
                     telegram_rate_limit_per_s=None, whatsapp_rate_limit_per_s=None,
                     ) as (settings, api, _base):
        services = local_services(settings)
        uri = mongodb_uri(settings)
        # Its client monitors the server as the app's do (`app.core.db`): the driver's default
        # streaming monitor sent two `hello`s per 10 s, counted as the campaign's.
        mongo = MongoClient(uri, **monitoring_options(uri))
        audiences = Audiences(api)
        reachable: set[tuple[str, str]] = set()  # (system, tag) made reachable

        def reach(system: str, tag: str) -> None:
            """Link the tag's customers' Telegram chats, or give their numbers WhatsApp,
            at the local providers (once per tag)."""
            if system not in (OC_TELEGRAM, OC_WHATSAPP) or (system, tag) in reachable:
                return
            db = mongo[settings.mongodb_db]
            docs = list(db.customers.find({"tags": tag}, {"phone": 1}).sort("_id", 1))
            if system == OC_TELEGRAM:
                chats = [2_000_000_000 + n for n in range(len(docs))]
                db.customers.bulk_write([
                    UpdateOne({"_id": d["_id"]}, {"$set": {"telegram": {"chat_id": str(chat)}}})
                    for d, chat in zip(docs, chats, strict=True)])
                ray.get(services.telegram_open_chats.remote(chats))
            else:
                ray.get(services.whatsapp_register_many.remote(
                    ["".join(ch for ch in d["phone"] if ch.isdigit()) for d in docs]))
            reachable.add((system, tag))

        def arrivals(system: str, since: float) -> list[float]:
            remote = {OC_SMS: services.sms_arrivals, OC_TELEGRAM: services.telegram_arrivals,
                      OC_WHATSAPP: services.whatsapp_arrivals}[system]
            return ray.get(remote.remote(since))
        audiences.tag(smallest)
        idle_from, idle_ops, idle_cpu = time.time(), opcount(mongo), CpuWatch()
        time.sleep(5)
        background = (opcount(mongo) - idle_ops - 1) / (time.time() - idle_from)
        idle = idle_cpu.done(time.time() - idle_from)["cpu_seconds_by_part"]
        idle_per_s = {part: round(s / (time.time() - idle_from), 3) for part, s in idle.items()}
        for system, workers, connections, batch_size in runs:
            conns = connections or settings.send_connections

            def run(messages: int, workers=workers, conns=conns, batch_size=batch_size,
                    system=system) -> dict:
                messaging = system in MESSAGING
                tag = audiences.tag(messages)
                reach(system, tag)
                body = ({"channel": "sms", "body_text": SMS_TEXT} if system == OC_SMS else
                        {"channel": "telegram", "body_text": SMS_TEXT}
                        if system == OC_TELEGRAM else
                        {"channel": "whatsapp", "body_text": SMS_TEXT, "channel_options": {
                            "whatsapp": {"template": "campaign_message",
                                         "parameters": [SMS_TEXT]}}}
                        if system == OC_WHATSAPP else {
                    "subject": "Hello {{ first_name }}",
                    "body_text": "Dear {{ name }}, your plan is {{ plan }}.\n"
                                 "{{ unsubscribe_url }}"})
                created = api.post("/api/campaigns", json={
                    "name": f"scaling W={workers}", **body, "audience": {"tag": tag}})
                created.raise_for_status()
                campaign_id = created.json()["id"]
                sink.reset()
                ops_before = opcount(mongo)
                watch = CpuWatch()
                started = time.time()
                api.post(f"/api/campaigns/{campaign_id}/launch", json={
                    "workers": workers, "batch_size": batch_size, "connections": conns,
                }).raise_for_status()
                # The SMSC's arrivals come back whole from its actor: asked 5 times a
                # second, not 20, so the asking does not load the process it measures.
                marks = wait_marking(
                    (lambda: len(arrivals(system, started))) if messaging
                    else sink.accepted, messages, 1800, lambda: opcount(mongo),
                    poll_s=0.2 if messaging else 0.05)
                elapsed = time.time() - started
                cpu = watch.done(elapsed)
                while (view := api.get(f"/api/campaigns/{campaign_id}").json())[
                        "status"] not in ("completed", "failed", "cancelled"):
                    time.sleep(0.5)
                ops = opcount(mongo) - ops_before - 1
                net = ops - background * (time.time() - started)
                stats = (arrival_stats(sorted(arrivals(system, started)), started, messages)
                         if messaging else row_stats(sink, started, messages))
                delivered = max(1, stats["messages"])
                steady = None
                if 0.1 in marks and 0.9 in marks:  # each mark's serverStatus counts once
                    (ops_low, n_low, t_low), (ops_high, n_high, t_high) = marks[0.1], marks[0.9]
                    net_steady = ops_high - ops_low - 1 - background * (t_high - t_low)
                    steady = round(max(0.0, net_steady) / max(1, n_high - n_low), 4)
                return {**stats, **cpu, "status": view["status"],
                        "sent_recorded": view["counts"]["sent"],
                        "db_commands": ops,
                        "db_commands_per_message": round(max(0.0, net) / delivered, 4),
                        "db_commands_per_message_gross": round(ops / delivered, 4),
                        "db_commands_per_message_steady": steady,
                        "db_background_per_s": round(background, 2),
                        "cpu_ms_per_message_by_part": {
                            part: round(1000 * seconds / delivered, 3)
                            for part, seconds in cpu["cpu_seconds_by_part"].items()},
                        "idle_cpu_cores_by_part": idle_per_s}

            rate = (measured or {}).get((workers, connections, batch_size)) or estimate(
                delay, workers, conns)
            floor = max(smallest, per_worker * workers) if system == OC else smallest
            row = {"sink_delay_ms": delay, "system": system, "workers": workers,
                   "connections_per_worker": conns, "batch_size": batch_size,
                   "warm_workers": warm,
                   **sized_runs(run, rate, min_seconds, floor, largest)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def cluster_rows(delay: float, workers: list[int], sink_processes: int, batch_size: int,
                 min_seconds: float, smallest: int, largest: int) -> list[dict]:
    """operator-comms on three hosts of this machine (`ray up cluster-local.yaml`: the
    head, two send worker hosts; benchmarks.local_cluster): email campaigns through the
    head's API with the app's default connections per task, into a sink of the same
    delay on this machine's bridge address, beside the one-process rows of the same
    shape (OC_DEFAULT). Node boundaries cost object transfers, remote actor calls and
    the database over a network; the cores are the same two."""
    from benchmarks import local_cluster

    rows = []
    local_cluster.hosts_up()
    try:
        with BenchSink(delay_ms=delay, processes=sink_processes,
                       host=local_cluster.BRIDGE) as sink:
            local_cluster.set_env(COMMS_SMTP_HOST=local_cluster.BRIDGE,
                                  COMMS_SMTP_PORT=str(sink.port), COMMS_SEND_LEASE_S="60")
            local_cluster.cluster_up()
            uri = local_cluster.probe("endpoints")["mongodb_uri"]
            mongo = MongoClient(uri, **monitoring_options(uri))
            with local_cluster.admin_client(timeout=120) as api:
                audiences = Audiences(api)
                audiences.tag(smallest)
                idle_from, idle_ops = time.time(), opcount(mongo)
                time.sleep(5)
                background = (opcount(mongo) - idle_ops - 1) / (time.time() - idle_from)
                for w in workers:
                    def run(messages: int, w: int = w) -> dict:
                        created = api.post("/api/campaigns", json={
                            "name": f"cluster W={w}", "subject": "Hello {{ first_name }}",
                            "body_text": "Dear {{ name }}, your plan is {{ plan }}.\n"
                                         "{{ unsubscribe_url }}",
                            "audience": {"tag": audiences.tag(messages)}})
                        created.raise_for_status()
                        campaign_id = created.json()["id"]
                        sink.reset()
                        ops_before, watch, started = opcount(mongo), CpuWatch(), time.time()
                        api.post(f"/api/campaigns/{campaign_id}/launch", json={
                            "workers": w, "batch_size": batch_size}).raise_for_status()
                        marks = wait_marking(sink.accepted, messages, 1800,
                                             lambda: opcount(mongo))
                        cpu = watch.done(time.time() - started)  # (every host's)
                        while (view := api.get(f"/api/campaigns/{campaign_id}").json())[
                                "status"] not in ("completed", "failed", "cancelled"):
                            time.sleep(0.5)
                        stats = row_stats(sink, started, messages)
                        steady = None
                        if 0.1 in marks and 0.9 in marks:
                            (ops_low, n_low, t_low), (ops_high, n_high, t_high) = (
                                marks[0.1], marks[0.9])
                            net = ops_high - ops_low - 1 - background * (t_high - t_low)
                            steady = round(max(0.0, net) / max(1, n_high - n_low), 4)
                        ops = opcount(mongo) - ops_before - 1
                        delivered = max(1, stats["messages"])
                        net = ops - background * (time.time() - started)
                        return {**stats, **cpu, "status": view["status"],
                                "sent_recorded": view["counts"]["sent"],
                                "by_node": view["by_node"], "db_commands": ops,
                                "db_commands_per_message": round(max(0.0, net) / delivered,
                                                                 4),
                                "db_commands_per_message_steady": steady}

                    row = {"sink_delay_ms": delay, "system": OC_CLUSTER, "workers": w,
                           "connections_per_worker": 8, "batch_size": batch_size,
                           **sized_runs(run, estimate(delay, w, 8), min_seconds,
                                        smallest, largest)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        local_cluster.cluster_down()
    return rows


# outputs ----------------------------------------------------------------------------------


def write_outputs(results: list[dict], meta: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps({**meta, "results": results}, indent=2))
    fields = ["sink_delay_ms", "system", "workers", "connections_per_worker", "batch_size",
              "messages", "steady_messages_per_s", "messages_per_s", "first_message_s",
              "p50_ms", "p99_ms", "cpu_percent", "db_commands_per_message",
              "db_commands_per_message_steady", "elapsed_s", "warm_workers"]
    with open(out / "scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = [f"Machine: {json.dumps(meta['machine'])}", f"Command: `{meta['command']}`", "",
             "| sink delay | system | W | conns/W | batch | warm workers | messages "
             "| msg/s steady | vs Celery same W | msg/s from launch | first message s "
             "| p99 ms | CPU % | DB cmds/msg steady | DB cmds/msg whole campaign "
             "| busiest processes (% of one core) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for delay in sorted({r["sink_delay_ms"] for r in results}, reverse=True):
        rows = [r for r in results if r["sink_delay_ms"] == delay]
        celery = {r["workers"]: r["steady_messages_per_s"] for r in rows
                  if r["system"] == PREFORK}
        for r in rows:
            peer = (celery.get(r["workers"]) if r["system"] in (OC, OC_DEFAULT, OC_WIDE,
                                                                 OC_WIDE_OWN) else None)
            ratio = f"{r['steady_messages_per_s'] / peer:.2f}x" if peer else ""
            busiest = "; ".join(f"{p['process'][:40]} {p['cpu_percent_of_one_core']}"
                                for p in r.get("top_processes", [])[:3])
            cmds, steady = (r.get("db_commands_per_message"),
                            r.get("db_commands_per_message_steady"))
            lines.append(
                f"| {delay:g} ms | {r['system']}"
                f"{' (' + r['measured'] + ')' if r.get('measured') else ''} | {r['workers']} | "
                f"{r['connections_per_worker']} | {r.get('batch_size', '')} | "
                f"{r.get('warm_workers', '')} | {r['messages']} | "
                f"{r['steady_messages_per_s']} | {ratio} | {r['messages_per_s']} | "
                f"{r['first_message_s']} | {r['p99_ms'] or ''} | {r['cpu_percent']} | "
                f"{'' if steady is None else steady} | {'' if cmds is None else cmds} | "
                f"{busiest} |")
    lines += ["", "Targets on the steady rate (ratios from this run): "
              + json.dumps(meta.get("targets", {})), "",
              "The same from launch (start-up included): "
              + json.dumps(meta.get("targets_from_launch", {}))]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    chart(results, out / "scaling.png", meta)


def chart(results: list[dict], path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delays = sorted({r["sink_delay_ms"] for r in results}, reverse=True)
    fig, axes = plt.subplots(1, len(delays), figsize=(6.5 * len(delays), 4.8), squeeze=False)
    styles = {OC: ("o-", "#5b2a86"), OC_DEFAULT: ("s-", "#c0398a"),
              OC_WIDE: ("*", "#d62728"), OC_WIDE_OWN: ("P", "#ff7f0e"),
              PREFORK: ("^--", "#1f6fb2"),
              OC_SMS: ("D-", "#6b6b6b"), OC_TELEGRAM: ("v", "#229ed9"),
              OC_WHATSAPP: ("X", "#25d366")}
    for ax, delay in zip(axes[0], delays, strict=True):
        rows = [r for r in results if r["sink_delay_ms"] == delay]
        for system, (marker, colour) in styles.items():
            mine = [r for r in rows if r["system"] == system]
            series = sorted((r["workers"], r["steady_messages_per_s"]) for r in mine)
            if series:
                sizes = sorted({r.get("batch_size") for r in mine if r.get("batch_size")})
                ax.plot([x for x, _ in series], [y for _, y in series], marker, color=colour,
                        label=f"{system}, batch {'/'.join(map(str, sizes))}" if sizes
                        else system)
        for system, colour, style in ((RAW, "#1f8a4c", ":"), (GEVENT, "#e08a00", "-.")):
            level = [r["steady_messages_per_s"] for r in rows if r["system"] == system]
            if level:
                ax.axhline(sum(level) / len(level), color=colour, linestyle=style,
                           label=f"{system}" + (f" (mean of {len(level)})"
                                                if len(level) > 1 else ""))
        workers = sorted({r["workers"] for r in rows if isinstance(r["workers"], int)
                          and r["system"] != GEVENT})
        ax.set_xscale("log", base=2)
        ax.set_xticks(workers, [str(x) for x in workers])
        ax.set_xlabel("workers (send tasks / prefork children)")
        ax.set_ylabel("messages/s (steady: 10th-90th percentile arrivals)")
        ax.set_title(f"relay delay {delay:g} ms")
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"operator-comms vs Celery on {meta['machine']['cpu_count']} cores, "
                 f"{meta['machine']['memory_gib']} GiB (one run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def targets(results: list[dict], rate: str = "steady_messages_per_s") -> dict:
    """The issue's targets from this run's rows, on the steady rate (10th to 90th
    percentile arrival) or, with rate="messages_per_s", from launch (start-up included)."""
    found: dict = {"rate": rate}
    results = [{**r, "messages_per_s": r.get(rate, r["messages_per_s"])} for r in results]

    def pick(delay_zero: bool, system: str) -> list[dict]:
        return [r for r in results if (r["sink_delay_ms"] == 0) == delay_zero
                and r["system"] == system]

    def best(rows: list[dict]) -> float:
        return max((r["messages_per_s"] for r in rows), default=0.0)

    oc0 = best(pick(True, OC) + pick(True, OC_DEFAULT) + pick(True, OC_WIDE)
               + pick(True, OC_WIDE_OWN))
    raws = [r["messages_per_s"] for r in pick(True, RAW)]
    raw0 = sum(raws) / len(raws) if raws else 0.0  # before and after the app rows
    celery0 = best(pick(True, PREFORK) + pick(True, GEVENT))
    if oc0 and celery0:
        found["zero_best_vs_best_celery"] = round(oc0 / celery0, 3)
        found["zero_best_vs_best_celery_met"] = oc0 >= 1.2 * celery0
    if oc0 and raw0:
        found["zero_best_vs_raw"] = round(oc0 / raw0, 3)
        found["zero_best_vs_raw_met"] = oc0 >= 0.7 * raw0
        found["zero_best_vs_each_raw"] = [round(oc0 / raw, 3) for raw in raws]
    oc, prefork = pick(False, OC), {r["workers"]: r for r in pick(False, PREFORK)}
    if oc and prefork:
        ratios = {r["workers"]: round(r["messages_per_s"] / prefork[r["workers"]][
            "messages_per_s"], 3) for r in oc if r["workers"] in prefork}
        found["delayed_vs_celery_same_w"] = ratios
        found["delayed_every_w_at_least_celery"] = all(v >= 1 for v in ratios.values())
    by_w = {r["workers"]: r["messages_per_s"] for r in oc}
    if 1 in by_w and 8 in by_w:
        found["delayed_w8_vs_8x_w1"] = round(by_w[8] / (8 * by_w[1]), 3)
        found["delayed_w8_vs_8x_w1_met"] = by_w[8] >= 0.9 * 8 * by_w[1]
    default = {r["workers"]: r["messages_per_s"] for r in pick(False, OC_DEFAULT)}
    celery_best = best(pick(False, PREFORK) + pick(False, GEVENT))
    if 8 in default and 8 in prefork:
        found["delayed_default_w8_vs_celery_w8"] = round(
            default[8] / prefork[8]["messages_per_s"], 3)
        found["delayed_default_w8_vs_celery_w8_met"] = default[8] >= 4 * prefork[8][
            "messages_per_s"]
    if 8 in default and celery_best:
        found["delayed_default_w8_vs_best_celery"] = round(default[8] / celery_best, 3)
        found["delayed_default_w8_vs_best_celery_met"] = default[8] >= 2 * celery_best
    # Email rows at batch size 100 (the issue's), in the steady window: the work per
    # batch. The whole campaign's figure adds its fixed commands (launch, the runner's
    # start, completion: about 25), which a short row at a slow relay spreads thin.
    email = [r for r in results if r.get("batch_size") == 100 and r["system"] not in MESSAGING]
    per_message = [r["db_commands_per_message_steady"] for r in email
                   if r.get("db_commands_per_message_steady") is not None]
    if per_message:
        found["db_commands_per_message_max"] = max(per_message)
        found["db_commands_per_message_met"] = max(per_message) <= 0.1
    whole = [r["db_commands_per_message"] for r in email if "db_commands_per_message" in r]
    if whole:
        found["db_commands_per_message_whole_campaign_max"] = max(whole)
    for system, key in ((OC_TELEGRAM, "telegram"), (OC_WHATSAPP, "whatsapp")):
        rows = [r for r in results if r["system"] == system and r["workers"] == 8
                and r.get("db_commands_per_message_steady") is not None]
        if rows:
            worst = max(r["db_commands_per_message_steady"] for r in rows)
            found[f"{key}_w8_db_commands_per_message"] = worst
            found[f"{key}_w8_db_commands_per_message_met"] = worst <= 0.1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--default-workers", type=int, nargs="*", default=[8, 16],
                        help="W values also run with the app's default connections per task")
    parser.add_argument("--wide-workers", type=int, nargs="*", default=[2],
                        help="W values also run with --wide-connections per task")
    parser.add_argument("--wide-connections", type=int, default=32)
    parser.add_argument("--wide-batch-size", type=int, default=500,
                        help="batch size of the --wide-workers rows")
    parser.add_argument("--wide-own-start", action=argparse.BooleanOptionalAction,
                        default=True, help="run the --wide-workers rows again in an app "
                        "start of their own, its warm workers sized for them")
    parser.add_argument("--delays", type=float, nargs="+", default=[50.0, 0.0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--smallest", type=int, default=200)
    parser.add_argument("--min-batches", type=int, default=4,
                        help="full batches per worker, at least, in the one-connection rows")
    parser.add_argument("--largest", type=int, default=30_000)
    parser.add_argument("--sink-processes", type=int, default=2)
    parser.add_argument("--raw-connections", type=int, default=16)
    parser.add_argument("--gevent-greenlets", type=int, default=64)
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery peer")
    parser.add_argument("--sms-workers", type=int, nargs="*", default=[8],
                        help="SMS campaign rows (default connections) at these W")
    parser.add_argument("--messaging-workers", type=int, nargs="*", default=[8],
                        help="Telegram and WhatsApp campaign rows (default connections), "
                        "against the local providers answering after the same delay")
    parser.add_argument("--cluster-workers", type=int, nargs="*", default=[2, 4, 8],
                        help="W of the rows on three local hosts (ray up cluster-local.yaml;"
                        " root), at the first delay above 0; none: skip them")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    results: list[dict] = []
    meta = {"machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": "python -m benchmarks.scaling " + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items()
                if k not in ("out", "no_celery", "wide_own_start"))
            + (" --no-celery" if args.no_celery else "")
            + ("" if args.wide_own_start else " --no-wide-own-start")}
    bounds = (args.min_seconds, args.smallest, args.largest)
    per_worker = args.min_batches * args.batch_size
    for delay in args.delays:
        with BenchSink(delay_ms=delay, processes=args.sink_processes) as sink:
            if not args.no_celery:
                results += celery_rows(sink, delay, args.workers, args.gevent_greenlets,
                                       per_worker, *bounds)
            results.append(raw_row(sink, delay, args.raw_connections, *bounds,
                                   measured="before the app"))
            size = args.batch_size
            runs = [(OC, w, 1, size) for w in args.workers] + [
                (OC_DEFAULT, w, None, size) for w in args.default_workers] + [
                (OC_WIDE, w, args.wide_connections, args.wide_batch_size)
                for w in args.wide_workers] + [
                (OC_SMS, w, None, size) for w in args.sms_workers] + [
                (system, w, None, size) for system in (OC_TELEGRAM, OC_WHATSAPP)
                for w in args.messaging_workers]
            shared = app_rows(sink, delay, runs, per_worker, *bounds)
            results += shared
            if args.wide_own_start and args.wide_workers:
                # Sized from the same rows in the shared start: one try, not the doubling
                # from the estimate, each on a fresh database that generates its audience.
                seen = {(r["workers"], r["connections_per_worker"], r["batch_size"]):
                        r["messages_per_s"] for r in shared if r["system"] == OC_WIDE}
                results += app_rows(sink, delay, [
                    (OC_WIDE_OWN, w, args.wide_connections, args.wide_batch_size)
                    for w in args.wide_workers], per_worker, *bounds, measured=seen)
            results.append(raw_row(sink, delay, args.raw_connections, *bounds,
                                   measured="after the app"))
        if args.cluster_workers and delay == next((d for d in args.delays if d > 0), None):
            results += cluster_rows(delay, args.cluster_workers, args.sink_processes,
                                    args.batch_size, *bounds)
    meta["targets"] = targets(results)
    meta["targets_from_launch"] = targets(results, "messages_per_s")
    write_outputs(results, meta, args.out)
    print(json.dumps(meta["targets"]), flush=True)
    print(json.dumps(meta["targets_from_launch"]), flush=True)


if __name__ == "__main__":
    main()
