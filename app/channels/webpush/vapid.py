"""The VAPID key pair (RFC 8292) that signs our pushes: made on first run and kept in
the database like the signing keys (`vapid_keys`, one document), so every replica,
task and actor signs with the same one and browsers' subscriptions (made for its
public key) stay valid across deploys. Rotating it means every customer subscribes
again: it is made once, never replaced by the code."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

KEY_ID = "vapid"


@dataclass(frozen=True)
class VapidKeys:
    private_pem: str = field(repr=False)
    public_key: str  # the uncompressed point, base64url: a browser's applicationServerKey


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_keys() -> VapidKeys:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    point = private.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
    return VapidKeys(pem, _b64url(point))


_loaded: dict[str, VapidKeys] = {}  # by database name


async def ensure(db: AsyncDatabase) -> VapidKeys:
    """The deployment's keys, made on the first call ever (whoever inserts first wins)."""
    if db.name in _loaded:
        return _loaded[db.name]
    found = await db.vapid_keys.find_one({"_id": KEY_ID})
    if found is None:
        made = new_keys()
        try:
            await db.vapid_keys.insert_one({"_id": KEY_ID, "private_pem": made.private_pem,
                                            "public_key": made.public_key,
                                            "created_at": datetime.now(UTC)})
            found = {"private_pem": made.private_pem, "public_key": made.public_key}
        except DuplicateKeyError:
            found = await db.vapid_keys.find_one({"_id": KEY_ID})
    assert found is not None
    _loaded[db.name] = VapidKeys(found["private_pem"], found["public_key"])
    return _loaded[db.name]
