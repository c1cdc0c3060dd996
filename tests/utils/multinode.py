"""A three-node Ray cluster on one machine, running the real app: `python -m
tests.utils.multinode OUT.json`. Run in its own process by tests/test_multinode.py,
because a pytest process can hold only one Ray.

The nodes are placed as cluster.yaml places them: the head has `comms_head` (actors
and replicas), the two workers have `comms_sender` (send tasks only). It runs one
campaign to see the sends spread over both workers, then another during which one
worker node is removed, and writes what it saw as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import ray
from ray.cluster_utils import Cluster

from app.core.config import load_settings
from deployments.launcher import launched
from embedded.processes import free_port
from tests.utils.campaigns import wait_for as wait


def campaign(client: httpx.Client, count: int, **launch) -> tuple[str, str]:
    domain = f"nodes-{uuid.uuid4().hex[:8]}.example"
    client.post("/api/customers/generate?wait=true", json={"count": count, "domain": domain,
                                                 "tag": domain}).raise_for_status()
    created = client.post("/api/campaigns", json={
        "name": domain, "subject": "Hi {{ first_name }}", "body_text": "Plan {{ plan }}",
        "audience": {"tag": domain}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    client.post(f"/api/campaigns/{campaign_id}/launch", json=launch).raise_for_status()
    return campaign_id, domain


def main(out: Path) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {"comms_head": 100}})
    workers = [cluster.add_node(num_cpus=1, resources={"comms_sender": 8}) for _ in range(2)]
    cluster.wait_for_nodes()
    port = free_port()
    settings = load_settings(
        data_dir=Path(tempfile.mkdtemp(prefix="multinode-")), http_port=port,
        mongodb_db="multinode", public_url=f"http://127.0.0.1:{port}",
        ray_address=cluster.address,  # the launcher joins this cluster
        send_task_resources={"comms_sender": 1}, actor_resources={"comms_head": 0.01},
        send_lease_s=5.0, retry_backoff_s=0.2)
    result: dict = {"workers": [w.node_id for w in workers]}
    try:
        with launched(settings, proxy_location="HeadOnly") as app:
            _scenario(app.client(timeout=60), app.services, cluster, workers, result)
    finally:
        out.write_text(json.dumps(result))
        cluster.shutdown()


def _scenario(client: httpx.Client, services, cluster: Cluster, workers: list,
              result: dict) -> None:
    spread_id, spread_domain = campaign(client, 200, workers=4, batch_size=10)
    view = wait(client, spread_id, lambda v: v["status"] == "completed")
    result["spread"] = {"by_node": view["by_node"], "sent": view["counts"]["sent"],
                        "sink": ray.get(services.outbox_counts.remote(spread_domain))}

    lost_id, lost_domain = campaign(client, 300, workers=4, batch_size=10,
                                    rate_limit_per_s=60)
    wait(client, lost_id, lambda v: v["counts"]["sent"] >= 60)
    cluster.remove_node(workers[1])
    view = wait(client, lost_id, lambda v: v["status"] == "completed")
    result["node_lost"] = {
        "status": view["status"], "sent": view["counts"]["sent"],
        "by_node": view["by_node"],
        "sink": ray.get(services.outbox_counts.remote(lost_domain)),
        "distinct": ray.get(services.outbox_distinct_counts.remote(lost_domain)),
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]))
