"""What does tracing cost? The same campaign and the same chat turns with tracing off
and with every trace kept (`COMMS_OTLP_SAMPLE_RATIO=1`), alternating in one run (off
first in odd rounds, on first in even ones), each on a fresh Ray (tracing is set when
Ray starts), against the benchmark SMTP sink and an OTLP/HTTP receiver in processes of
their own.

Reports each campaign's send rate (steady and from launch, as `benchmarks.scaling`),
the chat turns' latency from a closed loop of one customer, and the spans received.
A first campaign per app, not reported, warms the send workers.

    python -m benchmarks.tracing_cost                  # 10,000 messages, W=4, 2 rounds
    python -m benchmarks.tracing_cost --messages 2000 --rounds 1 --out /tmp/x
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from benchmarks.harness import machine, percentile, running_app
from benchmarks.webhooks import campaign, mean_steady
from embedded.processes import free_port

RESULTS = Path(__file__).parent / "results"
SPANS_LEAVE_S = 6.0  # each process sends its spans every 5 s (the SDK's default batching)


def receive(port: int, spans) -> None:
    """The OTLP receiver: decodes each export and counts its spans."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            request = ExportTraceServiceRequest.FromString(body)
            with spans.get_lock():
                spans.value += sum(len(scope.spans) for resource in request.resource_spans
                                   for scope in resource.scope_spans)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def chat_turns(base: str, turns: int) -> dict:
    """One customer taking `turns` turns in a row: the support conversation (slow
    internet, solved) over and over; an ended conversation starts again."""
    answers = itertools.cycle(["1", "2", "2", "2", "1"])
    with httpx.Client(base_url=base, timeout=30) as client:
        session = client.post("/chat/api/sessions", json={}).json()
        path = f"/chat/api/sessions/{session['session_id']}/messages"
        headers = {"Authorization": f"Bearer {session['token']}",
                   "x-session-id": session["session_id"]}
        for _ in range(20):  # warm: the session remembered, connections open
            client.post(path, json={"text": next(answers)}, headers=headers).raise_for_status()
        latencies = []
        started = time.perf_counter()
        for _ in range(turns):
            sent = time.perf_counter()
            client.post(path, json={"text": next(answers)}, headers=headers).raise_for_status()
            latencies.append((time.perf_counter() - sent) * 1000)
        elapsed = time.perf_counter() - started
    return {"turns": turns, "turns_per_s": round(turns / elapsed, 1),
            "turn_p50_ms": round(percentile(latencies, 50), 2),
            "turn_p95_ms": round(percentile(latencies, 95), 2)}


def run_app(args, sink, overrides: dict, spans) -> dict:
    with running_app(smtp_host="127.0.0.1", smtp_port=sink.port,
                     limit_chat_turns_per_session=0, **overrides) as (
            _settings, api, base):
        tag = "tracing-bench"
        api.post("/api/customers/generate?wait=true",
                 json={"count": args.messages, "tag": tag}).raise_for_status()
        campaign(api, sink, tag, args.messages, args.workers)  # warm: workers, pools
        before = spans.value
        row = campaign(api, sink, tag, args.messages, args.workers)
        time.sleep(SPANS_LEAVE_S)
        row["spans_per_campaign"] = spans.value - before
        before = spans.value
        row.update(chat_turns(base, args.turns))
        time.sleep(SPANS_LEAVE_S)
        row["spans_per_turn"] = round((spans.value - before) / (args.turns + 20), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    from benchmarks.smtp_sink import BenchSink

    port = free_port()
    context = multiprocessing.get_context("spawn")
    spans = context.Value("q", 0)
    receiver = context.Process(target=receive, args=(port, spans), daemon=True)
    receiver.start()
    traced = {"otlp_endpoint": f"http://127.0.0.1:{port}", "otlp_sample_ratio": 1.0}
    rows: dict[str, list[dict]] = {}
    with BenchSink(delay_ms=0, processes=2) as sink:
        modes = [("off", {}), ("on", traced)]
        for n in range(args.rounds):  # interleaved (this machine's speed drifts), and
            for name, overrides in modes[::-1] if n % 2 else modes:  # each first in turn
                rows.setdefault(name, []).append(run_app(args, sink, overrides, spans))
    receiver.terminate()
    means = {name: {"steady_messages_per_s": mean_steady(found),
                    "turn_p50_ms": round(sum(r["turn_p50_ms"] for r in found) / len(found), 2)}
             for name, found in rows.items()}
    result: dict = {
        "machine": machine(),
        "command": f"python -m benchmarks.tracing_cost --messages {args.messages} "
                   f"--workers {args.workers} --turns {args.turns} --rounds {args.rounds}",
        **rows, "means": means,
        "send_rate_on_vs_off": round(means["on"]["steady_messages_per_s"]
                                     / means["off"]["steady_messages_per_s"], 3),
        "turn_p50_on_vs_off": round(means["on"]["turn_p50_ms"] / means["off"]["turn_p50_ms"], 3),
    }
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tracing_cost.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
