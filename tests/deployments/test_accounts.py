"""Operator accounts over the real app: sign-in, roles checked over the whole route
table, API keys, disabling, the audit log, and the bootstrap admin token."""

from __future__ import annotations

import uuid

import httpx
import pytest

from deployments.dashboard import api as dashboard_api
from tests.deployments.test_campaigns import mongo
from tests.utils.stack import Stack

PASSWORD = "correct horse battery"
PUBLIC_WRITES = {("POST", "/api/auth/token")}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def users(stack: Stack) -> dict[str, str]:
    """An admin, an operator and a viewer made with the bootstrap token; their tokens."""
    run = uuid.uuid4().hex[:6]
    tokens = {}
    with stack.client() as admin_token:
        for role in ("admin", "operator", "viewer"):
            name = f"{role}-{run}"
            made = admin_token.post("/api/users", json={"username": name, "password": PASSWORD,
                                                        "role": role})
            assert made.status_code == 201, made.text
            signed = admin_token.post("/api/auth/token",
                                      json={"username": name, "password": PASSWORD})
            assert signed.status_code == 200 and signed.json()["role"] == role
            tokens[role] = signed.json()["token"]
            tokens[f"{role}-name"] = name
    return tokens


def _write_routes() -> list[tuple[str, str]]:
    """Every route of the admin API that changes something, from the app's own route
    table (its OpenAPI paths: pages and static files are reads)."""
    found = []
    for path, operations in dashboard_api.openapi()["paths"].items():
        for method in (m.upper() for m in operations):
            if (method not in ("GET", "HEAD") and path.startswith("/api")
                    and (method, path) not in PUBLIC_WRITES):
                found.append((method, path.replace("{", "").replace("}", "")))
    return sorted(found)


def test_a_viewer_is_refused_every_write_route_and_reads(stack: Stack, users) -> None:
    routes = _write_routes()
    assert {("POST", "/api/campaigns"), ("POST", "/api/customers/import"),  # the whole
            ("PATCH", "/api/users/username"), ("POST", "/api/reports/reconcile"),  # table
            ("POST", "/api/signup/poll")} <= set(routes)
    with stack.client(admin=False) as client:
        for method, path in routes:
            reply = client.request(method, path, headers=_bearer(users["viewer"]), json={})
            assert reply.status_code == 403, (method, path, reply.status_code, reply.text)
            assert "needs" in reply.json()["detail"]
        assert client.get("/api/campaigns", headers=_bearer(users["viewer"])).status_code == 200
        assert client.get("/api/users", headers=_bearer(users["viewer"])).status_code == 403


def test_an_operator_runs_campaigns_but_manages_no_users(stack: Stack, users) -> None:
    operator = _bearer(users["operator"])
    with stack.client(admin=False) as client:
        made = client.post("/api/campaigns", headers=operator, json={
            "name": "by an operator", "subject": "Hi", "body_text": "Hello {{ name }}",
            "audience": {"tag": "nobody-has-this-tag"}})
        assert made.status_code == 201, made.text
        assert client.post(f"/api/campaigns/{made.json()['id']}/cancel",
                           headers=operator).status_code == 200
        assert client.get("/api/users", headers=operator).status_code == 403
        assert client.post("/api/reports/reconcile", headers=operator).status_code == 403
        me = client.get("/api/auth/me", headers=operator).json()
        assert me == {"username": users["operator-name"], "role": "operator", "via": "password"}

        log = client.get("/api/audit", headers=_bearer(users["viewer"])).json()["entries"]
        mine = [e for e in log if e["who"] == users["operator-name"]]
        assert [e["action"] for e in mine[:2]] == ["campaign.cancel", "campaign.create"]
        assert mine[0]["target"] == made.json()["id"] and mine[0]["role"] == "operator"


def test_wrong_passwords_unknown_users_and_forged_tokens_are_refused(stack: Stack,
                                                                   users) -> None:
    with stack.client(admin=False) as client:
        for body in ({"username": users["admin-name"], "password": "wrong password!"},
                     {"username": "nobody-at-all", "password": PASSWORD}):
            reply = client.post("/api/auth/token", json=body)
            assert reply.status_code == 401 and "wrong user name or password" in reply.text
        forged = users["admin"][:-4] + ("AAAA" if users["admin"][-4:] != "AAAA" else "BBBB")
        assert client.get("/api/auth/me", headers=_bearer(forged)).status_code == 401
    stored = mongo(stack).users.find_one({"_id": users["admin-name"]})
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in str(stored)


