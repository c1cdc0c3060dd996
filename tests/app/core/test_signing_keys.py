"""Stored signing keys against the real wire protocol (no Ray): made once, legacy kept
for databases from before, rotated without breaking old links, retired for good."""

from __future__ import annotations

import pytest

from app.access import accounts
from app.core import signing_keys
from app.core.signing_keys import LEGACY, LINKS, SIGN_IN, KeyProblem, legacy_link_secret
from app.core.tokens import sign_customer_id, verify_customer_token

ADMIN = "the-admin-token-of-this-install-0123"


async def test_a_new_database_gets_one_random_key_per_purpose_and_no_legacy(db) -> None:
    ring = await signing_keys.ensure(db, ADMIN)
    assert {k.purpose for k in ring.keys} == {LINKS, SIGN_IN} and len(ring.keys) == 2
    assert all(k.kid != LEGACY for k in ring.keys)
    assert legacy_link_secret(ADMIN) not in {k.secret for k in ring.keys}
    assert ring.signing(LINKS).secret != ring.signing(SIGN_IN).secret
    again = await signing_keys.ensure(db, ADMIN)  # a second deploy: the same keys
    assert again == ring


async def test_a_database_from_before_keeps_its_delivered_links_working(db) -> None:
    await db.customers.insert_one({"_id": "old-customer", "email": "old@x.example"})
    legacy = signing_keys.SigningKey(LEGACY, LINKS, legacy_link_secret(ADMIN),
                                     signing_keys.datetime.now(signing_keys.UTC))
    delivered = sign_customer_id("old-customer", legacy)  # a link from the old release
    ring = await signing_keys.ensure(db, ADMIN)
    assert verify_customer_token(delivered, ring) == "old-customer"
    assert ring.signing(LINKS).kid != LEGACY  # new links use a stored random key
    views = {v["kid"]: v for v in ring.views() if v["purpose"] == LINKS}
    assert views[LEGACY]["verify_only"] and not views[LEGACY]["current"]
    assert all("secret" not in v for v in ring.views())
    # The admin token can now change: the stored legacy key does not.
    assert verify_customer_token(delivered, await signing_keys.load(db)) == "old-customer"


async def test_rotating_keeps_old_links_and_retiring_ends_them(db) -> None:
    ring = await signing_keys.ensure(db, ADMIN)
    first = ring.signing(LINKS)
    old_link = sign_customer_id("cust-1", first)
    new = await signing_keys.rotate(db, LINKS)
    ring = await signing_keys.load(db)
    assert ring.signing(LINKS) == new and new.kid != first.kid
    new_link = sign_customer_id("cust-1", new)
    assert verify_customer_token(old_link, ring) == verify_customer_token(new_link, ring) \
        == "cust-1"
    with pytest.raises(KeyProblem) as refused:
        await signing_keys.retire(db, LINKS, new.kid)  # the one that signs now
    assert refused.value.field == "path.kid"
    assert await signing_keys.retire(db, LINKS, "no-such-kid") is None
    retired = await signing_keys.retire(db, LINKS, first.kid)
    assert retired is not None and retired.retired_at is not None
    ring = await signing_keys.load(db)
    assert verify_customer_token(old_link, ring) is None
    assert verify_customer_token(new_link, ring) == "cust-1"
    with pytest.raises(KeyProblem):
        await signing_keys.rotate(db, "everything")


async def test_sign_in_tokens_name_their_key_and_die_with_it(db) -> None:
    ring = await signing_keys.ensure(db, ADMIN)
    who = accounts.Principal("ana", accounts.Role.OPERATOR, "password")
    token, _ = accounts.issue_token(who, ring.signing(SIGN_IN))
    assert accounts.token_kid(token) == ring.signing(SIGN_IN).kid
    assert accounts.read_token(token, ring) == who
    first = ring.signing(SIGN_IN)
    await signing_keys.rotate(db, SIGN_IN)
    assert accounts.read_token(token, await signing_keys.load(db)) == who
    await signing_keys.retire(db, SIGN_IN, first.kid)
    assert accounts.read_token(token, await signing_keys.load(db)) is None
    # A link key does not sign in, even with the same kid.
    assert accounts.read_token(token, signing_keys.KeyRing(tuple(
        k for k in ring.keys if k.purpose == LINKS))) is None
    assert accounts.token_kid("not a token") is None
