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


def test_a_redeploy_with_changed_settings_replaces_the_actors_made_with_them(
        stack: Stack) -> None:
    """A long-lived actor keeps the runtime it was made with; a deploy whose settings
    differ (here one marketing setting) replaces those made with a runtime, and leaves
    the others, and a deploy with the same settings changes nothing."""
    holders = (registry.MARKETING, registry.WEBHOOKS, registry.SMS_GATEWAY,
               registry.SIGNUP_WATCHER)

    def ids() -> dict[str, str]:
        return {name: registry.find(name)._actor_id.hex()
                for name in (*holders, registry.RATE_LIMITER)}

    prepare_cluster(stack.settings)  # as the stack's own runtime, whatever ran before
    before = ids()
    prepare_cluster(stack.settings)
    assert ids() == before  # nothing changed, nothing replaced
    changed = stack.settings.model_copy(update={"marketing_email_wait_s": 7.5})
    try:
        runtime = prepare_cluster(changed)
        after = ids()
        assert all(after[name] != before[name] for name in holders), (before, after)
        assert after[registry.RATE_LIMITER] == before[registry.RATE_LIMITER]
        marketing = registry.find(registry.MARKETING)
        assert ray.get(marketing.fingerprint.remote()) == runtime.fingerprint()
    finally:
        prepare_cluster(stack.settings)
    assert ray.get(registry.find(registry.MARKETING).fingerprint.remote()) != \
        runtime.fingerprint()
