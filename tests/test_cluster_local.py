"""`ray up cluster-local.yaml` for real, on three hosts of this machine (network
namespaces with SSH servers, `deploy/local-hosts.sh`): the head on 10.231.0.11, send
workers on .12 and .13. The real commands an operator types: hosts up, `ray up -y`,
`serve deploy` through `ray exec`, the API on the head's address, a 5,000-recipient
campaign whose sends land on both worker hosts, one worker host lost mid-campaign, a
chat turn during the loss, `ray down`, hosts down; then nothing of it left.

The scenario runs once (module fixture); each test asserts one part of what it saw.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.local_cluster import (
    API,
    HEAD,
    WORKERS,
    admin_client,
    cluster_down,
    cluster_up,
    hosts,
    hosts_up,
    probe,
    until,
)

pytestmark = pytest.mark.slow  # (root: namespaces; about 5 minutes)

RECIPIENTS, WORKERS_W = 5000, 8


def reaches(host: int, address: str, port: int) -> bool:
    """Whether host I (1 = the head) can open a TCP connection to address:port."""
    code = (f"import socket; socket.create_connection(('{address}', {port}), 3); "
            "print('reached')")
    done = hosts("ssh", str(host), "--", f'python3 -c "{code}"', check=False)
    return done.stdout.strip() == "reached"


def addresses() -> str:
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def seen() -> Iterator[dict]:
    before = addresses()
    seen: dict = {"timings": {}}
    started = time.monotonic()

    def mark(step: str) -> None:
        seen["timings"][step] = round(time.monotonic() - started, 1)

    try:
        hosts_up()
        mark("hosts up")
        nodes = cluster_up()  # ray up, the nodes joined, serve deploy, the API answering
        mark("serve deployed")
        seen["nodes"] = {node["ip"]: node for node in nodes}
        seen["dashboard"] = {"head": reaches(1, "127.0.0.1", 8265),
                             "worker": reaches(2, HEAD, 8265),
                             "here": _open(HEAD, 8265)}
        with admin_client() as api:
            _first_campaign(api)
            seen["metrics"] = _metrics()
            mark("metrics seen")
            _campaign(api, seen, mark)
        mark("campaign done")
    finally:
        seen |= cluster_down()
        mark("down")
        seen["left"] = {
            "namespaces": subprocess.run(["ip", "netns", "list"], capture_output=True,
                                         text=True).stdout,
            "links": [line for line in subprocess.run(
                ["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
                if "occ-" in line],
            "processes": subprocess.run(["pgrep", "-af", "occ-image|local-hosts"],
                                        capture_output=True, text=True).stdout,
            "addresses_unchanged": addresses() == before}
        print(f"timings (s from the start): {seen['timings']}")
    yield seen


def _open(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), 3).close()
        return True
    except OSError:
        return False


def _campaign(api: httpx.Client, seen: dict, mark) -> None:
    domain = f"cluster-{uuid.uuid4().hex[:8]}.example"
    api.post("/api/customers/generate?wait=true", json={
        "count": RECIPIENTS, "domain": domain, "tag": domain}).raise_for_status()
    created = api.post("/api/campaigns", json={
        "name": domain, "subject": "Hi {{ first_name }}", "body_text": "Plan {{ plan }}",
        "audience": {"tag": domain}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    # Paced, so the loss comes mid-campaign: about 35 s of sending.
    api.post(f"/api/campaigns/{campaign_id}/launch", json={
        "workers": WORKERS_W, "batch_size": 50, "rate_limit_per_s": 150}).raise_for_status()
    mark("campaign launched")
    short = {node["id"][:12]: ip for ip, node in seen["nodes"].items()}

    def on_both() -> dict | None:
        view = api.get(f"/api/campaigns/{campaign_id}").json()
        hosts = {short.get(node) for node, sent in view["by_node"].items() if sent}
        return view if set(WORKERS) <= hosts and view["counts"]["sent"] >= 1000 else None

    view = until(on_both, 120, "sends recorded on both worker hosts", every=1.0)
    seen["before_loss"] = {"by_host": {short.get(n, n): c for n, c in view["by_node"].items()},
                           "sent": view["counts"]["sent"]}

    # Lose the second worker host: every process in its namespace killed at once.
    pids = subprocess.run(["ip", "netns", "pids", "occ-host3"], capture_output=True,
                          text=True).stdout.split()
    subprocess.run(["kill", "-KILL", *pids], check=False)
    seen["lost_at_sent"] = api.get(f"/api/campaigns/{campaign_id}").json()["counts"]["sent"]
    mark("host lost")
    seen["chat_during_loss"] = _chat_turn()
    seen["dashboard_during_loss"] = api.get(f"/api/campaigns/{campaign_id}").status_code

    final = until(lambda: (v := api.get(f"/api/campaigns/{campaign_id}").json())[
        "status"] in ("completed", "failed") and v, 300, "the campaign's end", every=2.0)
    seen["final"] = {"status": final["status"], "counts": final["counts"],
                     "by_host": {short.get(n, n): c for n, c in final["by_node"].items()}}
    seen["sink"] = probe("sink", domain)


def _metrics() -> dict:
    """The Prometheus service-discovery file Ray keeps on the head, and the app's series
    each host answers on its own address (a host's node agent lists them; the head also
    lists the autoscaler's and the dashboard's own endpoints)."""
    raw = hosts("ssh", "1", "--", "cat /tmp/ray/prom_metrics_service_discovery.json").stdout
    targets = [t for group in json.loads(raw) for t in group["targets"]]

    def comms_series(target: str) -> set[str]:
        try:
            text = httpx.get(f"http://{target}/metrics", timeout=10).text
        except httpx.HTTPError:
            return set()
        return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                if line.startswith("ray_comms_")}

    # (each node's agent exports what its processes recorded every few seconds)
    by_host: dict[str, set[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        by_host = {t.split(":")[0]: set() for t in targets}
        for target in targets:
            by_host[target.split(":")[0]] |= comms_series(target)
        if all(by_host.values()):
            break
        time.sleep(2)
    return {"targets": targets, "series": {h: sorted(s) for h, s in by_host.items()}}


def _first_campaign(api: httpx.Client) -> None:
    """A small campaign first: every host has then recorded the app's metrics."""
    domain = f"first-{uuid.uuid4().hex[:8]}.example"
    api.post("/api/customers/generate?wait=true", json={
        "count": 300, "domain": domain, "tag": domain}).raise_for_status()
    created = api.post("/api/campaigns", json={
        "name": domain, "subject": "Hi", "body_text": "First", "audience": {"tag": domain}})
    created.raise_for_status()
    campaign_id = created.json()["id"]
    api.post(f"/api/campaigns/{campaign_id}/launch", json={
        "workers": 4, "batch_size": 25}).raise_for_status()
    until(lambda: api.get(f"/api/campaigns/{campaign_id}").json()["status"] == "completed",
          120, "the first campaign")


