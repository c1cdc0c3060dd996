"""Classifying inbound mail: keywords, replies, bounces and hostile input (pure logic)."""

from __future__ import annotations

import os

import pytest

from app.core.config import load_settings
from app.signup.inbound_mail import (
    BOUNCE,
    COMPLAINT,
    REVIEW,
    SIGNUP,
    UNSUBSCRIBE,
    Rules,
    classify,
    describe_too_large,
)
from app.signup.reply_text import find_keyword, own_text
from tests.utils.mail_samples import complaint_for

RULES = Rules.from_settings(load_settings())
CAMPAIGN_ID = "<0123456789abcdef0123456789abcdef@operator.example>"


def mail(body: str, *, subject: str = "Re: Oferta especial", sender: str =
         "Ana <ana@prospect.example>", headers: str = "", content_type: str =
         "text/plain; charset=utf-8") -> bytes:
    return (f"From: {sender}\r\nTo: Operator <no-reply@operator.example>\r\n"
            f"Subject: {subject}\r\nMessage-ID: <reply-1@prospect.example>\r\n"
            f"In-Reply-To: {CAMPAIGN_ID}\r\nReferences: <older@x.example> {CAMPAIGN_ID}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{headers}\r\n"
            f"{body}").encode()


def test_signup_reply_in_portuguese_with_an_encoded_name() -> None:
    raw = mail("Olá! Quero me cadastrar, por favor.\r\n\r\n"
               "Em seg., 2 de nov. de 2026, Operator escreveu:\r\n> Unsubscribe here\r\n",
               sender="=?utf-8?q?Jo=C3=A3o_da_Silva?= <Joao.Silva@Prospect.example>")
    found = classify(raw, RULES)
    assert (found.kind, found.keyword) == (SIGNUP, "cadastrar")  # first listed that matches
    assert found.sender == "joao.silva@prospect.example"
    assert found.name == "João da Silva"
    assert found.references == ["<older@x.example>", CAMPAIGN_ID]  # In-Reply-To last
    assert found.message_id == "<reply-1@prospect.example>"
    assert "Quero me cadastrar" in found.snippet and "Unsubscribe" not in found.snippet


def test_no_quero_mais_is_an_unsubscribe_not_a_signup() -> None:
    found = classify(mail("Não QUERO mais receber estes emails."), RULES)
    assert (found.kind, found.keyword) == (UNSUBSCRIBE, "não quero")


def test_keywords_in_the_quoted_campaign_or_its_subject_do_not_count() -> None:
    raw = mail("Who are you?\r\n\r\nOn Mon, Nov 2, 2026, Operator wrote:\r\n"
               "> Sign up today, or unsubscribe below\r\n", subject="Re: Subscribe now")
    found = classify(raw, RULES)
    assert found.kind == REVIEW
    assert found.reason == "no signup or unsubscribe keyword"


def test_a_fresh_message_counts_its_subject() -> None:
    raw = (b"From: bia@prospect.example\r\nSubject: Cadastro\r\n\r\n\r\n")
    assert classify(raw, RULES).kind == SIGNUP


def test_html_only_reply_reads_the_visible_text_without_the_quote() -> None:
    html = ("<html><head><style>p{}</style></head><body><div>I want to <b>sign up</b>"
            "</div><div class=\"gmail_quote\"><div>wrote:</div><blockquote>unsubscribe"
            "</blockquote></div></body></html>")
    found = classify(mail(html, content_type="text/html; charset=utf-8"), RULES)
    assert found.kind == SIGNUP
    assert found.keyword in ("sign up", "i want")
    quoted_only = ("<div>thanks</div><div class=\"gmail_quote\">stop sending, "
                   "<div>nested</div> unsubscribe</div>")
    assert classify(mail(quoted_only, content_type="text/html"), RULES).kind == REVIEW


DSN = """From: MAILER-DAEMON@mx.prospect.example\r
To: no-reply@operator.example\r
Subject: Undelivered Mail Returned to Sender\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
\r
--B\r
Content-Type: text/plain\r
\r
I'm sorry to have to inform you that your message could not be delivered.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.prospect.example\r
\r
Final-Recipient: rfc822; gone@prospect.example\r
Action: failed\r
Status: 5.1.1\r
Diagnostic-Code: smtp; 550 5.1.1 <gone@prospect.example>: user unknown\r
\r
--B\r
Content-Type: text/rfc822-headers\r
\r
From: Operator <no-reply@operator.example>\r
To: gone@prospect.example\r
Message-ID: {mid}\r
Subject: Oferta\r
\r
--B--\r
"""


def test_a_delivery_status_notification_is_a_bounce_naming_the_original() -> None:
    found = classify(DSN.format(mid=CAMPAIGN_ID).encode(), RULES)
    assert found.kind == BOUNCE
    assert found.bounce is not None
    assert found.bounce.action == "failed"
    assert found.bounce.status == "5.1.1"
    assert found.bounce.smtp_code == 550
    assert found.bounce.recipient == "gone@prospect.example"
    assert found.bounce.original_message_id == CAMPAIGN_ID


def test_a_bounce_with_the_whole_original_attached() -> None:
    raw = DSN.format(mid=CAMPAIGN_ID).replace("text/rfc822-headers", "message/rfc822")
    found = classify(raw.encode(), RULES)
    assert found.kind == BOUNCE and found.bounce.original_message_id == CAMPAIGN_ID


