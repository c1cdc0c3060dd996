"""Signing keys: stored in the `signing_keys` collection, one set per purpose (customer
links; operator sign-in tokens), each key with an id that every token it signs carries.

The newest key of a purpose that is not retired signs; every key of that purpose that
is not retired verifies, so adding a key (`rotate`) leaves the links already delivered
working, and retiring one (`retire`) ends exactly the tokens it signed. No key is derived
from the admin token, so rotating the admin token touches no link.

A database that held customers before keys were stored gets its old link key (derived
from the admin token) as kid `legacy`, verify-only: the links in mailboxes keep working
until an operator retires it. Tokens without a kid are legacy tokens.

A `KeyRing` is a frozen snapshot, safe to pickle into actors and tasks; its repr shows
no secret. Processes that verify reload it (`deployments.context`), processes that sign
are replaced by the launcher when it changes (`actors.registry.get_current`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

LINKS, SIGN_IN = "links", "sign-in"  # unsubscribe/confirm/tracking links; operator tokens
PURPOSES = (LINKS, SIGN_IN)
LEGACY = "legacy"  # the kid of a link key derived from the admin token, before keys were stored


class KeyProblem(ValueError):
    """A key change that cannot be made; names the field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class SigningKey:
    kid: str
    purpose: str
    secret: str = field(repr=False)
    created_at: datetime
    retired_at: datetime | None = None
    signs: bool = True  # False for the legacy key: it only verifies

    def view(self, current: bool) -> dict[str, Any]:
        """What an operator may see of it: never the secret."""
        return {"kid": self.kid, "purpose": self.purpose, "current": current,
                "created_at": self.created_at.isoformat(),
                "retired_at": self.retired_at.isoformat() if self.retired_at else None,
                "verify_only": not self.signs}


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...] = ()

    @classmethod
    def of(cls, secret: str, kid: str = "k1") -> KeyRing:
        """One key per purpose with this secret: for tools and tests with no database."""
        made = datetime.now(UTC)
        return cls(tuple(SigningKey(kid, purpose, secret, made) for purpose in PURPOSES))

    def signing(self, purpose: str) -> SigningKey:
        """The key that signs for `purpose` now: its newest active key."""
        active = [k for k in self.keys if k.purpose == purpose and k.signs
                  and k.retired_at is None]
        if not active:
            raise LookupError(f"no active {purpose} signing key (the launcher makes one)")
        return max(active, key=lambda k: k.created_at)

    def verifying(self, purpose: str, kid: str) -> SigningKey | None:
        """The key `kid` of `purpose` if it may still verify, else None."""
        for key in self.keys:
            if key.kid == kid and key.purpose == purpose and key.retired_at is None:
                return key
        return None

    def knows(self, purpose: str, kid: str) -> bool:
        """Whether this snapshot has heard of the key at all (active or retired)."""
        return any(k.kid == kid and k.purpose == purpose for k in self.keys)

    def views(self) -> list[dict[str, Any]]:
        current = {p: self.signing(p).kid for p in PURPOSES
                   if any(k.purpose == p and k.signs and not k.retired_at for k in self.keys)}
        return [k.view(current.get(k.purpose) == k.kid)
                for k in sorted(self.keys, key=lambda k: (k.purpose, k.created_at))]

    def fingerprint(self, purpose: str) -> str:
        """Changes when a key of `purpose` is added or retired (the launcher compares
        the link keys' of the actors that sign links)."""
        text = "\n".join(f"{k.kid}/{k.secret}/{k.retired_at}" for k in
                         sorted(self.keys, key=lambda k: k.kid) if k.purpose == purpose)
        return hashlib.sha256(text.encode()).hexdigest()


def legacy_link_secret(admin_token: str) -> str:
    """The link key of releases before stored keys: derived from the admin token."""
    return hmac.new(admin_token.encode(), b"operator-comms/unsubscribe-key",
                    hashlib.sha256).hexdigest()


def _fields(purpose: str, kid: str, secret: str, signs: bool = True) -> dict[str, Any]:
    return {"purpose": purpose, "kid": kid, "secret": secret, "retired_at": None,
            "signs": signs}


def _key(doc: dict[str, Any]) -> SigningKey:
    def aware(at: datetime | None) -> datetime | None:
        return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at

    created = aware(doc["created_at"])
    assert created is not None
    return SigningKey(doc["kid"], doc["purpose"], doc["secret"], created,
                      aware(doc.get("retired_at")), doc.get("signs", True))


async def load(db: AsyncDatabase) -> KeyRing:
    """Every stored key (one command)."""
    return KeyRing(tuple(_key(doc) for doc in await db.signing_keys.find({}).to_list()))


async def ensure(db: AsyncDatabase, admin_token: str) -> KeyRing:
    """The stored keys, after making what is missing: a first key per purpose, and the
    legacy link key when customers were stored before keys were (idempotent; two
    launchers racing agree, since a key's id is its `_id`)."""
    ring = await load(db)
    for purpose in PURPOSES:
        if any(k.purpose == purpose and k.signs and not k.retired_at for k in ring.keys):
            continue
        first = not any(k.purpose == purpose for k in ring.keys)
        if purpose == LINKS and first and await db.customers.find_one({}, {"_id": 1}):
            await _insert(db, _fields(LINKS, LEGACY, legacy_link_secret(admin_token),
                                      signs=False))
        await _insert(db, _fields(purpose, "initial" if first else secrets.token_hex(6),
                                  secrets.token_urlsafe(32)))
    return await load(db)


async def _insert(db: AsyncDatabase, fields: dict[str, Any]) -> SigningKey:
    """Store a key made now by the database's clock (which orders the keys, so every
    process agrees which is newest); one already stored under its id stays as it is."""
    key_id = f"{fields['purpose']}/{fields['kid']}"
    with contextlib.suppress(DuplicateKeyError):  # another launcher made it first
        await db.signing_keys.update_one(
            {"_id": key_id},
            [{"$set": {"created_at": {"$ifNull": ["$created_at", "$$NOW"]},
                       **{name: {"$ifNull": [f"${name}", {"$literal": value}]}
                          for name, value in fields.items()}}}],
            upsert=True)
    stored = await db.signing_keys.find_one({"_id": key_id})
    assert stored is not None  # just written
    return _key(stored)


async def rotate(db: AsyncDatabase, purpose: str) -> SigningKey:
    """A new key that signs from now on; the older ones keep verifying."""
    if purpose not in PURPOSES:
        raise KeyProblem("body.purpose", f"no such purpose {purpose!r}: {', '.join(PURPOSES)}")
    return await _insert(db, _fields(purpose, secrets.token_hex(6), secrets.token_urlsafe(32)))


async def retire(db: AsyncDatabase, purpose: str, kid: str) -> SigningKey | None:
    """Stop a key verifying (the tokens it signed stop working); None when there is no
    such key. The signing key cannot be retired: rotate first."""
    ring = await load(db)
    if not ring.knows(purpose, kid):
        return None
    if ring.signing(purpose).kid == kid:
        raise KeyProblem("path.kid", f"{kid!r} signs {purpose} now: rotate before retiring it")
    await db.signing_keys.update_one({"_id": f"{purpose}/{kid}", "retired_at": None},
                                     {"$set": {"retired_at": datetime.now(UTC)}})
    found = await db.signing_keys.find_one({"_id": f"{purpose}/{kid}"})
    return _key(found) if found else None