def test_api_keys_act_as_their_user_until_revoked_or_disabled(stack: Stack, users) -> None:
    admin = _bearer(users["admin"])
    name = users["operator-name"]
    with stack.client(admin=False) as client:
        made = client.post(f"/api/users/{name}/api-keys", headers=admin,
                           json={"label": "nightly import"})
        assert made.status_code == 201
        key = made.json()["key"]
        assert key.startswith("ock_") and key not in str(mongo(stack).users.find_one(
            {"_id": name}))
        me = client.get("/api/auth/me", headers=_bearer(key)).json()
        assert me == {"username": name, "role": "operator", "via": "api-key"}
        assert client.get("/api/users", headers=_bearer(key)).status_code == 403

        listed = client.get("/api/users", headers=admin).json()["users"]
        shown = next(u for u in listed if u["username"] == name)
        assert [k["label"] for k in shown["api_keys"]] == ["nightly import"]
        assert "hash" not in str(shown) and "password" not in str(shown)

        assert client.delete(f"/api/users/{name}/api-keys/{made.json()['id']}",
                             headers=admin).status_code == 204
        assert client.get("/api/auth/me", headers=_bearer(key)).status_code == 401

        second = client.post(f"/api/users/{name}/api-keys", headers=admin).json()["key"]
        assert client.patch(f"/api/users/{name}", headers=admin,
                            json={"disabled": True}).status_code == 200
        assert client.get("/api/auth/me", headers=_bearer(second)).status_code == 401
        assert client.post("/api/auth/token", json={"username": name, "password": PASSWORD}
                           ).status_code == 401
        assert client.patch(f"/api/users/{name}", headers=admin,
                            json={"disabled": False}).status_code == 200
    actions = [e["action"] for e in mongo(stack).audit.find({"target": name})]
    assert {"user.create", "api_key.create", "api_key.revoke", "user.change"} <= set(actions)


def test_bad_account_input_is_a_4xx_naming_the_field(stack: Stack) -> None:
    with stack.client() as client:
        short = client.post("/api/users", json={"username": "ok-name", "password": "short",
                                                 "role": "viewer"})
        assert short.status_code == 422 and short.json()["detail"][0]["field"] == "body.password"
        role = client.post("/api/users", json={"username": "ok-name", "password": PASSWORD,
                                                "role": "root"})
        assert role.status_code == 422 and role.json()["detail"][0]["field"] == "body.role"
        reserved = client.post("/api/users", json={"username": "admin-token",
                                                    "password": PASSWORD, "role": "viewer"})
        assert reserved.status_code == 409
        assert reserved.json()["detail"][0]["field"] == "body.username"


def test_sign_in_attempts_are_limited_per_address(stack: Stack) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.41")
    with httpx.Client(base_url=stack.base_url, transport=transport, timeout=30) as client:
        limit = stack.settings.limit_sign_in_per_ip
        codes: list[int] = []
        while 429 not in codes and len(codes) < 3 * limit:  # refills: one every 3 s
            codes.append(client.post("/api/auth/token", json={
                "username": "x-guess", "password": "guess"}).status_code)
    assert codes[:limit] == [401] * limit and codes[-1] == 429


async def test_the_admin_token_can_be_disabled_once_an_admin_user_exists(db) -> None:
    """Ray-free: the same authentication the routes use, on a context of its own."""
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials

    from app.access import accounts
    from app.core.config import load_settings
    from app.core.endpoints import Endpoints
    from app.core.runtime import Runtime
    from app.core.signing_keys import KeyRing
    from deployments.context import AppContext
    from deployments.deps import authenticate
    from deployments.limits import PublicLimits

    token = "an-admin-token-long-enough-to-be-accepted-0123"
    settings = load_settings(admin_token=token, admin_token_enabled=False)
    context = AppContext(Runtime(settings, Endpoints("mongodb://unused", "127.0.0.1", 25),
                                 KeyRing.of("k")), db, token, None, PublicLimits(settings))
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
    # No admin user yet: the token still opens (no lock-out).
    assert await authenticate(context, bearer) == accounts.BOOTSTRAP
    await accounts.create_user(db, "root", "a-long-enough-password", accounts.Role.ADMIN,
                               accounts.BOOTSTRAP)
    try:
        await authenticate(context, bearer)
        raise AssertionError("the disabled admin token still signed in")
    except HTTPException as refused:
        assert refused.status_code == 401 and "disabled" in refused.detail
    await accounts.update_user(db, "root", disabled=True)  # no enabled admin left
    assert await authenticate(context, bearer) == accounts.BOOTSTRAP
