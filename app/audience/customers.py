"""Customers: their records, audience queries (a campaign's pages), unsubscribes and
opt-outs. Bulk creation (demo generation, CSV imports) is in `app.audience.imports`.

A phone, when given, must be a valid number (read in the default region when it has
no country code) and is kept in E.164: SMS campaigns send to it."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from app.audience import suppressions
from app.audience.models import Audience
from app.audience.suppressions import CHANGED
from app.core.paging import newest_first
from app.integrations import outbox

INSERT_CHUNK = 1000
# Campaigns read their audience a page at a time, a page being every customer of one
# hash bucket or one shard of buckets: an equality on an index (the embedded database
# cannot bound range scans, nor serve $in from an index). Up to SINGLE_PAGE_MAX
# customers in all, the whole audience is one page; up to SHARDS * PAGE_TARGET, a page
# is a shard (bucket % SHARDS); beyond, a bucket.
AUDIENCE_BUCKETS = 1024
SHARDS = 32
SINGLE_PAGE_MAX = 5_000
PAGE_TARGET = 5_000
PAGE_READ_BATCH = 2 * PAGE_TARGET  # a page's documents in the find's first reply (~2 MB)


def bucket_of(customer_id: str) -> int:
    digest = hashlib.blake2b(customer_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % AUDIENCE_BUCKETS


def normalise_email(raw: str) -> str:
    """A syntactically valid address, lower-cased; raises ValueError with the reason."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def new_customer(email: str, name: str, *, plan: str = "Basic", phone: str | None = None,
                 is_client: bool = True, tags: list[str] | None = None,
                 variables: dict[str, str] | None = None) -> dict[str, Any]:
    customer_id = uuid.uuid4().hex
    bucket = bucket_of(customer_id)
    return {
        "_id": customer_id,
        "bucket": bucket,
        "shard": bucket % SHARDS,
        "email": email,
        "name": name,
        "plan": plan,
        "phone": phone,
        "is_client": is_client,
        "unsubscribed": False,
        "tags": tags or [],
        "vars": variables or {},
        "created_at": datetime.now(UTC),
    }


async def insert_customers(db: AsyncDatabase, docs: list[dict],
                           progress: Callable[[int], Awaitable[None]] | None = None
                           ) -> tuple[int, set[str]]:
    """Insert what is new, with the suppression list applied to it; return (inserted,
    emails that already existed)."""
    inserted, duplicates = 0, set()
    any_suppressed = await db.suppressions.estimated_document_count() > 0
    for start in range(0, len(docs), INSERT_CHUNK):
        if progress is not None and start:
            await progress(start)
        chunk = docs[start:start + INSERT_CHUNK]
        if any_suppressed:  # (one read a chunk; none while the list is empty)
            await suppressions.apply_to(db, chunk)
        try:
            result = await db.customers.insert_many(chunk, ordered=False)
            inserted += len(result.inserted_ids)
        except BulkWriteError as exc:
            inserted += exc.details["nInserted"]
            for error in exc.details["writeErrors"]:
                if error["code"] != 11000:
                    raise
                duplicates.add(chunk[error["index"]]["email"])
    return inserted, duplicates


def audience_filter(audience: Audience | dict) -> dict[str, Any]:
    """The MongoDB filter for an audience; unsubscribed customers, and signups still
    waiting for their confirmation link (`PENDING`), never match."""
    spec = audience if isinstance(audience, Audience) else Audience.model_validate(audience)
    query: dict[str, Any] = {"unsubscribed": False}  # not True, nor a pending signup
    if spec.tag:
        query["tags"] = spec.tag
    if spec.plan:
        query["plan"] = spec.plan
    if spec.is_client is not None:
        query["is_client"] = spec.is_client
    if spec.email_domain:
        query["email"] = {"$regex": f"@{re.escape(spec.email_domain.lower())}$"}
    return query


async def estimated_customers(db: AsyncDatabase) -> int:
    """About how many customers there are, from one bucket (an indexed count of about
    1/1,024 of them): the embedded database answers a whole-collection count by
    scanning, 12 s at a million customers."""
    return AUDIENCE_BUCKETS * await db.customers.count_documents({"bucket": 0})


def audience_pages(customer_count: int) -> int:
    if customer_count <= SINGLE_PAGE_MAX:
        return 1
    return SHARDS if customer_count <= SHARDS * PAGE_TARGET else AUDIENCE_BUCKETS


