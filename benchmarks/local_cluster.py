"""operator-comms on a real cluster of this machine's hosts, driven as an operator
drives one: `deploy/local-hosts.sh up 3`, `ray up cluster-local.yaml`, `serve deploy`
through `ray exec`, the API on the head's address (10.231.0.11:8000); `ray down` and
hosts down after. Used by the scaling benchmark's cluster rows and by
tests/test_cluster_local.py. Needs root (network namespaces).

The hosts share this machine's cores: the rows measure what node boundaries cost
(object transfers, remote actor calls, the database and relay over a network), not
more hardware.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ROOT / "deploy" / "local-hosts.sh"
ENV_FILE = ROOT / "deploy" / ".local-hosts" / "operator-comms.env"
RAY = str(Path(sys.executable).parent / "ray")
HEAD, WORKERS = "10.231.0.11", ("10.231.0.12", "10.231.0.13")
BRIDGE = "10.231.0.1"  # this machine, as the hosts see it
API = f"http://{HEAD}:8000"
ON_NODE = "/tmp/operator-comms/deploy/on-node"  # a node's env file, image and code
STATE = Path("/tmp/ray/cluster-operator-comms-local.state")  # the local provider's


def sh(*command: str, timeout: float = 300, check: bool = True
       ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMS_", "RAY_"))}
    env["PATH"] = f"{Path(RAY).parent}:{env.get('PATH', '')}"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} -> {done.returncode}\n"
                           f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def hosts(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(str(HOSTS), *args, check=check)


def on_head(command: str, timeout: float = 120) -> str:
    """`ray exec cluster-local.yaml CMD`: what an operator runs on the head."""
    return sh(RAY, "exec", "cluster-local.yaml", command, timeout=timeout).stdout


def probe(*args: str) -> Any:
    """What tests.utils.cluster_probe says, run on the head."""
    out = on_head(f"{ON_NODE} python -m tests.utils.cluster_probe " + " ".join(args))
    [line] = [line for line in out.splitlines() if line.startswith("PROBE ")]
    return json.loads(line[len("PROBE "):])


def until(check, timeout: float, what: str, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def admin_token() -> str:
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("COMMS_ADMIN_TOKEN="):
            return line.split("=", 1)[1].strip("'")
    raise RuntimeError("no admin token in the local hosts' env file")


def hosts_up() -> None:
    """Three fresh hosts (whatever a run before left, gone first)."""
    hosts("down")
    STATE.unlink(missing_ok=True)
    hosts("up", "3")


def set_env(**values: str) -> None:
    """Settings for the cluster's nodes, in the env file `ray up` copies to them."""
    lines = [line for line in ENV_FILE.read_text().splitlines()
             if line.split("=", 1)[0] not in values]
    ENV_FILE.write_text("\n".join([*lines, *(f"{k}='{v}'" for k, v in values.items())])
                        + "\n")


def cluster_up() -> list[dict]:
    """`ray up`, every node joined, `serve deploy`, the API answering; the nodes."""
    sh(RAY, "up", "cluster-local.yaml", "-y", "--no-config-cache", timeout=400)
    nodes = until(lambda: (n := probe("nodes")) and len(n) == 3 and n, 240,
                  "the head and two worker nodes")
    on_head(f"{ON_NODE} serve deploy serve_config.yaml")
    with admin_client() as api:
        until(lambda: _answers(api), 300, "the API on the head's address")
    return nodes


def admin_client(timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=API, timeout=timeout,
                        headers={"Authorization": f"Bearer {admin_token()}"})


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/api/campaigns").status_code == 200 and httpx.get(
            f"{API}/chat/api/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def cluster_down() -> dict:
    """`ray down`, then the hosts; what was left on the head after `ray down`."""
    down = sh(RAY, "down", "cluster-local.yaml", "-y", timeout=300, check=False).returncode
    # (With the local provider `ray down` stops the head's Ray; a worker's raylet exits
    # once it has lost the head for a while, or with its host.)
    left = hosts("ssh", "1", "--", "pgrep -c -f '[r]aylet|[g]cs_server' || true",
                 check=False).stdout.strip()
    hosts("down", check=False)
    STATE.unlink(missing_ok=True)
    return {"ray_down": down, "ray_left_on_head": left}
