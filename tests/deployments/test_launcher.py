"""The launcher's division of work: it prepares the cluster once (indexes, migrations,
long-lived actors), and a replica that starts creates no actor."""

from __future__ import annotations

import ray
from pymongo import MongoClient
from ray import serve

from actors import registry
from app import migrations
from deployments.cluster import prepare_cluster
from deployments.dashboard import Dashboard
from tests.utils.stack import Stack
from tests.utils.waiting import wait_until


def test_the_launcher_recorded_every_migration_once(stack: Stack) -> None:
    uri = ray.get(stack.services.endpoints.remote()).mongodb_uri
    with MongoClient(uri) as client:
        recorded = [doc["_id"] for doc in client[stack.settings.mongodb_db].migrations.find()]
    assert sorted(recorded) == sorted(name for name, _ in migrations.MIGRATIONS)


def test_a_dashboard_replica_starts_no_actor_and_the_launcher_restores_them(
        stack: Stack) -> None:
    limiter = registry.find(registry.RATE_LIMITER)
    assert limiter is not None  # started by the launcher
    ray.kill(limiter, no_restart=True)
    wait_until(lambda: registry.find(registry.RATE_LIMITER) is None, what="the limiter gone")
    try:
        serve.run(Dashboard.options(num_replicas=1).bind(stack.settings),
                  name="replica-probe", route_prefix="/replica-probe")
        with stack.client() as client:  # the new replica answers, signed in
            assert client.get("/replica-probe/api/auth/me").status_code == 200
        assert registry.find(registry.RATE_LIMITER) is None  # it created none
    finally:
        serve.delete("replica-probe")
        prepare_cluster(stack.settings)  # idempotent: what is running stays, the rest starts
    assert registry.find(registry.RATE_LIMITER) is not None
    assert registry.find(registry.MARKETING) is not None
