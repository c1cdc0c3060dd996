"""Shared fixtures: one Ray, one set of embedded services and one Serve app per session.

The stack starts through the launcher, as `make run` does, with 4 logical CPUs on this
2-core machine: replicas and send tasks are I/O-bound and ask for fractions of a CPU.
Tests that share the app keep apart by using their own mail domains. A throw-away
Dovecot (Debian's dovecot-imapd) serves the signup mailbox, so the app runs with its
signup watcher as in production.

Domain tests that need only a database use `db` (or `mongodb_uri`) instead: the
embedded MongoDB-wire server started by itself, no Ray, a fresh database per test.
Markers say what a test needs: `ray`, `browser`, `slow` (see `pyproject.toml`).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo.errors import AutoReconnect

from app.core.config import load_settings
from embedded.processes import free_port
from tests.utils.dovecot import Dovecot
from tests.utils.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Say what each test needs: `ray` for those on the shared stack, `browser` for the
    pages. `make check` runs the rest (`-m "not ray and not browser and not slow"`)."""
    for item in items:
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.browser)
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


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


@pytest.fixture
def open_relay():
    """An SMTP relay on a free loopback port that takes any message: (its handler, port)."""
    from aiosmtpd.controller import Controller

    from embedded.smtp_sink import SinkHandler

    handler = SinkHandler(None)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from deployments.launcher import launched

    imap = Dovecot().start()
    port = free_port()
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
        send_warm_workers=6,  # more than the CPUs: Ray is told to keep them
        egress_allow=["127.0.0.77"],  # the tests' webhook receivers; 127.0.0.1 stays refused
    )
    try:
        with launched(settings, num_cpus=4, chatbot_replicas=2) as app:
            yield Stack(settings=settings, base_url=app.base_url, token=app.token,
                        services=app.services, imap=imap)
    finally:
        imap.stop()


@pytest.fixture
def api(stack: Stack):
    with stack.client() as client:
        yield client
