"""The runtime: settings, resolved endpoints and the link-signing secret, in one frozen
object, with the database accessor and the signed-link builders.

A replica builds it once at start-up (`deployments.context`) and hands it to the actors
it starts; a runner hands it to its send tasks inside each `BatchJob`. Frozen and
picklable, so Ray ships it as is. Its repr hides the secret (and `Endpoints` hides the
database URI), so logging it is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase

from app.core.config import Settings
from app.core.db import database
from app.core.endpoints import Endpoints
from app.core.tokens import (
    CONFIRM,
    customer_unsubscribe_url,
    signup_confirm_url,
    unsubscribe_secret,
    verify_customer_token,
)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    endpoints: Endpoints
    signing_secret: str = field(repr=False)  # signs unsubscribe links; never the admin token

    @classmethod
    def build(cls, settings: Settings, endpoints: Endpoints, admin_token: str) -> Runtime:
        return cls(settings, endpoints, unsubscribe_secret(admin_token))

    def database(self) -> AsyncDatabase:
        """This process's database (one pooled client per process and event loop)."""
        return database(self.endpoints.mongodb_uri, self.settings.mongodb_db)

    def unsubscribe_url(self, customer_id: str) -> str:
        return customer_unsubscribe_url(self.settings.public_url, customer_id,
                                        self.signing_secret)

    def customer_from_token(self, token: str) -> str | None:
        """The customer an unsubscribe link was signed for; None if forged or garbled."""
        return verify_customer_token(token, self.signing_secret)

    def confirm_url(self, customer_id: str) -> str:
        return signup_confirm_url(self.settings.public_url, customer_id, self.signing_secret)

    def customer_confirming(self, token: str) -> str | None:
        """The customer a signup confirmation link was signed for; None if forged."""
        return verify_customer_token(token, self.signing_secret, CONFIRM)
