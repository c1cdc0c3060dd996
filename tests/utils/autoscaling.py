"""Ray's real autoscaler adding a send worker node for a campaign: `python -m
tests.utils.autoscaling OUT.json`, run on a host of its own (tests/test_autoscaling.py
runs it on a `deploy/local-hosts.sh` host, whose `ray stop` stops only its own Ray).

The node types are cluster.yaml's (the head offers `comms_head`, sender workers
`comms_sender` slots), on Ray's fake multi-node provider (`RAY_FAKE_CLUSTER=1`: the
autoscaler's own loop, its nodes raylets on this host), with a sender worker scaled to
SLOTS slots and the idle timeout shortened. One worker runs from the start; a campaign
launched with more tasks than its slots leaves tasks waiting, the autoscaler adds a
node, the waiting tasks send from it; once the campaign is over the added node idles
and is removed. What it saw is written as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from pathlib import Path

import httpx
import ray
import yaml
from pymongo import MongoClient
from ray.util.state import list_workers

from app.core.config import load_settings
from deployments.launcher import launched
from tests.utils.campaigns import wait_for as wait

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
SLOTS = 4  # comms_sender slots of a sender node here (cluster.yaml's: 32)
TASKS = 6  # a campaign's send tasks: more than one node's slots
IDLE_MINUTES = 0.25


def fake_config() -> dict:
    cloud = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = cloud["available_node_types"]
    head = types[cloud["head_node_type"]]["resources"]
    sender = dict(types["ray.worker.sender"]["resources"], comms_sender=SLOTS)
    return {
        "cluster_name": "fake-autoscaling", "max_workers": 3,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {**head, "CPU": 2}, "node_config": {},
                                 "max_workers": 0},
            "ray.worker.sender": {"resources": {**sender, "CPU": 2,
                                                "object_store_memory": 200_000_000},
                                  "node_config": {}, "min_workers": 1, "max_workers": 3},
        },
        "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_MINUTES, "docker": {},
        **{key: [] for key in ("initialization_commands", "setup_commands",
                               "head_setup_commands", "worker_setup_commands",
                               "head_start_ray_commands", "worker_start_ray_commands",
                               "cluster_synced_files", "rsync_exclude", "rsync_filter")},
        "file_mounts": {}, "file_mounts_sync_continuously": False,
    }


def senders() -> list[str]:
    return sorted(node["NodeID"] for node in ray.nodes()
                  if node["Alive"] and "comms_sender" in node["Resources"])


def main(out: Path) -> None:
    config = Path(tempfile.mkdtemp(prefix="fake-autoscaling-")) / "cluster.json"
    config.write_text(json.dumps(fake_config()))
    env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    head = fake_config()["available_node_types"]["ray.head.default"]["resources"]
    subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
    subprocess.run([RAY, "start", "--head", f"--autoscaling-config={config}",
                    "--num-cpus=2", "--dashboard-host=127.0.0.1",
                    "--object-store-memory=300000000", "--resources=" + json.dumps(
                        {k: v for k, v in head.items() if k != "CPU"})],
                   env=env, check=True, capture_output=True)
    result: dict = {}
    try:
        settings = load_settings(
            data_dir=Path(tempfile.mkdtemp(prefix="autoscaling-")), ray_address="auto",
            mongodb_db="autoscaling", send_task_resources={"comms_sender": 1},
            actor_resources={"comms_head": 0.01}, send_task_cpus=0.05,
            send_lease_s=10.0, send_warm_workers=0)  # (no warm-up asking for slots)
        with launched(settings, proxy_location="HeadOnly") as app:
            _scenario(app.client(timeout=60), app.services, result)
    except Exception:
        result["error"] = traceback.format_exc()
        raise
    finally:
        out.write_text(json.dumps(result))
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)


def _scenario(client: httpx.Client, services, result: dict) -> None:
    # Steady first: the one sender node of min_workers, for a few seconds.
    deadline, steady_since = time.monotonic() + 180, None
    while steady_since is None or time.monotonic() - steady_since < 5:
        assert time.monotonic() < deadline, f"no steady single sender node: {senders()}"
        steady_since = (steady_since or time.monotonic()) if len(senders()) == 1 else None
        time.sleep(1)
    result["before"] = senders()
    domain = f"scale-{uuid.uuid4().hex[:8]}.example"
    client.post("/api/customers/generate?wait=true", json={
        "count": 1200, "domain": domain, "tag": domain}).raise_for_status()
    created = client.post("/api/campaigns", json={
        "name": domain, "subject": "Hi {{ first_name }}", "body_text": "Plan {{ plan }}",
        "audience": {"tag": domain}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    # Paced (about 20 s of sending), so the tasks that wait for slots are still
    # waiting when the new node joins.
    client.post(f"/api/campaigns/{campaign_id}/launch", json={
        "workers": TASKS, "batch_size": 20, "rate_limit_per_s": 60}).raise_for_status()
    grown: list[str] = []
    while not grown:
        grown = [n for n in senders() if n not in result["before"]]
        assert time.monotonic() < deadline + 120, "the autoscaler added no sender node"
        time.sleep(1)
    result["added"] = grown
    view = wait(client, campaign_id, lambda v: v["status"] == "completed", timeout_s=300)
    result["campaign"] = {"sent": view["counts"]["sent"], "by_node": _by_node(
        services, campaign_id)}
    result["sink"] = ray.get(services.outbox_distinct_counts.remote(domain))
    # Idle again: the added node goes after the (shortened) idle timeout.
    deadline = time.monotonic() + 180
    while len(senders()) > 1 and time.monotonic() < deadline:
        time.sleep(2)
    result["after"] = senders()  # (either idle node may be the one that goes)


def _by_node(services, campaign_id: str) -> dict[str, int]:
    """Sends per node, from the worker process each delivery names (the fake provider's
    node ids differ only past the 12 characters a delivery keeps of them)."""
    db = MongoClient(ray.get(services.endpoints.remote()).mongodb_uri)["autoscaling"]
    by_pid = Counter(int(doc["worker"].rsplit("-", 1)[1]) for doc in db.deliveries.find(
        {"campaign_id": campaign_id, "status": "sent"}, {"worker": 1}))  # (node-pid)
    node_of = {worker.pid: worker.node_id for worker in list_workers(
        filters=[("worker_type", "=", "WORKER")], limit=10_000, raise_on_missing_output=False)}
    by_node: Counter[str] = Counter()
    for pid, sent in by_pid.items():
        by_node[node_of.get(pid, f"pid {pid}")] += sent
    return dict(by_node)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
