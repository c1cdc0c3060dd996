"""Ray's autoscaler adds a send worker node when a campaign needs more `comms_sender`
slots than the running workers offer, the campaign's sends land on it, and it is
removed once idle. The scenario (tests/utils/autoscaling.py) runs on a host of its own
(`deploy/local-hosts.sh`), where the fake multi-node provider's `ray stop` reaches no
other Ray of this machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # (root: namespaces; a few minutes)

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ROOT / "deploy" / "local-hosts.sh"


def hosts(*args: str, timeout: float = 120, check: bool = True
          ) -> subprocess.CompletedProcess:
    return subprocess.run([str(HOSTS), *args], capture_output=True, text=True,
                          timeout=timeout, check=check)


@pytest.fixture(scope="module")
def seen() -> dict:
    hosts("down")
    try:
        hosts("up", "1")
        run = hosts("ssh", "1", "--",
                    f"cd {ROOT} && /tmp/occ-image/bin/python -m tests.utils.autoscaling "
                    "/tmp/autoscaling.json; cat /tmp/autoscaling.json",
                    timeout=900, check=False)
    finally:
        hosts("down", check=False)
    lines = run.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), run.stdout[-3000:] + run.stderr[-3000:]
    seen = json.loads(lines[-1])
    assert "error" not in seen, seen["error"]
    return seen


def test_a_campaign_wanting_more_slots_makes_the_autoscaler_add_a_sender_node(seen) -> None:
    assert len(seen["before"]) == 1 and len(seen["added"]) >= 1, seen


def test_the_added_node_sends_and_each_recipient_gets_one_message(seen) -> None:
    campaign = seen["campaign"]
    assert campaign["sent"] == 1200
    assert set(seen["added"]) & {node for node, sent in campaign["by_node"].items()
                                 if sent}, campaign
    assert len(seen["sink"]) == 1200 and set(seen["sink"].values()) == {1}


def test_the_added_node_is_removed_once_idle(seen) -> None:
    """Back to min_workers (one sender node) once the campaign is over."""
    assert len(seen["after"]) == 1, seen
