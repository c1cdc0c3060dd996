"""XLSX audiences read as the CSV export of the same sheet (pure logic; the upload
through the API is tested in tests/deployments/test_campaigns.py)."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime

import pytest
from openpyxl import Workbook

from app.audience.imports import CsvRejected, parse_csv
from app.audience.xlsx_audience import check_xlsx, is_xlsx, xlsx_to_csv

HEADER = ["email", "name", "plan", "phone", "since", None]  # a blank header cell at the end
ROWS = [
    ["ana@example.com", "Ana", "Turbo", 5511990001234, datetime(2026, 1, 2), None],  # 2
    ["not-an-email", "Bad", "Basic", None, None, None],                            # 3
    ["bruno@example.com", "Bruno", None, None, None, None],   # 4: empty cells, not short
    [None, None, None, None, None, None],                     # 5: an empty row
    ["ANA@example.com", "Ana again", "Basic", None, None, None],   # 6: repeated
    ["carla@example.com", "=HYPERLINK(\"x\")", "Plus", None, None, None],  # 7: formula
    ["dora@example.com", "Dora", "Basic", None, None, "extra"],  # 8: past the header
    ["eva@example.com", "Eva", 3.5, 11987654321, datetime(2026, 3, 4, 5, 6), None],  # 9
]
# What a spreadsheet's "save as CSV" writes for that sheet.
SAME_SHEET_AS_CSV = (
    "email,name,plan,phone,since\n"
    "ana@example.com,Ana,Turbo,5511990001234,2026-01-02\n"
    "not-an-email,Bad,Basic,,\n"
    "bruno@example.com,Bruno,,,\n"
    "\n"
    "ANA@example.com,Ana again,Basic,,\n"
    'carla@example.com,"=HYPERLINK(""x"")",Plus,,\n'
    "dora@example.com,Dora,Basic,,,extra\n"
    "eva@example.com,Eva,3.5,11987654321,2026-03-04 05:06:00\n"
)


def described(row: tuple[int, dict]) -> tuple:
    number, doc = row  # less what each parse draws anew: the id (and its bucket), the time
    return number, {k: v for k, v in doc.items()
                    if k not in ("_id", "bucket", "shard", "created_at")}


def workbook(rows: list[list], header: list | None = HEADER) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in ([header] if header else []) + rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_sheet_reads_as_its_csv_export_and_reports_the_same() -> None:
    raw = workbook(ROWS)
    assert is_xlsx(raw) and not is_xlsx(SAME_SHEET_AS_CSV.encode())
    assert xlsx_to_csv(raw) == SAME_SHEET_AS_CSV
    good, report = parse_csv(xlsx_to_csv(raw), tag="t")
    good_csv, report_csv = parse_csv(SAME_SHEET_AS_CSV, tag="t")
    assert report == report_csv and [described(doc) for doc in good] == [
        described(doc) for doc in good_csv]
    assert [row for row, _ in good] == [2, 4, 9]
    assert good[0][1]["phone"] == "+5511990001234" and good[1][1]["plan"] == "Basic"
    assert good[2][1]["phone"] == "+5511987654321"  # national, read in the default region
    assert {(item["row"], item["field"]) for item in report.invalid} == {
        (3, "email"), (7, "name"), (8, "row")}
    assert [item["row"] for item in report.duplicates] == [6]
    assert check_xlsx(raw) == len(ROWS)


@pytest.mark.parametrize(("raw", "field"), [
    (workbook([["Ana"]], header=["name"]), "email"),
    (workbook([], header=None), "file"),
    (b"PK\x03\x04 not really a zip", "file"),
])
def test_a_workbook_that_cannot_be_imported_is_refused_naming_the_field(raw: bytes,
                                                                         field: str) -> None:
    with pytest.raises(CsvRejected) as caught:
        check_xlsx(raw)
    assert caught.value.field == field


def test_an_archive_that_unpacks_too_large_is_refused_before_it_is_parsed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import app.audience.xlsx_audience as xlsx_audience

    raw = workbook(ROWS)
    unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(raw)).infolist())
    monkeypatch.setattr(xlsx_audience, "MAX_UNPACKED_BYTES", unpacked - 1)
    with pytest.raises(CsvRejected, match="unpacks to more than"):
        xlsx_to_csv(raw)
