"""The per-process MongoDB client: how it watches the servers, and how a URI overrides it."""

from __future__ import annotations

import asyncio

from app.core.db import MONITORING, close_clients, mongo_client, monitoring_options


def test_a_plain_uri_gets_polling_monitoring_every_30_s() -> None:
    assert monitoring_options("mongodb://db.example:27017/") == MONITORING
    assert MONITORING == {"serverMonitoringMode": "poll", "heartbeatFrequencyMS": 30_000}


def test_options_the_uri_sets_are_left_to_it_whatever_their_case() -> None:
    uri = "mongodb+srv://app:pw@cluster0.example.net/db?retryWrites=true&servermonitoringmode=stream"
    assert monitoring_options(uri) == {"heartbeatFrequencyMS": 30_000}
    both = "mongodb://a:1,b:2/?replicaSet=rs&heartbeatFrequencyMS=10000&serverMonitoringMode=auto"
    assert monitoring_options(both) == {}


def test_the_client_a_process_gets_carries_them() -> None:
    async def options(uri: str) -> tuple[str, float]:
        client = mongo_client(uri)  # lazy: nothing connects until a command is sent
        try:
            return client.options.server_monitoring_mode, client.options.heartbeat_frequency
        finally:
            await close_clients()

    assert asyncio.run(options("mongodb://127.0.0.1:9/")) == ("poll", 30.0)
    assert asyncio.run(options("mongodb://127.0.0.1:9/?heartbeatFrequencyMS=5000")) == (
        "poll", 5.0)