def audience_page_query(audience: dict, page: int, pages: int) -> dict[str, Any]:
    """The indexed part of an audience page's filter: (shard or bucket,) unsubscribed,
    tag. Page p of SHARDS is the shard p, page p of AUDIENCE_BUCKETS the bucket p."""
    spec = Audience.model_validate(audience)
    query: dict[str, Any] = {}
    if pages == SHARDS:
        query["shard"] = page
    elif pages > 1:
        query["bucket"] = page
    query["unsubscribed"] = False
    if spec.tag:
        query["tags"] = spec.tag
    return query


def audience_matches(audience: dict, customer: dict) -> bool:
    """The rest of the audience filter, applied to a page's customers."""
    spec = Audience.model_validate(audience)
    if spec.plan and customer.get("plan") != spec.plan:
        return False
    if spec.is_client is not None and customer.get("is_client") != spec.is_client:
        return False
    return not (spec.email_domain and not (customer.get("email") or "").lower().endswith(
        f"@{spec.email_domain.lower()}"))


# What a send needs of a customer (templates, address, consent), read with the page.
SEND_FIELDS = {"email": 1, "name": 1, "plan": 1, "phone": 1, "is_client": 1,
               "unsubscribed": 1, "opted_out": 1, "vars": 1, "timezone": 1, "telegram": 1,
               "whatsapp": 1, "webpush": 1}


async def audience_page(db: AsyncDatabase, audience: dict, page: int,
                        pages: int) -> list[dict]:
    """One page of the audience, in _id order, with the fields a send needs."""
    found = [doc async for doc in db.customers.find(  # in one reply: no getMore
        audience_page_query(audience, page, pages), SEND_FIELDS, batch_size=PAGE_READ_BATCH)]
    return sorted((doc for doc in found if audience_matches(audience, doc)),
                  key=lambda doc: doc["_id"])


def template_variables(customer: dict) -> dict[str, Any]:
    """What a template may use: the customer's fields and any imported extra columns."""
    variables = dict(customer.get("vars") or {})
    variables.update({key: customer.get(key) for key in ("email", "name", "plan", "phone")})
    variables["first_name"] = (customer.get("name") or "").split(" ")[0]
    variables["is_client"] = customer.get("is_client", False)
    return variables


async def set_unsubscribed(db: AsyncDatabase, customer_id: str, via: str) -> bool:
    """Unsubscribe the customer (False: no such customer). The first time, the
    `customer.unsubscribed` event goes in the same update (`app.integrations.outbox`); the caller
    hands it on."""
    at = datetime.now(UTC)
    changed = await db.customers.find_one_and_update(
        {"_id": customer_id, "unsubscribed": {"$ne": True}},
        {"$set": {"unsubscribed": True, "unsubscribed_at": at, CHANGED: at},
         "$push": {"outbox": outbox.entry("customer.unsubscribed",
                                          {"customer_id": customer_id, "via": via})}},
        projection={"email": 1})
    if changed is not None:
        if changed.get("email"):  # on the one list too (its view, export and lift)
            await suppressions.suppress(db, [suppressions.Entry(
                suppressions.ALL, changed["email"], suppressions.UNSUBSCRIBE, {"via": via})])
        return True
    return await db.customers.count_documents({"_id": customer_id}, limit=1) == 1


PENDING = "pending"  # `unsubscribed` of an email signup until its link is followed


async def confirm_signup(db: AsyncDatabase, customer_id: str) -> bool:
    """A pending signup followed its confirmation link: subscribed from now. False when
    it was not pending (confirmed before, unsubscribed, or no such customer)."""
    result = await db.customers.update_one(
        {"_id": customer_id, "unsubscribed": PENDING},
        {"$set": {"unsubscribed": False, "consent_at": datetime.now(UTC),
                  CHANGED: datetime.now(UTC)}})
    return result.modified_count == 1


async def find_by_email(db: AsyncDatabase, email: str) -> dict | None:
    return await db.customers.find_one({"email": email.strip().lower()})


async def list_customers(db: AsyncDatabase, tag: str | None, limit: int,
                         cursor: str | None = None) -> tuple[list[dict], str | None, int]:
    """(a page of customers, newest first; the next page's cursor; an estimate of how
    many match, from one bucket of 1/1,024 of them: never a count of them all)."""
    query = {"tags": tag} if tag else {}
    page, next_cursor = await newest_first(db.customers, query, "created_at", limit, cursor,
                                           {"outbox": 0})  # events on their way: internal
    estimate = AUDIENCE_BUCKETS * await db.customers.count_documents({"bucket": 0, **query})
    return page, next_cursor, estimate
