"""The runtime: settings, resolved endpoints and the signing keys, in one frozen object,
with the database accessor and the signed-link builders.

A replica builds it at start-up (`deployments.context`) and hands it to the actors and
runners it starts; a runner hands it to its send tasks inside each `BatchJob`. Frozen
and picklable, so Ray ships it as is. Its repr hides the keys (and `Endpoints` hides the
database URI), so logging it is safe. Its `fingerprint` changes with any setting,
endpoint or link key, so the launcher can tell a long-lived actor that runs with an older one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from app.core.config import Settings
from app.core.db import database
from app.core.endpoints import Endpoints
from app.core.signing_keys import LINKS, KeyRing, SigningKey
from app.core.tokens import (
    CONFIRM,
    customer_unsubscribe_url,
    signup_confirm_url,
    verify_customer_token,
)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    endpoints: Endpoints
    keys: KeyRing = field(repr=False)  # stored signing keys; never the admin token

    @classmethod
    def build(cls, settings: Settings, endpoints: Endpoints, keys: KeyRing) -> Runtime:
        return cls(settings, endpoints, keys)

    def database(self) -> AsyncDatabase:
        """This process's database (one pooled client per process and event loop)."""
        return database(self.endpoints.mongodb_uri, self.settings.mongodb_db)

    @property
    def link_key(self) -> SigningKey:
        """The key that signs customer links now."""
        return self.keys.signing(LINKS)

    def unsubscribe_url(self, customer_id: str) -> str:
        return customer_unsubscribe_url(self.settings.public_url, customer_id, self.link_key)

    def customer_from_token(self, token: str) -> str | None:
        """The customer an unsubscribe link was signed for; None if forged or garbled."""
        return verify_customer_token(token, self.keys)

    def confirm_url(self, customer_id: str) -> str:
        return signup_confirm_url(self.settings.public_url, customer_id, self.link_key)

    def customer_confirming(self, token: str) -> str | None:
        """The customer a signup confirmation link was signed for; None if forged."""
        return verify_customer_token(token, self.keys, CONFIRM)

    def fingerprint(self) -> str:
        """A digest of every setting (secrets included), endpoint and link key: equal for
        two runtimes whose actors would behave alike (actors sign links, never sign-in
        tokens). Shows nothing of what it digests."""
        def plain(value: Any) -> Any:
            return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

        text = json.dumps([self.settings.model_dump(), asdict(self.endpoints)],
                          default=plain, sort_keys=True)
        return hashlib.sha256(f"{text}\n{self.keys.fingerprint(LINKS)}".encode()).hexdigest()