def _chat_turn() -> dict:
    with httpx.Client(base_url=API, timeout=30) as client:
        session = client.post("/chat/api/sessions", json={})
        session.raise_for_status()
        body = session.json()
        turn = client.post(f"/chat/api/sessions/{body['session_id']}/messages",
                           json={"text": "1"},
                           headers={"Authorization": f"Bearer {body['token']}"})
        return {"status": turn.status_code,
                "replies": len(turn.json().get("messages", [])) if turn.is_success else 0}


def test_ray_up_starts_the_head_and_both_workers_on_their_own_addresses(seen) -> None:
    nodes = seen["nodes"]
    assert set(nodes) == {HEAD, *WORKERS}
    assert "comms_head" in nodes[HEAD]["resources"]
    assert all(nodes[w]["resources"].get("comms_sender") == 32 for w in WORKERS)


def test_the_ray_dashboard_answers_on_the_head_only(seen) -> None:
    assert seen["dashboard"] == {"head": True, "worker": False, "here": False}


def test_sends_land_on_both_worker_hosts_never_the_head(seen) -> None:
    before = seen["before_loss"]["by_host"]
    assert set(before) == set(WORKERS), before
    assert all(before[w] > 0 for w in WORKERS)


def test_each_host_exports_the_apps_metrics_on_its_own_address(seen) -> None:
    series = seen["metrics"]["series"]
    assert set(series) == {HEAD, *WORKERS}, seen["metrics"]["targets"]
    assert "ray_comms_funnel_total" in series[HEAD], series  # (the campaign's runner)
    for worker in WORKERS:  # (its send tasks)
        assert "ray_comms_messages_total" in series[worker], series


def test_a_lost_worker_host_leaves_one_message_per_recipient(seen) -> None:
    final = seen["final"]
    assert final["status"] == "completed" and final["counts"]["sent"] == RECIPIENTS, final
    assert seen["lost_at_sent"] < RECIPIENTS  # (lost mid-campaign)
    sink = seen["sink"]
    assert len(sink["distinct"]) == RECIPIENTS and set(sink["distinct"].values()) == {1}
    # What the lost host had sent but not yet recorded goes again, same Message-ID: at
    # most each of its tasks' unrecorded outcomes (2 x 25) and open connections (8).
    repeats = sum(sink["all"].values()) - RECIPIENTS
    print(f"messages repeated after the host loss (same Message-ID): {repeats}")
    assert 0 <= repeats <= WORKERS_W * (2 * 25 + 8)
    assert WORKERS[0] in final["by_host"]


def test_the_chat_and_the_dashboard_answer_during_the_loss(seen) -> None:
    assert seen["chat_during_loss"]["status"] == 200
    assert seen["chat_during_loss"]["replies"] >= 1
    assert seen["dashboard_during_loss"] == 200


def test_ray_down_and_hosts_down_leave_nothing_behind(seen) -> None:
    assert seen["ray_down"] == 0
    assert seen["ray_left_on_head"] == "0"
    left = seen["left"]
    assert "occ-host" not in left["namespaces"] and left["links"] == []
    assert left["processes"] == "" and left["addresses_unchanged"]
