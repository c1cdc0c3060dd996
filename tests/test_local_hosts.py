"""`deploy/local-hosts.sh`: hosts on this machine for `ray up cluster-local.yaml` (the
`ray up` issue, item 1). Network namespaces on a bridge, each with its own address and
an SSH server: reachable from here and from each other by SSH, and gone without a
trace (namespace, link, address, process) after `down`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import ray

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "local-hosts.sh"
pytestmark = pytest.mark.slow  # (as root: network namespaces; CI runs as root)


def hosts(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=600, check=check)


def addresses() -> str:
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


def test_hosts_answer_by_ssh_on_their_own_addresses_and_leave_nothing_behind() -> None:
    before = addresses()
    try:
        up = hosts("up", "2")
        assert "occ-host1 10.231.0.11 up" in up.stdout and "occ-host2 10.231.0.12 up" in up.stdout
        for i, address in ((1, "10.231.0.11"), (2, "10.231.0.12")):
            own = hosts("ssh", str(i), "--", "ip -4 -o addr show eth0").stdout
            assert f"{address}/24" in own
        # One host reaches the other's SSH server across the bridge.
        probe = ("python3 -c \"import socket; socket.create_connection(("
                 "'10.231.0.12', 22), 3); print('reached')\"")
        assert hosts("ssh", "1", "--", probe).stdout.strip() == "reached"
        # Each host has its own /tmp (Ray's sessions live there), not this machine's.
        hosts("ssh", "1", "--", "echo one > /tmp/occ-probe")
        assert hosts("ssh", "1", "--", "cat /tmp/occ-probe").stdout.strip() == "one"
        assert hosts("ssh", "2", "--", "test -e /tmp/occ-probe", check=False).returncode == 1
        assert not Path("/tmp/occ-probe").exists()
        # And its own processes: what `ray stop` on one host sees and stops is its own.
        seen = hosts("ssh", "1", "--", "ps -eo args").stdout
        assert "sshd_1.conf" in seen and "sshd_2.conf" not in seen and "pytest" not in seen
        # Its image: this checkout's Python environment, at the same path on every host.
        version = hosts("ssh", "2", "--", "/tmp/occ-image/bin/python -c "
                        "'import ray; print(ray.__version__)'").stdout.strip()
        assert version == ray.__version__
    finally:
        hosts("down")
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "occ-host" not in listed
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "occ-br0" not in links and "occ-v" not in links
    sshd = subprocess.run(["pgrep", "-af", "sshd"], capture_output=True, text=True).stdout
    assert ".local-hosts" not in sshd
    assert addresses() == before  # no address left, none touched
