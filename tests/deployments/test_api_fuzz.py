"""Property-based API tests with Schemathesis against the running app's OpenAPI schemas.

Every operation of both applications (the dashboard API and the chat API), over the real
Serve proxy, with generated valid and invalid input: no answer is a 5xx, and every
answer matches the schema its operation declares (status, content type, body). A bounded
number of examples per operation keeps `make test` within budget.

Left out: `GET /api/live`, an endless event stream (its own test reads it). Generated
customer counts are capped so a fuzzed generation job stays small, and a fuzzed new
signing key is a sign-in key (a link key replaces the long-lived actors: its own test).
"""

from __future__ import annotations

import pytest
import requests
import requests.adapters
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from deployments.chatbot import chat_api
from deployments.dashboard import api
from tests.utils.stack import Stack

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 20
GENERATE_AT_MOST = 25  # customers per fuzzed generation job
# Fuzzing comes from its own loopback address, so the per-address abuse limits it runs
# into (unsubscribe links, session creation) hold back only its own requests.
FUZZ_ADDRESS = "127.0.0.31"
# Fuzzed webhook endpoints point at a closed port of the allow-listed loopback address
# (`egress_allow` in conftest), and go when the module ends.
FUZZ_HOOK_URL = "http://127.0.0.77:9/fuzz"


class _FromAddress(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (FUZZ_ADDRESS, 0)
        super().init_poolmanager(*args, **kwargs)


@pytest.fixture(scope="module")
def fuzz_session():
    with requests.Session() as session:
        session.mount("http://", _FromAddress())
        yield session


# The schemas are the apps' own (the proxy serves exactly these at /api/openapi.json and
# /chat/api/openapi.json; a test in test_api_schema.py reads them too), so the operations
# are known when pytest collects, and the calls go to the running app.
dashboard = schemathesis.openapi.from_dict(api.openapi()).exclude(method="GET",
                                                                  path="/api/live")
chat = schemathesis.openapi.from_dict(chat_api.openapi())
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def _small(case) -> None:
    body = case.body
    count = body.get("count") if isinstance(body, dict) else None
    # Numbers only (the API takes 110009.0 as a count too); bool is an int in Python.
    if (case.path == "/api/customers/generate" and isinstance(count, int | float)
            and not isinstance(count, bool) and count > GENERATE_AT_MOST):
        body["count"] = GENERATE_AT_MOST
    if (case.path == "/api/webhooks" and case.method == "POST" and isinstance(body, dict)
            and isinstance(body.get("url"), str)):
        body["url"] = FUZZ_HOOK_URL
    if (case.path == "/api/signing-keys" and case.method == "POST" and isinstance(body, dict)
            and body.get("purpose") == "links"):
        body["purpose"] = "sign-in"  # a link key replaces the actors; its own test does it


@pytest.fixture(scope="module", autouse=True)
def _forget_fuzzed_webhooks(stack: Stack):
    yield
    with stack.client() as client:
        for hook in client.get("/api/webhooks").json()["webhooks"]:
            if hook["url"] == FUZZ_HOOK_URL:
                client.delete(f"/api/webhooks/{hook['id']}")


@dashboard.parametrize()
@FUZZ
def test_the_dashboard_api_never_fails_and_answers_as_documented(case, stack: Stack,
                                                                fuzz_session) -> None:
    _small(case)
    case.call_and_validate(base_url=stack.base_url, headers=_admin(stack), checks=CHECKS,
                           session=fuzz_session, timeout=30)


@chat.parametrize()
@FUZZ
def test_the_chat_api_never_fails_and_answers_as_documented(case, stack: Stack,
                                                           fuzz_session) -> None:
    case.call_and_validate(base_url=f"{stack.base_url}/chat", headers=_admin(stack),
                           checks=CHECKS, session=fuzz_session, timeout=30)


def _admin(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


def test_the_fuzzed_schemas_are_the_ones_the_running_app_serves(stack: Stack) -> None:
    with stack.client(admin=False) as client:
        assert client.get("/api/openapi.json").json() == api.openapi()
        served = client.get("/chat/api/openapi.json").json()
        assert served.pop("servers") == [{"url": "/chat"}]  # Serve's route prefix
        assert served == chat_api.openapi()
