"""The app with tracing and JSON logs on: `python -m tests.utils.observed OUT.json`, with
`COMMS_OTLP_ENDPOINT` pointing at the test's OTLP receiver. Run in its own process by
tests/test_observability.py: tracing and the log format are set when Ray starts, and a
pytest process holds one Ray.

It launches a small campaign (no trace context sent: the trace starts at the proxy),
takes a chat session through a refusal with a `traceparent` of the test's own on each
turn, and writes the ids it used and where Ray kept the logs.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import ray

from app.core.config import load_settings
from deployments.launcher import launched
from embedded.processes import free_port
from tests.utils.campaigns import create_campaign, generate_audience, launch, wait_for

SECRET = "observed-admin-token-" + secrets.token_hex(8)


def chat(base_url: str, turns: list[str]) -> dict:
    """A session, then the turns, each with a traceparent of its own; returns the
    session and the turns' trace ids."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        session = client.post("/chat/api/sessions", json={}).json()
        traces = []
        for text in turns:
            trace_id = secrets.token_hex(16)
            client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                        json={"text": text},
                        headers={"Authorization": f"Bearer {session['token']}",
                                 "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                        ).raise_for_status()
            traces.append(trace_id)
        return {"session_id": session["session_id"], "traces": traces}


def main(out: Path) -> None:
    port = free_port()
    settings = load_settings(
        data_dir=Path(tempfile.mkdtemp(prefix="observed-")), http_port=port,
        mongodb_db="observed", public_url=f"http://127.0.0.1:{port}",
        admin_token=SECRET, marketing_cooldown_s=1.0)
    assert settings.tracing and settings.log_format == "json", "set COMMS_OTLP_ENDPOINT"
    result: dict = {"secret": SECRET}
    with launched(settings, num_cpus=4) as app:  # sets the tracing and log environment
        result["session_dir"] = ray._private.worker._global_node.get_session_dir_path()
        client = app.client(timeout=60)
        domain = f"observed-{uuid.uuid4().hex[:8]}.example"
        campaign_id = create_campaign(client, generate_audience(client, 40, domain))
        launch(client, campaign_id, workers=2, batch_size=10)
        view = wait_for(client, campaign_id, lambda v: v["status"] == "completed")
        result["campaign"] = {"id": campaign_id, "sent": view["counts"]["sent"]}
        result["chat"] = chat(app.base_url, ["1", "1", "2"])
        time.sleep(3)  # the counter-offer fires after the 1 s cooldown; spans go out
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    assert os.environ.get("COMMS_OTLP_ENDPOINT"), "the test's receiver"
    main(Path(sys.argv[1]))
