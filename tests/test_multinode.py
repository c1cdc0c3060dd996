"""Multi-node behaviour on one machine: a head and two worker nodes (ray.cluster_utils).

The scenario runs in its own process (tests/utils/multinode.py): one Ray per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a Ray of its own, minutes


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("multinode") / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMS_", "RAY_"))}
    run = subprocess.run([sys.executable, "-m", "tests.utils.multinode", str(out)], env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "node_lost" in result, run.stderr[-3000:]
    return result


def test_send_tasks_run_on_both_worker_nodes(scenario: dict) -> None:
    spread = scenario["spread"]
    workers = {node_id[:12] for node_id in scenario["workers"]}
    assert set(spread["by_node"]) == workers  # both workers, never the head
    assert sum(spread["by_node"].values()) == spread["sent"] == 200
    assert len(spread["sink"]) == 200 and set(spread["sink"].values()) == {1}


def test_a_worker_node_removed_mid_campaign(scenario: dict) -> None:
    lost = scenario["node_lost"]
    assert lost["status"] == "completed" and lost["sent"] == 300
    # Every recipient has exactly one message in their mailbox (by Message-ID).
    assert len(lost["distinct"]) == 300 and set(lost["distinct"].values()) == {1}
    # A node that vanishes can cut a send between the relay's 250 and its record; those
    # few go out again with the same Message-ID. At most one per connection in flight.
    resent = sum(lost["sink"].values()) - 300
    print(f"SMTP transactions repeated after the node loss: {resent}")
    assert 0 <= resent <= 4 * 4
    surviving = scenario["workers"][0][:12]
    assert surviving in lost["by_node"]