def test_a_feedback_report_is_a_complaint_naming_the_original_and_recipient() -> None:
    found = classify(complaint_for("Ana@Prospect.example", CAMPAIGN_ID).raw, RULES)
    assert found.kind == COMPLAINT and found.bounce is None
    assert found.complaint is not None
    assert found.complaint.feedback_type == "abuse"
    assert found.complaint.recipient == "ana@prospect.example"
    assert found.complaint.original_message_id == CAMPAIGN_ID
    broken = complaint_for("not an address", CAMPAIGN_ID).raw
    assert classify(broken, RULES).complaint.recipient is None  # kept, not raised


def test_an_out_of_office_reply_goes_to_review() -> None:
    found = classify(mail("Estou de férias. Quero responder depois.",
                          headers="Auto-Submitted: auto-replied\r\n"), RULES)
    assert (found.kind, found.reason) == (REVIEW, "automatic reply")


def test_broken_mime_goes_to_review() -> None:
    raw = mail("no boundary anywhere, quero cadastro\r\n" * 100,
               content_type='multipart/mixed; boundary="never-there"')
    found = classify(raw, RULES)
    assert found.kind == REVIEW
    assert found.reason.startswith("broken MIME")


def test_unknown_charset_and_bad_base64_do_not_raise() -> None:
    raw = mail("cXVlcm8gbWUgY2FkYXN0cmFy!!!@@", content_type="text/plain; charset=x-klingon",
               headers="Content-Transfer-Encoding: base64\r\n")
    found = classify(raw, RULES)
    assert found.kind in (SIGNUP, REVIEW)  # whatever it decodes to, it is an answer


def test_attachments_are_listed_by_name_never_kept() -> None:
    raw = (b"From: c@prospect.example\r\nSubject: cadastro\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n"
           b"Content-Type: text/plain\r\n\r\nquero\r\n--X\r\n"
           b"Content-Type: application/x-msdownload\r\n"
           b"Content-Disposition: attachment; filename=\"invoice\r\n .exe\"\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA//8AALgAAAAA\r\n--X--\r\n")
    found = classify(raw, RULES)
    assert found.kind == SIGNUP
    assert found.attachments == ["invoice .exe"]
    assert "TVqQ" not in str(found.to_doc())


@pytest.mark.parametrize("sender, reason", [
    ("a@prospect.example, b@prospect.example", "more than one sender address"),
    ("nobody", "sender address not usable"),
    ("", "no sender address"),
    ("Operator <no-reply@operator.example>", "sent from our own address"),
])
def test_senders_we_cannot_trust_go_to_review(sender: str, reason: str) -> None:
    found = classify(mail("quero", sender=sender), RULES)
    assert found.kind == REVIEW and found.reason.startswith(reason)


def test_garbage_bytes_never_raise() -> None:
    for seed in range(20):
        raw = os.urandom(2000) if seed % 2 else b"\r\n".join(os.urandom(80) for _ in range(30))
        assert classify(raw, RULES).kind in (REVIEW, SIGNUP, UNSUBSCRIBE, BOUNCE)


def test_headers_of_a_message_too_large_to_read() -> None:
    found = describe_too_large(b"From: Big <big@prospect.example>\r\nSubject: =?utf-8?b?"
                               b"Q2FkYXN0cm8=?=\r\n\r\n", 5_000_000, 2_000_000)
    assert (found.kind, found.sender, found.subject) == (REVIEW, "big@prospect.example",
                                                         "Cadastro")
    assert "5000000 bytes" in found.reason


def test_keyword_matching_is_by_whole_word_and_accent_blind() -> None:
    assert find_keyword("Gostaria de me CADASTRAR", ["cadastrar"]) == "cadastrar"
    assert find_keyword("stopwatch", ["stop"]) is None
    assert find_keyword("nao quero", ["não quero"]) == "não quero"
    assert own_text("yes\n> quoted\nmore\n-----Original Message-----\nold") == "yes\nmore"


@pytest.mark.parametrize(("results", "kind"), [
    ("mx.operator.example; dmarc=pass header.from=prospect.example", SIGNUP),
    ("mx.operator.example; dkim=pass header.d=prospect.example header.s=s1", SIGNUP),
    ("mx.operator.example; spf=pass smtp.mailfrom=bounce@mail.prospect.example", REVIEW),
    ("mx.operator.example; spf=pass smtp.mailfrom=ana@prospect.example", SIGNUP),
    ("mx.operator.example; dmarc=fail header.from=prospect.example", REVIEW),
    ("mx.operator.example; dkim=pass header.d=other.example", REVIEW),
    # Written by someone else (the sender itself can write this header): ignored.
    ("mx.attacker.example; dmarc=pass header.from=prospect.example", REVIEW),
    ("mx.operator.example; ;;garbage", REVIEW),
    (None, REVIEW),
])
def test_a_signup_needs_the_relay_to_have_authenticated_its_domain(results, kind) -> None:
    rules = Rules.from_settings(load_settings(signup_authserv_id="mx.operator.example"))
    headers = f"Authentication-Results: {results}\r\n" if results else ""
    found = classify(mail("Quero me cadastrar!", headers=headers), rules)
    assert found.kind == kind, found.reason
    if kind == REVIEW:
        assert "did not authenticate" in found.reason
    assert classify(mail("Quero me cadastrar!", headers=headers), RULES).kind == SIGNUP
