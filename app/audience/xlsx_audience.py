"""Excel audiences: an `.xlsx` upload read as the CSV importer reads a file.

The first sheet's rows become CSV rows, cell by cell, with values as a spreadsheet
shows them: whole numbers without ".0", dates as ISO 8601, a formula as its last
computed value (or as the formula, where no spreadsheet computed one). Each row is as
wide as the header: an empty cell is an empty value, not a short row. So an XLSX and
the CSV export of the same sheet give the same import report (`app.audience.customers.
parse_csv` validates both). openpyxl reads it in read-only mode, row by row. An XLSX
is a zip of XML: its unpacked size and the rows read are bounded before anything is
parsed, so a small upload cannot unpack into gigabytes.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime, time
from typing import Any

from app.audience.imports import MAX_IMPORT_ROWS, CsvRejected

ZIP_MAGIC = b"PK\x03\x04"
# A sheet of MAX_IMPORT_ROWS rows of a dozen short cells unpacks to well under 512
# bytes a row; a zip bomb inside the upload limit unpacks to far more.
MAX_UNPACKED_BYTES = MAX_IMPORT_ROWS * 512
MAX_COLUMNS = 200


def is_xlsx(raw: bytes) -> bool:
    """An XLSX (a zip archive) rather than CSV text: no CSV starts with a zip header."""
    return raw.startswith(ZIP_MAGIC)


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 5511990001234 typed as a number, not 5.511990001234E12
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.time() != time() else value.date().isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _open(raw: bytes, values: bool = True):
    from openpyxl import load_workbook  # the import is heavy; only uploads need it

    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise CsvRejected("file", "not a readable XLSX (a damaged zip archive)") from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise CsvRejected("file", f"the XLSX unpacks to more than "
                                  f"{MAX_UNPACKED_BYTES // 2**20} MiB: split the file")
    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=values)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not XLSX
        raise CsvRejected("file", f"not a readable XLSX ({type(exc).__name__})") from None
    if not book.worksheets:
        raise CsvRejected("file", "the XLSX has no sheet")
    return book


def xlsx_to_csv(raw: bytes) -> str:
    """The first sheet as CSV text; CsvRejected when it cannot be read at all or holds
    more rows than an import takes (the header row is row 1, as in the CSV)."""
    book, formulas = _open(raw), _open(raw, values=False)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    width = 0  # the header's columns: cells past them count only when they hold a value
    try:
        rows = zip(book.worksheets[0].iter_rows(values_only=True),
                   formulas.worksheets[0].iter_rows(values_only=True), strict=False)
        for number, (shown, written) in enumerate(rows, 1):
            # A formula's last computed value; a file no spreadsheet has saved holds none,
            # and then the formula itself is the value (and refused like one in CSV).
            row = tuple(formula if value is None else value
                        for value, formula in zip(shown, written, strict=False))
            if number > MAX_IMPORT_ROWS + 1:
                raise CsvRejected("file", f"more than {MAX_IMPORT_ROWS} rows: split the file")
            if len(row) > MAX_COLUMNS:
                if any(value is not None for value in row[MAX_COLUMNS:]):
                    raise CsvRejected("file", f"row {number} has more than {MAX_COLUMNS} "
                                              "columns")
                row = row[:MAX_COLUMNS]
            texts = [cell_text(value) for value in row]
            if number == 1:
                while texts and texts[-1] == "":
                    texts.pop()
                width = len(texts)
            elif not any(texts):
                texts = []  # an empty row, as a blank line (which the CSV reader skips)
            else:
                texts += [""] * (width - len(texts))
                while len(texts) > width and texts[-1] == "":
                    texts.pop()
            writer.writerow(texts)
    finally:
        book.close()
        formulas.close()
    return out.getvalue()


def check_xlsx(raw: bytes) -> int:
    """What `check_csv` is for CSV, cheaply: the file opens, its header row has an email
    column, and its sheet does not claim more rows than an import takes. Returns the
    sheet's data rows as its dimension records them (0 when it records none); the
    import job reads the rows themselves."""
    book = _open(raw)
    try:
        sheet = book.worksheets[0]
        header = next(sheet.iter_rows(max_row=1, max_col=MAX_COLUMNS, values_only=True), ())
        names = [cell_text(value).strip().lower() for value in header]
        if not any(names):
            raise CsvRejected("file",
                              "the XLSX is empty: expected a header row with an email column")
        if "email" not in names:
            raise CsvRejected("email", "the XLSX has no email column")
        rows = max(0, (sheet.max_row or 1) - 1)
    finally:
        book.close()
    if rows > MAX_IMPORT_ROWS:
        raise CsvRejected("file", f"more than {MAX_IMPORT_ROWS} rows: split the file")
    return rows
