"""CSV parsing and audience filters (pure logic; the HTTP import is tested end to end)."""

from __future__ import annotations

import pytest

from app.audience.customers import audience_filter, template_variables
from app.audience.imports import CsvRejected, check_csv, parse_csv


def test_report_names_bad_rows_and_keeps_good_ones() -> None:
    text = (
        "email,name,plan,phone,city\n"
        "ana@example.com,Ana,Turbo,(11) 98765-4321,Recife\n"  # row 2: good (a BR phone)
        "not-an-email,Bad,Basic,+5511,X\n"              # row 3: bad email, bad phone
        "bruno@example.com,Bruno\n"                      # row 4: short row
        "ANA@example.com,Ana again,Basic,,Y\n"           # row 5: duplicate of row 2
        ",Nobody,Basic,,Z\n"                             # row 6: empty email
        "carla@example.com,Carla,Plus,,Natal\n"          # row 7: good
    )
    good, report = parse_csv(text, tag="import-1")
    assert [row for row, _ in good] == [2, 7]
    assert good[0][1]["vars"] == {"city": "Recife"} and good[0][1]["tags"] == ["import-1"]
    assert good[0][1]["phone"] == "+5511987654321"  # E.164
    invalid = {(item["row"], item["field"]) for item in report.invalid}
    assert invalid == {(3, "email"), (3, "phone"), (4, "plan"), (4, "phone"), (4, "city"),
                       (6, "email")}
    assert report.duplicates == [{"row": 5, "email": "ana@example.com",
                                  "reason": "repeated in file"}]


def test_file_without_email_column_is_rejected() -> None:
    with pytest.raises(CsvRejected) as caught:
        parse_csv("name,plan\nAna,Turbo\n")
    assert caught.value.field == "email"


@pytest.mark.parametrize("text", [
    "\x11B\xc5\xf2\r\x8au#",                    # random bytes as Schemathesis sent them
    "email,name\na@b.c," + "x" * 200_000 + "\n",  # a field beyond csv's size limit
])
def test_a_file_csv_cannot_read_is_rejected_naming_the_file(text: str) -> None:
    with pytest.raises(CsvRejected) as caught:
        check_csv(text)
    assert caught.value.field in {"file", "email"}


def test_carriage_returns_end_rows_like_newlines() -> None:
    assert check_csv("email,name\r\na@b.c,Ana\r\nb@b.c,Bia\r\n") == 2


def test_audience_always_excludes_unsubscribed() -> None:
    assert audience_filter({}) == {"unsubscribed": False}  # nor a pending signup
    query = audience_filter({"tag": "t", "plan": "Turbo", "is_client": False,
                             "email_domain": "a.b"})
    assert query["unsubscribed"] is False and query["tags"] == "t"
    assert query["email"] == {"$regex": r"@a\.b$"}


def test_template_variables_merge_extras_under_core_fields() -> None:
    variables = template_variables({"email": "a@b.c", "name": "Ana Silva", "plan": "Turbo",
                                    "vars": {"city": "Recife", "name": "spoofed"}})
    assert variables["name"] == "Ana Silva" and variables["city"] == "Recife"
    assert variables["first_name"] == "Ana"


def test_audience_pages_cover_every_bucket_once() -> None:
    from app.audience.customers import (
        AUDIENCE_BUCKETS,
        PAGE_TARGET,
        SHARDS,
        audience_page_query,
        audience_pages,
        bucket_of,
        new_customer,
    )

    assert audience_pages(500) == 1 and audience_pages(5_000) == 1
    assert audience_pages(100_000) == SHARDS and audience_pages(1_000_000) == AUDIENCE_BUCKETS
    for customers in (5_001, 100_000, 1_000_000, 50_000_000):
        pages = audience_pages(customers)
        assert customers / pages <= PAGE_TARGET or pages == AUDIENCE_BUCKETS
    customer = new_customer("a@x.example", "A")
    for pages in (SHARDS, AUDIENCE_BUCKETS):  # each customer is on exactly one page
        on = [page for page in range(pages)
              if all(customer[k] == v for k, v in audience_page_query({}, page, pages).items()
                     if k in ("bucket", "shard"))]
        assert len(on) == 1
    assert audience_page_query({"tag": "t"}, 0, 1) == {"unsubscribed": False, "tags": "t"}
    assert 0 <= bucket_of("any id") < AUDIENCE_BUCKETS and bucket_of("x") == bucket_of("x")


def test_values_a_spreadsheet_would_run_as_formulas_are_refused_per_row() -> None:
    good, report = parse_csv("email,name,plan,phone,balance,note\n"
                             "a@b.c,=HYPERLINK(\"http://x\"),Basic,+5511987654321,-12.50,ok\n"
                             "b@b.c,Bia,Basic,+5511987654321,3,@SUM(A1)\n"
                             "c@b.c,Jean-Luc,Basic,+5511987654321,-3,fine\n")
    assert [doc["email"] for _, doc in good] == ["c@b.c"]  # "+55..." and "-3" are fine
    assert {(i["row"], i["field"]) for i in report.invalid} == {(2, "name"), (3, "note")}


def test_demo_phones_are_valid_and_never_one_the_embedded_smsc_fails_on_purpose() -> None:
    import random

    from app.audience.imports import demo_phone
    from app.audience.phones import SIMULATED, e164

    rng = random.Random(7)
    phones = [demo_phone(rng) for _ in range(20_000)]
    assert not [p for p in phones if p.endswith(SIMULATED)]
    assert all(e164(p) == p for p in phones[:200])


async def test_an_audience_never_holds_the_unsubscribed_nor_unconfirmed_signups(db) -> None:
    from app.audience.customers import PENDING, audience_filter, confirm_signup

    await db.customers.insert_many([
        {"_id": "in", "email": "in@aud.example", "unsubscribed": False, "tags": ["t"]},
        {"_id": "out", "email": "out@aud.example", "unsubscribed": True, "tags": ["t"]},
        {"_id": "new", "email": "new@aud.example", "unsubscribed": PENDING, "tags": ["t"]}])
    query = audience_filter({"tag": "t"})
    assert [c["_id"] async for c in db.customers.find(query)] == ["in"]
    assert await confirm_signup(db, "new") and not await confirm_signup(db, "new")
    assert not await confirm_signup(db, "out")  # an unsubscribe is not undone by a link
    assert sorted([c["_id"] async for c in db.customers.find(query)]) == ["in", "new"]
