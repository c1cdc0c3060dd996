"""The suppression list through the real proxy: a 550 5.1.1 at send time and an
unsubscribe put addresses on it, the next campaign skips them, an operator sees,
exports, adds and lifts entries (audited), and a lifted address is sent to again."""

from __future__ import annotations

import re

import httpx

from tests.deployments.test_campaigns import mongo, sink_counts
from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain


def _campaign(api: httpx.Client, tag: str) -> dict:
    campaign_id = create_campaign(api, tag)
    launch(api, campaign_id, workers=1, batch_size=10)
    return wait_for(api, campaign_id, finished)


def _listed(api: httpx.Client, channel: str | None = None) -> dict[str, dict]:
    params = {"channel": channel, "limit": 500} if channel else {"limit": 500}
    return {f"{e['channel']}:{e['address']}": e for e in
            api.get("/api/suppressions", params=params).json()["suppressions"]}


def test_hard_bounces_and_unsubscribes_are_skipped_until_lifted(stack: Stack, api) -> None:
    domain = unique_domain("suppress")
    ok, gone, leaving, manual = (f"ok@{domain}", f"gone+reject@{domain}",
                                 f"leaving@{domain}", f"manual@{domain}")
    import_audience(api, [ok, gone, leaving, manual], tag=domain)
    first = _campaign(api, domain)
    assert (first["counts"]["sent"], first["counts"]["failed"]) == (3, 1)
    listed = _listed(api, "email")
    assert listed[f"email:{gone}"]["reason"] == "hard-bounce"
    assert listed[f"email:{gone}"]["detail"]["campaign_id"] == first["id"]

    [mail] = api.get("/api/outbox", params={"to": leaving}).json()["messages"]
    raw = api.get(f"/api/outbox/{mail['key']}").content.decode()
    token = re.search(r"/unsubscribe/([A-Za-z0-9_=.-]+)", raw).group(1)
    with stack.client(admin=False) as public:
        assert public.post(f"/unsubscribe/{token}").status_code == 200
    assert mongo(stack).customers.find_one({"email": leaving})["unsubscribed"] is True
    assert _listed(api)[f"all:{leaving}"]["reason"] == "unsubscribe"

    added = api.post("/api/suppressions", json={"channel": "email", "address": manual.upper(),
                                                "note": "asked by phone"})
    assert added.status_code == 201 and added.json()["reason"] == "operator"
    assert api.post("/api/suppressions", json={"channel": "email",
                                               "address": manual}).status_code == 409
    bad = api.post("/api/suppressions", json={"channel": "sms", "address": "not a number"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "address"
    exported = api.get("/api/suppressions/export", params={"channel": "email"})
    assert exported.headers["content-type"].startswith("text/csv")
    assert f"email,{gone},hard-bounce," in exported.text
    assert f"email,{manual},operator," in exported.text

    second = _campaign(api, domain)  # (an unsubscribed customer is in no audience)
    assert (second["counts"]["total"], second["counts"]["sent"],
            second["counts"]["skipped"]) == (3, 1, 2)
    assert sink_counts(stack, domain) == {ok: 2, leaving: 1, manual: 1}

    lifted = api.delete(f"/api/suppressions/email/{manual}")
    assert lifted.status_code == 200 and lifted.json()["reason"] == "operator"
    assert api.delete(f"/api/suppressions/email/{manual}").status_code == 404
    actions = {(e["action"], e["target"]) for e in api.get("/api/audit").json()["entries"]}
    assert {("suppression.add", f"email:{manual}"),
            ("suppression.lift", f"email:{manual}")} <= actions
    third = _campaign(api, domain)
    assert (third["counts"]["sent"], third["counts"]["skipped"]) == (2, 1)
    assert sink_counts(stack, domain)[manual] == 2

    with stack.client(admin=False) as public:  # the list is the operator's only
        assert public.get("/api/suppressions").status_code == 401
