"""Traces and JSON logs of the real app: Serve's proxy and replicas, the actors and the
send tasks export spans over OTLP/HTTP to a receiver in this process, and every log
line they write is JSON.

The app runs in its own process (tests/utils/observed.py) with `COMMS_OTLP_ENDPOINT`
and `COMMS_LOG_FORMAT=json`: both are set when Ray starts, and a pytest process holds
one Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.utils.otlp_receiver import OtlpReceiver

# Ray writes these to a worker's stdout and stderr to route its lines to the driver
# (which strips them); they are Ray's protocol, not log lines.
RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:")

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a Ray of its own, minutes


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory):
    receiver = OtlpReceiver().start()
    out = tmp_path_factory.mktemp("observed") / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMS_", "RAY_"))}
    env.update(COMMS_OTLP_ENDPOINT=receiver.url, COMMS_LOG_FORMAT="json",
               COMMS_LOG_LEVEL="INFO", OTEL_BSP_SCHEDULE_DELAY="200")
    run = subprocess.run([sys.executable, "-m", "tests.utils.observed", str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    try:
        yield json.loads(out.read_text()), receiver
    finally:
        receiver.stop()


def spans_of(receiver: OtlpReceiver, trace_id: str, *names: str,
             timeout_s: float = 10) -> list[dict]:
    """The trace's spans once a span starting with each name is among them (spans arrive
    in batches, a fifth of a second apart here)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = receiver.trace(trace_id)
        have = [s["name"] for s in spans]
        if all(any(n.startswith(name) for n in have) for name in names) \
                or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def test_a_campaign_launch_is_one_trace_from_the_proxy_to_the_send_batches(observed):
    result, receiver = observed
    campaign_id = result["campaign"]["id"]
    assert result["campaign"]["sent"] == 40
    runners = [s for s in receiver.spans if s["name"] == "campaign.runner"
               and s["attributes"].get("campaign") == campaign_id]
    assert len(runners) == 1
    trace = spans_of(receiver, runners[0]["trace_id"], "send.batch")
    by_id = {s["span_id"]: s for s in trace}

    def ancestors(span: dict) -> list[str]:
        names = []
        while span["parent_span_id"] in by_id:
            span = by_id[span["parent_span_id"]]
            names.append(span["name"])
        return names

    # The trace starts at the proxy: its HTTP span is the root, the replica's under it.
    [root] = [s for s in trace if s["parent_span_id"] is None]
    assert root["name"].startswith("proxy_http_request Dashboard POST")
    assert root["attributes"]["http.route"] == f"/api/campaigns/{campaign_id}/launch"
    assert root["attributes"]["http.status_code"] == 202
    path = ancestors(runners[0])
    assert path[0] == "replica_handle_request Dashboard __call__"
    assert path[-1] == root["name"]
    # A span per batch, each under the runner's, each from a send worker's process.
    batches = [s for s in trace if s["name"] == "send.batch"]
    # 40 recipients, W=2, batches of 10: the first wave's 5, then 10, 10, 10, and 5.
    assert sorted(s["attributes"]["recipients"] for s in batches) == [5, 5, 10, 10, 10]
    assert sorted(s["attributes"]["batch"] for s in batches) == \
        sorted({s["attributes"]["batch"] for s in batches})
    assert sum(s["attributes"].get("sent.sent", 0) for s in batches) == 40
    for batch in batches:
        assert batch["parent_span_id"] == runners[0]["span_id"]
        assert batch["resource"]["comms.component"] == "send_task"
        assert batch["resource"]["process.pid"] != runners[0]["resource"]["process.pid"]
    # The database commands of the batch are spans of it.
    assert any(s["scope"].startswith("opentelemetry.instrumentation.pymongo")
               and s["parent_span_id"] in {b["span_id"] for b in batches} for s in trace)


def test_a_chat_turn_is_one_trace_through_proxy_replica_database_and_journeys(observed):
    result, receiver = observed
    refusal = result["chat"]["traces"][-1]  # the third turn refuses the Turbo offer
    trace = spans_of(receiver, refusal, "marketing.refusal")
    by_id = {s["span_id"]: s for s in trace}
    # The proxy's span is under the test's own (the traceparent it sent), the replica's
    # under the proxy's route to it.
    [proxy] = [s for s in trace if s["name"].startswith("proxy_http_request")]
    assert proxy["parent_span_id"] not in by_id
    assert proxy["attributes"]["http.route"].endswith("/messages")
    [replica] = [s for s in trace if s["name"].startswith("replica_handle_request ChatBot")]
    assert by_id[replica["parent_span_id"]]["parent_span_id"] == proxy["span_id"]
    # The turn's reads and writes, as MongoDB spans of the same trace.
    assert any(s["scope"].startswith("opentelemetry.instrumentation.pymongo") for s in trace)
    # The refusal was handed on to the counter-offer journey, whose shard heard it in
    # the same trace.
    [refused] = [s for s in trace if s["name"] == "marketing.refusal"]
    assert refused["attributes"]["session"] == result["chat"]["session_id"]
    assert refused["parent_span_id"] in by_id  # (under the turn's own spans)
    [heard] = [s for s in trace if s["name"] == "journeys.heard"]
    assert heard["parent_span_id"] == refused["span_id"]
    assert heard["attributes"] == {"event": "offer_refused",
                                   "session": result["chat"]["session_id"]}
    assert heard["resource"]["comms.component"].startswith("journey-shard-")
    # The turn before it is a trace of its own, with no marketing in it.
    earlier = spans_of(receiver, result["chat"]["traces"][0], "proxy_http_request")
    assert earlier and "marketing.refusal" not in {s["name"] for s in earlier}


def _log_lines(session_dir: str) -> list[tuple[str, str]]:
    logs = Path(session_dir) / "logs"
    files = [*logs.glob("worker-*.err"), *logs.glob("worker-*.out"),
             *(logs / "serve").glob("*.log")]
    return [(path.name, line) for path in files
            for line in path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith(RAY_MARKERS)]


def test_every_log_line_is_json_and_a_turns_lines_share_its_trace_id(observed):
    result, _ = observed
    lines = _log_lines(result["session_dir"])
    records = []
    for name, line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{name}: not JSON: {line[:300]}")
    # One encoding, not a JSON line inside another's message.
    assert not any(r.get("message", "").startswith("{") for r in records)
    refusal = result["chat"]["traces"][-1]
    turn_lines = [r for r in records if r.get("trace_id") == refusal]
    # The replica's line for the turn and the journey shard's for the refusal it heard.
    assert "chatbot" in {r.get("component") for r in turn_lines}
    assert any(str(r.get("component")).startswith("journey-shard-") for r in turn_lines)
    assert all(r.get("session_id") == result["chat"]["session_id"] for r in turn_lines
               if r.get("component") == "chatbot")
    # Lines of the campaign's runner and send tasks carry its id.
    campaign_lines = [r for r in records if r.get("campaign_id") == result["campaign"]["id"]]
    assert {r.get("component") for r in campaign_lines} >= {"campaign_runner", "send_task"}
    # No secret in any line.
    assert not any(result["secret"] in line for _, line in lines)
