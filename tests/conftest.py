"""Shared fixtures: one Ray, one set of embedded services and one Serve app per session.

Ray starts with 4 logical CPUs on this 2-core machine: replicas and send tasks are
I/O-bound and ask for fractions of a CPU (see DESIGN.md, "Testing on a 2-core machine").
Tests that share the app keep apart by using their own mail domains. A throw-away
Dovecot (Debian's dovecot-imapd) serves the signup mailbox, so the app runs with its
signup watcher as in production.

Domain tests that need only a database use `db` instead: the embedded MongoDB-wire
server started by itself, no Ray, a fresh database per test.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from pymongo.errors import AutoReconnect

from actors import registry
from app.core.config import load_settings
from app.core.tokens import admin_token
from embedded.processes import free_port
from tests.utils.dovecot import Dovecot
from tests.utils.stack import Stack


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory):
    """An embedded SecantusDB of its own, without Ray (for domain tests)."""
    from embedded.mongo import EmbeddedMongo

    server = EmbeddedMongo(tmp_path_factory.mktemp("domain-db") / "db")
    uri = server.start()
    yield uri
    server.stop()


@pytest.fixture
async def db(mongodb_uri: str):
    """A fresh database with the app's indexes, through PyMongo's async client."""
    from app.core.db import database, ensure_indexes

    handle = database(mongodb_uri, f"domain_{uuid.uuid4().hex[:8]}")
    # The session's client may have sat idle through minutes of Ray-heavy tests: a
    # monitor check that timed out meanwhile pauses its pool until the next check
    # (every 30 s, `app.core.db.MONITORING`). Wait for it rather than fail the test.
    for attempt in range(60):
        try:
            await ensure_indexes(handle)
            break
        except AutoReconnect:
            if attempt == 59:
                raise
            await asyncio.sleep(1)
    return handle


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    import ray
    from ray import serve

    from actors.local_services import local_services
    from app.campaigns.send_tasks import worker_pool_environment
    from deployments.main import AppArgs, deploy, start_serve
    from deployments.options import serve_environment

    port = free_port()
    imap = Dovecot().start()
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("data"),
        mongodb_db=f"comms_test_{uuid.uuid4().hex[:8]}",
        http_port=port,
        public_url=f"http://127.0.0.1:{port}",
        marketing_cooldown_s=1.0,
        send_lease_s=5.0,  # a dead task's claim comes back within seconds
        retry_backoff_s=0.2,
        webhook_retry_s=[0.2] * 6, webhook_disable_after_s=1.0,  # dead within seconds
        imap_host="127.0.0.1", imap_port=imap.port, imap_tls=False, imap_user=imap.user,
        imap_password=imap.password, imap_poll_s=1.0,
        send_warm_workers=6,  # more than the CPUs: Ray is told to keep them (below)
        egress_allow=["127.0.0.77"],  # the tests' webhook receivers; 127.0.0.1 stays refused
    )
    environment = {**worker_pool_environment(settings, num_cpus=4),  # as `make run` does
                   **serve_environment()}
    os.environ.update(environment)
    # Ray's default dashboard port: Ray moves to the next free one if it is taken. A port
    # picked beforehand can be taken by Ray's own processes before the dashboard binds it.
    ray.init(num_cpus=4, include_dashboard=True, namespace=registry.NAMESPACE,
             logging_level="WARNING")
    try:
        services = local_services(settings)
        ray.get(services.endpoints.remote())
        start_serve("127.0.0.1", port)
        deploy(AppArgs(chatbot_replicas=2), settings)
        yield Stack(settings=settings, base_url=f"http://127.0.0.1:{port}",
                    token=admin_token(settings), services=services, imap=imap)
    finally:
        serve.shutdown()
        ray.shutdown()
        imap.stop()
        for name in environment:
            os.environ.pop(name, None)


@pytest.fixture
def api(stack: Stack):
    with stack.client() as client:
        yield client
