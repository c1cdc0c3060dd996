"""What one write costs the embedded database, by shape: `insert` of many documents
against the same inserts in one `bulkWrite`, and a few updates to different collections
as separate commands against one `bulkWrite` (`app.core.bulk`).

The database runs in its own process (`embedded.mongo`), with the app's indexes; this
process only sends.
Reported per write: the server's CPU milliseconds and the wall time of the round trip.
It decided where `app.core.bulk` is used: the runner's few updates go as one `bulkWrite`,
a flush's inserts go per collection.

    python -m benchmarks.bulk_write                  # 300 writes of each shape
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from pymongo import InsertOne, MongoClient, UpdateOne

from app.core.db import close_clients, database, ensure_indexes
from benchmarks.harness import machine
from embedded.mongo import EmbeddedMongo

RESULTS = Path(__file__).parent / "results"


def delivery() -> dict:
    """A delivery record the size of the send path's."""
    return {"_id": uuid.uuid4().hex, "campaign_id": "c", "customer_id": "c000123",
            "status": "sent", "attempts": 1, "last_code": 250, "last_error": None,
            "node": "n" * 12, "worker": "w" * 16, "latency_ms": 1.5, "batch_id": "b" * 20,
            "message_id": "<" + "m" * 40 + "@bench.example>"}


def shapes(client: MongoClient, name: str, inserts: int) -> dict:
    db = client[name]

    def ns(collection: str) -> str:
        return f"{name}.{collection}"

    def updates(namespaced: bool) -> list[UpdateOne]:
        extra = ({"namespace": ns("campaigns")}, {"namespace": ns("rollups")},
                 {"namespace": ns("batches")}) if namespaced else ({}, {}, {})
        return [UpdateOne({"_id": "c"}, {"$inc": {"counts.sent": 100}}, **extra[0]),
                UpdateOne({"_id": "r"}, {"$inc": {"sent": 100}}, upsert=True, **extra[1]),
                UpdateOne({"_id": "b", "claim": "k"}, {"$set": {"status": "claimed"}},
                          **extra[2])]

    def separately() -> None:
        first, second, third = updates(False)
        db.campaigns.bulk_write([first])
        db.rollups.bulk_write([second])
        db.batches.bulk_write([third])

    return {
        f"insert of {inserts}": lambda: db.deliveries.insert_many(
            [delivery() for _ in range(inserts)], ordered=False),
        f"bulkWrite of {inserts} inserts": lambda: client.bulk_write(
            [InsertOne(delivery(), namespace=ns("deliveries")) for _ in range(inserts)],
            ordered=False),
        "3 updates, 3 commands": separately,
        "3 updates, one bulkWrite": lambda: client.bulk_write(updates(True), ordered=False),
    }


async def indexed(uri: str) -> None:
    await ensure_indexes(database(uri, "bench"))
    await close_clients()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300, help="of each shape, per round")
    parser.add_argument("--inserts", type=int, default=25, help="documents per flush")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    server = EmbeddedMongo(Path(tempfile.mkdtemp(prefix="bulk-")) / "db")
    uri = server.start()
    rows: dict[str, list[dict]] = {}
    try:
        db_process = psutil.Process(server.process.pid)
        asyncio.run(indexed(uri))  # the app's indexes: an insert updates them all
        client = MongoClient(uri)
        client.bench.campaigns.insert_one({"_id": "c"})
        client.bench.batches.insert_one({"_id": "b", "claim": "k"})
        for _ in range(args.rounds):  # alternating shapes, each round
            for shape, write in shapes(client, "bench", args.inserts).items():
                cpu = sum(db_process.cpu_times()[:2])
                started = time.perf_counter()
                for _ in range(args.writes):
                    write()
                rows.setdefault(shape, []).append({
                    "server_cpu_ms": round(1000 * (sum(db_process.cpu_times()[:2]) - cpu)
                                           / args.writes, 3),
                    "wall_ms": round(1000 * (time.perf_counter() - started) / args.writes, 3)})
        client.close()
    finally:
        server.stop()
    result = {"machine": machine(),
              "command": f"python -m benchmarks.bulk_write --writes {args.writes} "
                         f"--inserts {args.inserts} --rounds {args.rounds}",
              "per_write": rows}
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bulk_write.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
