"""Writes to several collections of one database, sent as one command.

On MongoDB 8.0 and later (and the embedded SecantusDB) that command is `bulkWrite`,
through PyMongo's client-level `bulk_write`: the runner's write of a round's counters,
roll-ups and batch closes (a few updates, to three collections) costs one command, not
three. An older server gets one unordered bulk write per collection, in the order the
collections were first written (the client remembers that it has no `bulkWrite`).
`one_command=False` always writes per collection: for many inserts, which the embedded
server runs op by op inside `bulkWrite` (25 inserts cost it three times what one
`insert` of 25 does; three updates cost it a fifth less as one `bulkWrite`:
`benchmarks/bulk_write.py`).

Writes are unordered. A duplicate key (11000) is not an error here: `apply` returns
the positions of the writes it refused, and the caller says what that means (a delivery
another run recorded first). Any other write error raises.
"""

from __future__ import annotations

import weakref
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    InvalidOperation,
    OperationFailure,
)

DUPLICATE_KEY = 11000
COMMAND_NOT_FOUND = 59
# Clients whose server answered that it has no `bulkWrite` (before MongoDB 8.0).
_per_collection: weakref.WeakSet = weakref.WeakSet()


class Writes:
    """Inserts and updates gathered for one `apply`. `one_command` False always writes
    per collection (None: `bulkWrite` where the server has it)."""

    def __init__(self, db: AsyncDatabase, *, one_command: bool | None = None):
        self.db = db
        self.one_command = one_command
        self.ops: list[tuple[str, InsertOne | UpdateOne]] = []

    def __len__(self) -> int:
        return len(self.ops)

    def insert(self, collection: str, document: dict[str, Any]) -> int:
        """Queue an insert; its position (what `apply` reports if it is a duplicate)."""
        self.ops.append((collection, InsertOne(document, namespace=self._ns(collection))))
        return len(self.ops) - 1

    def update(self, collection: str, filter: dict[str, Any],
               update: dict[str, Any] | list[dict[str, Any]], *, upsert: bool = False) -> int:
        """An update document, or an update pipeline (a list of stages)."""
        self.ops.append((collection, UpdateOne(filter, update, upsert=upsert,
                                               namespace=self._ns(collection))))
        return len(self.ops) - 1

    def _ns(self, collection: str) -> str:
        return f"{self.db.name}.{collection}"

    async def apply(self) -> set[int]:
        """Send everything queued; the positions refused as duplicate keys."""
        ops, self.ops = self.ops, []
        if not ops:
            return set()
        client = self.db.client
        if self.one_command is not False and client not in _per_collection:
            try:
                await client.bulk_write([model for _, model in ops], ordered=False)
                return set()
            except ClientBulkWriteException as exc:
                if exc.error is not None or exc.write_concern_errors:
                    raise
                errors: list[Any] = list(exc.write_errors or [])  # (the driver types them loosely)
                return _duplicates([(err["idx"], err) for err in errors], exc)
            except InvalidOperation:  # the driver saw a server older than 8.0
                if self.one_command:
                    raise
                _per_collection.add(client)
            except OperationFailure as exc:
                if exc.code != COMMAND_NOT_FOUND or self.one_command:
                    raise
                _per_collection.add(client)
        return await self._per_collection(ops)

    async def _per_collection(self, ops: list[tuple[str, InsertOne | UpdateOne]]
                              ) -> set[int]:
        positions: dict[str, list[int]] = {}
        for at, (collection, _) in enumerate(ops):
            positions.setdefault(collection, []).append(at)
        refused: set[int] = set()
        failed: BulkWriteError | None = None  # unordered: the other collections still go
        for collection, places in positions.items():
            try:
                await self.db[collection].bulk_write([ops[i][1] for i in places],
                                                     ordered=False)
            except BulkWriteError as exc:
                try:
                    if exc.details.get("writeConcernErrors"):
                        raise
                    refused |= _duplicates([(places[err["index"]], err)
                                            for err in exc.details["writeErrors"]], exc)
                except BulkWriteError:
                    failed = failed or exc
        if failed is not None:
            raise failed
        return refused


def _duplicates(errors: list[tuple[int, dict]], exc: Exception) -> set[int]:
    if any(err["code"] != DUPLICATE_KEY for _, err in errors):
        raise exc
    return {at for at, _ in errors}
