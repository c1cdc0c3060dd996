"""Signing keys through the real proxy: an admin adds a link key, campaign emails sent
after it carry it, links delivered before keep working until their key is retired; the
long-lived actors are replaced so they sign with the new key; sign-in tokens alike."""

from __future__ import annotations

import random
import re

import httpx
import ray

from actors import registry
from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain


def _unsubscribe_token(api: httpx.Client, domain: str, name: str) -> str:
    """Send a campaign to one new customer and return the token of their link."""
    address = f"{name}@{domain}"
    import_audience(api, [address], tag=f"{name}.{domain}")
    campaign_id = create_campaign(api, f"{name}.{domain}")
    launch(api, campaign_id, workers=1)
    wait_for(api, campaign_id, finished)
    [message] = api.get("/api/outbox", params={"to": address}).json()["messages"]
    raw = api.get(f"/api/outbox/{message['key']}").content.decode()
    return re.search(r"/unsubscribe/([A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[a-z0-9]+)",
                     raw).group(1)


def _current(api: httpx.Client, purpose: str) -> str:
    listed = api.get("/api/signing-keys")
    assert listed.status_code == 200 and "secret" not in listed.text
    [kid] = [k["kid"] for k in listed.json()["keys"] if k["purpose"] == purpose
             and k["current"]]
    return kid


def test_a_new_link_key_signs_new_mail_old_links_work_until_retired(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("keys")
    first_kid = _current(api, "links")
    before = _unsubscribe_token(api, domain, "ana")
    assert before.rsplit(".", 1)[1] == first_kid
    marketing = registry.find(registry.MARKETING)

    added = api.post("/api/signing-keys", json={"purpose": "links"})
    assert added.status_code == 201, added.text
    new_kid = added.json()["kid"]
    assert added.json()["current"] and "secret" not in added.text
    assert _current(api, "links") == new_kid != first_kid
    # The long-lived actors sign customer links too: they were replaced to get the key.
    assert registry.find(registry.MARKETING)._actor_id != marketing._actor_id
    after = _unsubscribe_token(api, domain, "bia")
    assert after.rsplit(".", 1)[1] == new_kid

    with stack.client(admin=False) as public:
        for token in (before, after):  # both verify: the page asks, changes nothing
            assert public.get(f"/unsubscribe/{token}").status_code == 200
        refused = api.post(f"/api/signing-keys/links/{new_kid}/retire")
        assert refused.status_code == 409 and "path.kid" in refused.text
        assert api.post("/api/signing-keys/links/nope/retire").status_code == 404
        retired = api.post(f"/api/signing-keys/links/{first_kid}/retire")
        assert retired.status_code == 200 and retired.json()["retired_at"]
        assert public.get(f"/unsubscribe/{before}").status_code == 404
        assert public.get(f"/unsubscribe/{after}").status_code == 200
    # The Telegram webhook's secret comes from the link key: it was set anew, so the
    # bot still hears its customers with the first key retired.
    chat_id = random.randrange(10**9, 2 * 10**9)
    ray.get(stack.services.telegram_say.remote(chat_id, "/start"))
    assert ray.get(stack.services.telegram_sent.remote(chat_id)), "the bot did not answer"
    actions = [e["action"] for e in api.get("/api/audit").json()["entries"][:5]]
    assert {"signing_key.rotate", "signing_key.retire"} <= set(actions)


def test_sign_in_tokens_outlive_a_rotation_and_end_with_their_key(
        stack: Stack, api: httpx.Client) -> None:
    username = f"keys-{unique_domain('u')[:13]}".replace(".", "")
    assert api.post("/api/users", json={"username": username, "password": "a-long-password-1",
                                        "role": "viewer"}).status_code == 201
    with stack.client(admin=False) as client:
        token = client.post("/api/auth/token", json={
            "username": username, "password": "a-long-password-1"}).json()["token"]
        signed = {"Authorization": f"Bearer {token}"}
        old_kid = _current(api, "sign-in")
        assert api.post("/api/signing-keys", json={"purpose": "sign-in"}).status_code == 201
        assert client.get("/api/auth/me", headers=signed).status_code == 200
        assert api.post(f"/api/signing-keys/sign-in/{old_kid}/retire").status_code == 200
        assert client.get("/api/auth/me", headers=signed).status_code == 401
        fresh = client.post("/api/auth/token", json={
            "username": username, "password": "a-long-password-1"}).json()["token"]
        assert client.get("/api/auth/me", headers={
            "Authorization": f"Bearer {fresh}"}).status_code == 200
        viewer = client.get("/api/signing-keys", headers={"Authorization": f"Bearer {fresh}"})
        assert viewer.status_code == 403  # admins only
        assert api.post("/api/signing-keys", json={"purpose": "all"}).status_code == 422
