"""Customers in bulk: demo generation and CSV imports, checked row by row (per-row report of
what was refused and why), a chunk of inserts at a time."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import INSERT_CHUNK, insert_customers, new_customer, normalise_email
from app.audience.phones import SIMULATED, e164
from app.core.spreadsheets import looks_like_formula

PLANS = ("Basic", "Plus", "Turbo", "Family")

CORE_COLUMNS = ("email", "name", "plan", "phone")


# A value a spreadsheet would run as a formula (`app.core.spreadsheets`) is refused on
# import. Phones may start with "+", so not them.


FIRST = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Felipe", "Gabi", "Hugo", "Iris", "João")

LAST = ("Silva", "Souza", "Costa", "Lima", "Pereira", "Almeida", "Rocha", "Dias")


MAX_IMPORT_ROWS = 200_000

MAX_IMPORT_BYTES = 20 * 1024 * 1024  # an uploaded file, CSV or XLSX


def demo_phone(rng: random.Random) -> str:
    """A São Paulo mobile number, never one the embedded SMSC fails on purpose."""
    while True:
        number = f"+55119{rng.randrange(10**7, 10**8)}"
        if not number.endswith(SIMULATED):
            return number


def generation_tag(tag: str | None) -> tuple[str, str]:
    """(the generation's own id, the tag its customers get)."""
    batch = uuid.uuid4().hex[:6]
    return batch, tag or f"demo-{batch}"


async def generate_customers(db: AsyncDatabase, count: int, domain: str,
                             tag: str | None = None, *, batch: str | None = None,
                             progress: Callable[[int], Awaitable[None]] | None = None
                             ) -> dict[str, Any]:
    """N demo customers, made and inserted a chunk at a time (memory holds one chunk),
    reporting how many are done after each chunk."""
    if batch is None:
        batch, tag = generation_tag(tag)
    rng = random.Random(batch)
    inserted = 0
    for start in range(0, count, INSERT_CHUNK):
        docs = [
            new_customer(
                f"customer{n:07d}.{batch}@{domain}".lower(),
                f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                plan=rng.choice(PLANS),
                phone=demo_phone(rng),
                is_client=rng.random() < 0.8,
                tags=[tag] if tag else [],
            )
            for n in range(start, min(count, start + INSERT_CHUNK))
        ]
        inserted += (await insert_customers(db, docs))[0]
        if progress is not None:
            await progress(start + len(docs))
    return {"created": inserted, "tag": tag, "domain": domain}


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: list[dict] = field(default_factory=list)
    invalid: list[dict] = field(default_factory=list)


class CsvRejected(ValueError):
    """The file as a whole cannot be imported (no header, no email column)."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(reason)
        self.field = field_name


def check_csv(text: str) -> int:
    """The file's data rows, if it can be imported at all (a header with an email
    column, at most MAX_IMPORT_ROWS rows); CsvRejected otherwise. Cheap: no row is
    validated here, that is the import job's work."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise CsvRejected("file",
                              "the CSV is empty: expected a header row with an email column")
        if "email" not in [name.strip().lower() for name in header]:
            raise CsvRejected("email", "the CSV has no email column")
        rows = sum(1 for row in reader if row)
    except csv.Error as exc:  # e.g. a stray quote or a field beyond csv's size limit
        raise CsvRejected("file", f"not a readable CSV (line {reader.line_num}): {exc}"
                          ) from None
    if rows > MAX_IMPORT_ROWS:
        raise CsvRejected("file", f"more than {MAX_IMPORT_ROWS} rows: split the file")
    return rows


def parse_csv(text: str, tag: str | None = None, region: str = "BR"
              ) -> tuple[list[tuple[int, dict]], ImportReport]:
    """Validate rows; return (row number, customer) for the good ones and the report.

    Row numbers count the header as row 1, as a spreadsheet shows them.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise CsvRejected("file", "the CSV is empty: expected a header row with an email column")
    columns = [name.strip().lower() for name in header]
    if "email" not in columns:
        raise CsvRejected("email", "the CSV has no email column")
    report, good, seen = ImportReport(), [], set()
    data_rows = 0
    for row_number, values in enumerate(reader, start=2):
        if not values:  # a blank line: nothing to import, but it is a row of the sheet
            continue
        data_rows += 1
        if data_rows > MAX_IMPORT_ROWS:
            raise CsvRejected("file", f"more than {MAX_IMPORT_ROWS} rows: split the file")
        row = dict(zip(columns, values, strict=False))
        problems = [{"field": name, "reason": "missing value (short row)"}
                    for name in columns[len(values):]]
        if len(values) > len(columns):
            problems.append({"field": "row", "reason": "more values than columns"})
        raw_email = (row.get("email") or "").strip()
        email = None
        if not raw_email:
            problems.append({"field": "email", "reason": "empty"})
        else:
            try:
                email = normalise_email(raw_email)
            except ValueError as exc:
                problems.append({"field": "email", "reason": str(exc)})
        phone = (row.get("phone") or "").strip() or None
        if phone is not None:
            try:
                phone = e164(phone, region)
            except ValueError as exc:
                problems.append({"field": "phone", "reason": str(exc)})
        problems += [{"field": name, "reason": "starts like a spreadsheet formula (=, +, -, "
                                               "@): refused so no export of it runs as one"}
                     for name, value in row.items()
                     if name not in ("email", "phone") and looks_like_formula(value.strip())]
        if problems:
            report.invalid += [{"row": row_number, **problem} for problem in problems]
            continue
        assert email is not None  # (no email is a problem above)
        if email in seen:
            report.duplicates.append(
                {"row": row_number, "email": email, "reason": "repeated in file"})
            continue
        seen.add(email)
        extra = {k: v.strip() for k, v in row.items() if k not in CORE_COLUMNS}
        name = (row.get("name") or "").strip() or email.split("@")[0]
        good.append((row_number, new_customer(
            email, name[:200], plan=(row.get("plan") or "Basic").strip()[:100] or "Basic",
            phone=phone, tags=[tag] if tag else [],
            variables=extra,
        )))
    return good, report


async def import_csv(db: AsyncDatabase, text: str, tag: str | None = None,
                     progress: Callable[[int], Awaitable[None]] | None = None,
                     region: str = "BR") -> ImportReport:
    good, report = parse_csv(text, tag, region)
    inserted, existing = await insert_customers(db, [doc for _, doc in good], progress)
    report.imported = inserted
    report.duplicates += [{"row": row, "email": doc["email"], "reason": "already a customer"}
                          for row, doc in good if doc["email"] in existing]
    report.duplicates.sort(key=lambda item: item["row"])
    return report
