"""The OpenAPI schemas document every reply: each operation's success response names
a schema (a model, or a string for pages, downloads and event streams), so clients can
generate types from `/api/openapi.json`. The replies themselves are checked against
these models by FastAPI on every call the other API tests make."""

from __future__ import annotations

import pytest

from deployments.chatbot import chat_api
from deployments.dashboard import api


def _operations(spec: dict):
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield f"{method.upper()} {path}", operation


@pytest.mark.parametrize("app", [api, chat_api], ids=["dashboard", "chat"])
def test_every_operation_declares_the_schema_of_its_reply(app) -> None:
    spec = app.openapi()
    models = spec["components"]["schemas"]
    undocumented = []
    for name, operation in _operations(spec):
        # A redirect's success is its 3xx (a tracked link's 302).
        success = [code for code in operation["responses"] if code[0] in "23"]
        assert success, f"{name}: no success response"
        for media, body in operation["responses"][success[0]].get("content", {}).items():
            schema = body.get("schema") or {}
            ref = schema.get("$ref")
            if ref:
                model = models[ref.rsplit("/", 1)[1]]
                if not model.get("properties"):
                    undocumented.append(f"{name} {media}: empty model")
            elif not (schema.get("type") == "string" or schema.get("anyOf")):
                undocumented.append(f"{name} {media}: {schema}")
    assert not undocumented, undocumented


def test_the_campaign_reply_documents_its_counts_and_progress() -> None:
    campaign = api.openapi()["components"]["schemas"]["CampaignView"]
    assert {"status", "counts", "progress", "eta_s", "by_worker", "launch"} <= set(
        campaign["properties"])
    assert "settings" not in campaign["properties"]
