"""Proof of identity in the chat: a one-time code sent to the address a session claims.

A public chat session may claim an email or a phone number, but typing an address
proves nothing. The session is linked to the customer only when the code we sent to
that address comes back (`verify`). Until then the bot answers generically: its
events carry no customer, so no plan changes, no offer is mailed to the address and
no revenue is counted.

Nothing here says whether an address belongs to a customer. Every claim stores the
same kind of pending check on the session, in the session's own insert: a stranger's
address gets a check whose code was never sent and cannot be guessed, so a wrong
code, a stranger's address and an expired check all answer alike. The code itself
is sent afterwards and only to a customer's address (`Claim.delivery`), by the
caller, off the request's path. A check allows MAX_ATTEMPTS tries (counted in the
database, so replicas share the count) and lasts CODE_TTL_S; an address is sent at
most CLAIMS_PER_HOUR codes an hour (claims past that get a check nobody can pass), so
guessing a customer's codes is bounded per address, not per session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from app.channels.email.composer import code_mail
from app.channels.email.mailer import SENT, build_message, message_id
from app.channels.registry import CHANNELS
from app.channels.routing import RoutedSender, routed_senders, send_moving
from app.chat.flow_engine import BotMessage, Flow, Turn
from app.core.runtime import Runtime

CODE_DIGITS = 6
CODE_TTL_S = 600.0
MAX_ATTEMPTS = 5
CLAIMS_PER_HOUR = 5  # codes one address may be sent in an hour


@dataclass(frozen=True)
class Delivery:
    """A code to send: by `channel` ("email" or "sms") to `address`."""

    channel: str
    address: str
    code: str


@dataclass(frozen=True)
class Claim:
    """What a new session stores (`pending`) and what the caller then sends (`delivery`,
    None when the address is nobody's: nothing is sent, and nothing says so)."""

    pending: dict[str, Any]
    delivery: Delivery | None


async def _count_claim(db: AsyncDatabase, address: str, at: datetime) -> bool:
    """Count a claim of this address in its hour; False past CLAIMS_PER_HOUR (no more
    codes to it this hour: no flood of codes to a customer, and at most
    CLAIMS_PER_HOUR x MAX_ATTEMPTS guesses at its codes an hour)."""
    hour = at.strftime("%Y%m%d%H")
    key = f"{hashlib.sha256(address.encode()).hexdigest()}:{hour}"
    counted = await db.chat_claims.find_one_and_update(
        {"_id": key}, {"$inc": {"n": 1}, "$setOnInsert": {"at": at}}, upsert=True,
        return_document=ReturnDocument.AFTER, projection={"n": 1})
    return counted is not None and counted["n"] <= CLAIMS_PER_HOUR


def _code_hash(session_id: str, code: str) -> str:
    return hashlib.sha256(f"{session_id}:{code}".encode()).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def normal_email(email: str | None) -> str | None:
    return email.strip().lower() if email and email.strip() else None


def normal_phone(phone: str | None) -> str | None:
    return phone.strip() if phone and phone.strip() else None


async def customer_by_address(db: AsyncDatabase, *, email: str | None,
                              phone: str | None) -> dict | None:
    """The customer with this email (else this phone), read over the unique indexes."""
    if email:
        found = await db.customers.find_one({"email": email}, {"_id": 1})
        if found:
            return found
    if phone:
        return await db.customers.find_one({"phone": phone}, {"_id": 1})
    return None


async def claim(db: AsyncDatabase, session_id: str, *, email: str | None,
                phone: str | None, now: datetime | None = None) -> Claim | None:
    """The pending check for a session that claims this address; None if it claims none."""
    email, phone = normal_email(email), normal_phone(phone)
    if not email and not phone:
        return None
    at = now or datetime.now(UTC)
    # Counted for every claim, a customer's or not, so the work done (and its time)
    # says nothing; past the bound the address gets a check nobody can pass.
    address = email or phone
    assert address is not None  # (one of them, checked above)
    within_bound = await _count_claim(db, address, at)
    customer = await customer_by_address(db, email=email, phone=phone)
    if not within_bound:
        customer = None
    code = new_code()
    pending = {"code_hash": _code_hash(session_id, code if customer else secrets.token_hex(16)),
               "customer_id": customer["_id"] if customer else None,
               "expires_at": at + timedelta(seconds=CODE_TTL_S), "attempts": 0}
    delivery = None
    if customer:
        delivery = Delivery("email", email, code) if email else Delivery("sms", address, code)
    return Claim(pending, delivery)


async def verify(db: AsyncDatabase, session_id: str, code: str,
                 now: datetime | None = None) -> str | None:
    """The customer this code proves for the session, now linked to it; None for a wrong
    or expired code, a used-up check or an address that is nobody's (all alike).

    One write for a try (the attempt is counted before the code is compared), one more
    when it links."""
    at = now or datetime.now(UTC)
    session = await db.chat_sessions.find_one_and_update(
        {"_id": session_id, "verification.attempts": {"$lt": MAX_ATTEMPTS},
         "verification.expires_at": {"$gt": at}},
        {"$inc": {"verification.attempts": 1}},
        projection={"verification": 1}, return_document=ReturnDocument.AFTER)
    if session is None:
        return None
    pending = session["verification"]
    if not hmac.compare_digest(pending["code_hash"], _code_hash(session_id, code)):
        return None
    customer_id = pending.get("customer_id")
    if customer_id is None:
        return None
    linked = await db.chat_sessions.update_one(
        {"_id": session_id, "verification.code_hash": pending["code_hash"]},
        {"$set": {"customer_id": customer_id, "verified_at": at},
         "$unset": {"verification": ""}})
    return customer_id if linked.modified_count else None


CONFIRMED = "Thank you: this conversation is now linked to your account."


def confirmation(flow: Flow, state: dict[str, Any] | None) -> Turn:
    """The bot's message once a session is proven: where it was, with the same options."""
    try:
        node = flow.node((state or {}).get("node") or "")
    except KeyError:
        return Turn(dict(state or {}), [BotMessage(CONFIRMED)], [])
    options = [o.label for o in node.options]
    return Turn(dict(state or {}), [BotMessage(CONFIRMED, options, node.id)], [])


def code_text(code: str) -> str:
    minutes = int(CODE_TTL_S // 60)
    return (f"Your chat code is {code}. It is valid for {minutes} minutes. "
            "If you did not ask for it, ignore this message.")


SmsSend = Callable[[list[tuple[str, str, str]]], Awaitable[dict[str, bool]]]


class CodeCourier:
    """Sends codes through the app's own channels: email over one SMTP connection of
    its own (reopened when it drops), SMS through the SMS gateway's `send_texts`."""

    def __init__(self, runtime: Runtime, send_texts: SmsSend) -> None:
        self.runtime = runtime
        self.send_texts = send_texts
        self.sender: RoutedSender | None = None

    async def __call__(self, delivery: Delivery) -> bool:
        settings = self.runtime.settings
        text = code_text(delivery.code)
        reference = f"code:{secrets.token_hex(8)}"
        if delivery.channel == "sms":
            sent = await self.send_texts([(delivery.address, text, reference)])
            return sent.get(reference, False)
        if self.sender is None:
            self.sender = routed_senders(CHANNELS["email"], settings,
                                         self.runtime.endpoints, 1)[0]
        mail = code_mail(delivery.address, text,
                         message_id=message_id(reference, settings.mail_from))
        outcome = await send_moving(self.sender, build_message(mail, settings.mail_from))
        return outcome.status == SENT
