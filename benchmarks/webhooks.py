"""Does a slow webhook receiver slow sending? The same campaign with no endpoint, with
an endpoint for every delivery event that answers at once, and with one whose
receiver takes `--receiver-delay-ms` per request (the receiver in a process of its
own), in one run, against the benchmark SMTP sink.

Reports each campaign's send rate (steady and from launch, as `benchmarks.scaling`), the webhook
messages still waiting when the campaign completed, and how long the actor took to
deliver them all afterwards. A first campaign, not reported, warms the send workers.

    python -m benchmarks.webhooks                       # 10,000 messages, W=4, 1 s receiver
    python -m benchmarks.webhooks --messages 2000 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from pymongo import MongoClient

from benchmarks.harness import machine, mongodb_uri, running_app
from benchmarks.scaling import row_stats, wait_for_sink
from benchmarks.smtp_sink import BenchSink
from embedded.processes import free_port

RESULTS = Path(__file__).parent / "results"


def serve(port: int, delay_s: float) -> None:
    """The receiver: `/slow` answers after `delay_s`, `/fast` at once."""
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path == "/slow":
                time.sleep(delay_s)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def campaign(api, sink: BenchSink, tag: str, messages: int, workers: int) -> dict:
    created = api.post("/api/campaigns", json={
        "name": "webhooks bench", "subject": "Hello {{ first_name }}",
        "body_text": "Dear {{ name }}.\n{{ unsubscribe_url }}", "audience": {"tag": tag}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    sink.reset()
    started = time.time()
    api.post(f"/api/campaigns/{campaign_id}/launch",
             json={"workers": workers, "batch_size": 100}).raise_for_status()
    wait_for_sink(sink, messages, 900)
    stats = row_stats(sink, started, messages)
    while api.get(f"/api/campaigns/{campaign_id}").json()["status"] != "completed":
        time.sleep(0.2)
    return {"campaign_id": campaign_id, **stats,
            "seconds_to_completed": round(time.time() - started, 2)}


def with_endpoint(api, sink: BenchSink, mongo, tag: str, args, url: str) -> dict:
    """A campaign while an endpoint hears every delivery event; then its backlog drained."""
    hook = api.post("/api/webhooks", json={
        "url": url, "max_in_flight": 4,
        "events": ["delivery.status", "campaign.started", "campaign.completed"]})
    hook.raise_for_status()
    time.sleep(6)  # every send worker has read the listeners again
    row = campaign(api, sink, tag, args.messages, args.workers)
    waiting = mongo.webhook_messages.count_documents({"status": "pending"})
    drained_from = time.time()
    while mongo.webhook_messages.count_documents({"status": "pending"}):
        time.sleep(0.5)
    row.update(webhook_messages=mongo.webhook_messages.count_documents({}),
               webhooks_waiting_at_completion=waiting,
               seconds_to_deliver_the_rest=round(time.time() - drained_from, 1))
    api.delete(f"/api/webhooks/{hook.json()['id']}").raise_for_status()
    return row


def mean_steady(rows: list[dict]) -> float:
    return round(sum(r["steady_messages_per_s"] for r in rows) / len(rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--receiver-delay-ms", type=float, default=1000.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(
        target=serve, args=(port, args.receiver_delay_ms / 1000), daemon=True)
    receiver.start()
    rows = {}
    with BenchSink(delay_ms=0, processes=2) as sink, running_app(
            smtp_host="127.0.0.1", smtp_port=sink.port,
            egress_allow=["127.0.0.1"]) as (settings, api, _base):  # its own receiver
        mongo = MongoClient(mongodb_uri(settings))[settings.mongodb_db]
        tag = "webhooks-bench"
        api.post("/api/customers/generate?wait=true",
                 json={"count": args.messages, "tag": tag}).raise_for_status()
        campaign(api, sink, tag, args.messages, args.workers)  # warm: workers, pools
        for _ in range(args.rounds):  # interleaved: this machine's speed drifts
            rows.setdefault("no_endpoint", []).append(
                campaign(api, sink, tag, args.messages, args.workers))
            for name, path in (("fast_endpoint", "/fast"), ("slow_endpoint", "/slow")):
                rows.setdefault(name, []).append(with_endpoint(
                    api, sink, mongo, tag, args, f"http://127.0.0.1:{port}{path}"))
    receiver.terminate()
    result: dict = {"machine": machine(), "command": "python -m benchmarks.webhooks "
              f"--messages {args.messages} --workers {args.workers} "
              f"--receiver-delay-ms {args.receiver_delay_ms:g} --rounds {args.rounds}", **rows,
              "mean_steady_messages_per_s": {name: mean_steady(found)
                                             for name, found in rows.items()}}
    means = result["mean_steady_messages_per_s"]
    result.update({"fast_vs_none": round(means["fast_endpoint"] / means["no_endpoint"], 3),
                   "slow_vs_none": round(means["slow_endpoint"] / means["no_endpoint"], 3),
                   "slow_vs_fast": round(means["slow_endpoint"] / means["fast_endpoint"], 3)})
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "webhooks.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
