"""Operator accounts: users with a role, Argon2 password hashes, short-lived signed
tokens (JWT, HS256) for sign-in, and API keys for scripts.

Roles rank `viewer` < `operator` < `admin`: a viewer reads everything and changes
nothing; an operator also runs campaigns, customers and chat handoffs; an admin also
manages users and repairs reports. The generated admin token stays as the bootstrap
identity (an admin, named `admin-token`) that creates the first admin user.

A sign-in token carries the user's name and role, names the stored sign-in key that
signed it (`app.core.signing_keys`) and lasts TOKEN_TTL_S, so a role
change or a disabled account takes effect at the next sign-in. An API key is
`ock_<id>_<secret>`; only a SHA-256 of the secret is stored, and every use reads the
key and its user, so revoking a key or disabling its user takes effect at once.
Password hashing runs in a thread: Argon2 is deliberately slow and would block the
replica's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.core.signing_keys import SIGN_IN, KeyRing, SigningKey

TOKEN_TTL_S = 3600
KEY_PREFIX = "ock_"
_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so a wrong user name takes
# as long as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("no such user, no such password")


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def allows(role: str, needed: Role) -> bool:
    return role in RANK and RANK[Role(role)] >= RANK[needed]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by password token or API key) or the bootstrap token."""

    name: str
    role: Role
    via: str  # "password", "api-key" or "admin-token"


BOOTSTRAP = Principal("admin-token", Role.ADMIN, "admin-token")


class AccountProblem(ValueError):
    """A request about accounts that cannot be done; names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def now() -> datetime:
    return datetime.now(UTC)


def user_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"username": doc["_id"], "role": doc["role"], "disabled": doc.get("disabled", False),
            "created_at": doc["created_at"].isoformat(), "created_by": doc.get("created_by"),
            "api_keys": [{"id": k["id"], "label": k.get("label"),
                          "created_at": k["created_at"].isoformat()}
                         for k in doc.get("api_keys", [])]}


async def create_user(db: AsyncDatabase, username: str, password: str, role: Role,
                      by: Principal) -> dict[str, Any]:
    if username == BOOTSTRAP.name:  # the audit log would not tell them apart
        raise AccountProblem("body.username", f"{username!r} is the admin token's name")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    doc = {"_id": username, "role": role, "password_hash": password_hash, "disabled": False,
           "created_at": now(), "created_by": by.name, "api_keys": []}
    try:
        await db.users.insert_one(doc)
    except DuplicateKeyError:
        raise AccountProblem("body.username", f"{username!r} is taken") from None
    return doc


async def update_user(db: AsyncDatabase, username: str, *, role: Role | None = None,
                      password: str | None = None, disabled: bool | None = None
                      ) -> dict[str, Any] | None:
    changes: dict[str, Any] = {}
    if role is not None:
        changes["role"] = role
    if disabled is not None:
        changes["disabled"] = disabled
    if password is not None:
        changes["password_hash"] = await asyncio.to_thread(_hasher.hash, password)
    if changes:
        await db.users.update_one({"_id": username}, {"$set": changes})
    return await db.users.find_one({"_id": username})


async def an_admin_exists(db: AsyncDatabase) -> bool:
    """Whether an enabled admin user exists (who can sign in without the admin token)."""
    return await db.users.count_documents({"role": Role.ADMIN, "disabled": False},
                                          limit=1) == 1


async def get_user(db: AsyncDatabase, username: str) -> dict[str, Any] | None:
    return await db.users.find_one({"_id": username})


async def list_users(db: AsyncDatabase, limit: int = 500) -> list[dict[str, Any]]:
    return await db.users.find({}, {"password_hash": 0}).sort("_id", 1).limit(limit).to_list()


async def check_password(db: AsyncDatabase, username: str, password: str
                         ) -> Principal | None:
    doc = await db.users.find_one({"_id": username})
    stored = doc["password_hash"] if doc else _DUMMY_HASH
    try:
        await asyncio.to_thread(_hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if doc is None or doc.get("disabled"):
        return None
    return Principal(doc["_id"], Role(doc["role"]), "password")


def issue_token(principal: Principal, key: SigningKey, at: datetime | None = None
                ) -> tuple[str, datetime]:
    """A sign-in token signed with `key` (the current sign-in key), naming it by `kid`."""
    issued = at or now()
    expires = issued + timedelta(seconds=TOKEN_TTL_S)
    token = jwt.encode({"sub": principal.name, "role": principal.role, "iat": issued,
                        "exp": expires}, key.secret, algorithm="HS256",
                       headers={"kid": key.kid})
    return token, expires


def token_kid(token: str) -> str | None:
    """The id of the key a sign-in token says signed it (unverified), or None."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) else None


def read_token(token: str, keys: KeyRing) -> Principal | None:
    """The principal a sign-in token names; None if it is forged, garbled, expired, or
    signed by a key that is retired or unknown."""
    kid = token_kid(token)
    key = keys.verifying(SIGN_IN, kid) if kid is not None else None
    if key is None:
        return None
    try:
        claims = jwt.decode(token, key.secret, algorithms=["HS256"],
                            options={"require": ["exp"]})
        return Principal(str(claims["sub"]), Role(claims["role"]), "password")
    except (jwt.PyJWTError, KeyError, ValueError):
        return None


def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(db: AsyncDatabase, username: str, label: str | None
                         ) -> tuple[str, dict[str, Any]] | None:
    """(the key, shown once; its record), or None when there is no such user."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
    record = {"id": key_id, "label": label, "hash": _key_hash(secret), "created_at": now()}
    done = await db.users.update_one({"_id": username}, {"$push": {"api_keys": record}})
    if not done.matched_count:
        return None
    return f"{KEY_PREFIX}{key_id}_{secret}", record


async def revoke_api_key(db: AsyncDatabase, username: str, key_id: str) -> bool:
    done = await db.users.update_one({"_id": username},
                                     {"$pull": {"api_keys": {"id": key_id}}})
    return bool(done.modified_count)


async def check_api_key(db: AsyncDatabase, key: str) -> Principal | None:
    key_id, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    if not key_id or not secret:
        return None
    doc = await db.users.find_one({"api_keys.id": key_id})
    if doc is None or doc.get("disabled"):
        return None
    for record in doc.get("api_keys", []):
        if record["id"] == key_id and hmac.compare_digest(record["hash"].encode(),
                                                          _key_hash(secret).encode()):
            return Principal(doc["_id"], Role(doc["role"]), "api-key")
    return None
