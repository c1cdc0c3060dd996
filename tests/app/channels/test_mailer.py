"""Message building, SMTP reply classification, and one connection's transactions."""

from __future__ import annotations

import asyncio
import random

import aiosmtplib
import pytest
from aiosmtplib.email import quote_address

from app.channels.base import SendOutcome
from app.channels.email.mailer import (
    AUTH,
    FAILED,
    RETRY,
    SENT,
    Mail,
    Sender,
    SmtpRelay,
    build_message,
    classify,
    delivery_id_in,
    envelope_address,
    message_id,
    one_line,
)
from embedded.smtp_sink import SmtpSink


def test_crlf_cannot_inject_headers() -> None:
    mail = Mail(to_email="a@example.com", to_name="Eve\r\nBcc: victim@example.com",
                subject="Hello\r\nBcc: victim@example.com", text="body")
    raw = build_message(mail, "Operator <no-reply@op.example>").as_string()
    headers = raw.split("\n\n", 1)[0]
    assert "\nBcc:" not in headers and "\rBcc:" not in headers
    assert "Subject: Hello Bcc: victim@example.com" in headers


def test_one_line_folds_controls_and_runs_of_whitespace() -> None:
    assert one_line("  Ana \t Silva  ") == "Ana Silva"  # printable: the fast path
    assert one_line("Ana\r\nBcc: x\x00y\u2028z\x1c") == "Ana Bcc: x y z"
    assert one_line("Jos\u00e9\u3000Mar\u00eda") == "Jos\u00e9 Mar\u00eda"


def test_message_id_is_deterministic_per_delivery() -> None:
    first = message_id("camp:cust1", "Op <no-reply@op.example>")
    assert first == message_id("camp:cust1", "Op <no-reply@op.example>")
    assert first != message_id("camp:cust2", "Op <no-reply@op.example>")
    assert first.endswith("@op.example>")
    assert delivery_id_in(first) == "camp:cust1"  # a reply or bounce leads back to it
    assert delivery_id_in("<camp:cust1@op.example>") is None
    assert delivery_id_in(first.replace(first[1:4], "aaa")) is None  # check fails
    assert delivery_id_in("<reply-1@prospect.example>") is None
    assert first.startswith("<") and first.endswith("@op.example>")


def test_list_unsubscribe_header_stays_plain() -> None:
    url = "http://localhost:8000/unsubscribe/" + "x" * 120
    mail = Mail(to_email="a@example.com", to_name="A", subject="s", text="t",
                unsubscribe_url=url)
    raw = build_message(mail, "no-reply@op.example").as_string()
    assert f"List-Unsubscribe: <{url}>" in raw
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw


def test_messages_parse_back_to_what_was_meant() -> None:
    """Non-ASCII names and subjects as encoded-words, long lines quoted-printable,
    HTML as an alternative part: the stdlib parser reads back exactly the input."""
    from email import message_from_bytes
    from email.policy import default

    long_line = "y" * 1500
    mail = Mail(to_email="ana@x.example", to_name='João "Zé" Silva, Jr.',
                subject="Olá João — oferta", text=f"Olá João,\nplano Turbo\n{long_line}",
                html="<p>Olá <b>João</b></p>", message_id="<m1@op.example>")
    built = build_message(mail, "Operadora Ção <no-reply@op.example>")
    assert (built.sender, built.recipient) == ("no-reply@op.example", "ana@x.example")
    assert all(len(line) <= 998 for line in built.data.split(b"\r\n"))
    parsed = message_from_bytes(built.data, policy=default)
    assert parsed["To"].addresses[0].display_name == 'João "Zé" Silva, Jr.'
    assert parsed["To"].addresses[0].addr_spec == "ana@x.example"
    assert str(parsed["Subject"]) == "Olá João — oferta"
    assert str(parsed["From"]) == "Operadora Ção <no-reply@op.example>"
    assert parsed["Message-ID"] == "<m1@op.example>"
    # (on the wire every line ends in CRLF; readers normalise that)
    plain_text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert plain_text == f"Olá João,\nplano Turbo\n{long_line}\n"
    html = parsed.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert html == "<p>Olá <b>João</b></p>\n"
    plain = message_from_bytes(build_message(Mail(to_email="a@x.example", to_name="A",
                                                   subject="s", text="ascii only"),
                                              "a@x.example").data, policy=default)
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert plain.get_content().replace("\r\n", "\n") == "ascii only\n"


def test_classification() -> None:
    assert classify(aiosmtplib.SMTPRecipientRefused(451, "later", "a@b")).status == RETRY
    assert classify(aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b")).status == FAILED
    assert classify(aiosmtplib.SMTPAuthenticationError(535, "bad credentials")).status == AUTH
    assert classify(aiosmtplib.SMTPServerDisconnected("gone")).status == RETRY
    assert classify(ConnectionRefusedError()).status == RETRY
    refused = classify(aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(552, "full", "a@b")]))
    assert (refused.status, refused.code) == (FAILED, 552)


def test_envelope_addresses_are_what_aiosmtplib_would_write() -> None:
    """The fast path for plain mailboxes writes what aiosmtplib's own quoting writes,
    for addresses of every shape (random ones from the characters that matter)."""
    shapes = ["a@x.example", "ana.silva+news@mail.op.example", "o'brien@x.example",
              "Ops <ops@operator.example>", '"odd local"@x.example', "a..b@x.example",
              ".a@x.example", "a@x", "a@[127.0.0.1]", "UPPER@X.EXAMPLE", "a@-x.example",
              "x@y.example (comment)", "{t}|~^`#$%&*=?/!@x.example"]
    chars = "ab.@+-_'\"<>()[]:;, \\{}|~^`#$%&*=?/!9Z"
    pick = random.Random(20261203)
    shapes += ["".join(pick.choice(chars) for _ in range(pick.randint(1, 14)))
               for _ in range(3000)]
    for address in shapes:
        try:
            expected = quote_address(address).encode("ascii")
        except ValueError as exc:  # injection, or non-ASCII: refused the same way
            with pytest.raises(type(exc)):
                envelope_address(address)
        else:
            assert envelope_address(address) == expected, address


def test_an_address_cannot_add_parameters_or_commands() -> None:
    """Whatever a recipient's address holds, the command gets one bracketed mailbox:
    no space, CR or LF to start a parameter or a second command."""
    for address in ("a@x.example> NOTIFY=NEVER", "a@x.example\r\nRCPT TO:<b@x.example>",
                    "<a@x.example> SIZE=1", "a@x.example NOTIFY=NEVER"):
        written = envelope_address(address)
        assert written.startswith(b"<") and written.endswith(b">")
        assert not any(ch in written for ch in b" \r\n\t"), written
        assert written.count(b"<") == written.count(b">") == 1
    with pytest.raises(UnicodeEncodeError):  # as aiosmtplib's `rcpt` refuses it
        envelope_address("ação@x.example")


def send_in_turn(host: str, port: int, messages: list) -> tuple[list[SendOutcome], bool]:
    """Each message through one Sender, in turn: the outcomes, and whether the
    connection that carried the first carried them all."""

    async def run() -> tuple[list[SendOutcome], bool]:
        sender = Sender(SmtpRelay(host, port))
        outcomes = [await sender.send(messages[0])]
        first = sender.client
        outcomes += [await sender.send(message) for message in messages[1:]]
        same = sender.client is first
        await sender.close()
        return outcomes, same

    return asyncio.run(run())


def test_one_connection_carries_refusals_and_sends_in_turn() -> None:
    """Through a real aiosmtpd: a 550 fails, a 451 is worth a retry, and the same
    connection then carries the next message; MAIL names the message's exact size."""
    sink = SmtpSink(None)
    host, port = sink.start()
    mail_options: list[list[str]] = []

    async def handle_mail(server, session, envelope, address, options):
        mail_options.append(list(options))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    sink.handler.handle_MAIL = handle_mail
    messages = [build_message(Mail(to_email=to, to_name="Ana", subject="Hi", text="Hello.\n"),
                              "Ops <ops@operator.example>")
                for to in ("a@x.example", "b+reject@x.example", "c+tempfail@x.example",
                           "d@x.example")]

    try:
        outcomes, same_connection = send_in_turn(host, port, messages)
    finally:
        sink.stop()
    assert [(o.status, o.code) for o in outcomes] == [
        (SENT, 250), (FAILED, 550), (RETRY, 451), (SENT, 250)]
    assert same_connection
    assert sink.handler.count_by_recipient() == {"a@x.example": 1, "d@x.example": 1}
    assert mail_options == [[f"SIZE={len(message.data)}"] for message in messages]


def test_a_refused_sender_is_an_outcome_and_the_connection_goes_on() -> None:
    """Through a real aiosmtpd: MAIL refused with 451 is worth a retry, with 550 final;
    the transaction is reset and the same connection sends the next message."""
    sink = SmtpSink(None)
    host, port = sink.start()
    replies = iter(["451 4.3.0 busy", "550 5.7.1 sender blocked", "250 OK"])

    async def handle_mail(server, session, envelope, address, options):
        reply = next(replies)
        if reply.startswith("250"):
            envelope.mail_from = address
        return reply

    sink.handler.handle_MAIL = handle_mail
    message = build_message(Mail(to_email="a@x.example", to_name="Ana", subject="Hi",
                                 text="Hello.\n"), "Ops <ops@operator.example>")

    try:
        outcomes, same_connection = send_in_turn(host, port, [message] * 3)
    finally:
        sink.stop()
    assert [(o.status, o.code) for o in outcomes] == [(RETRY, 451), (FAILED, 550), (SENT, 250)]
    assert same_connection
    assert sink.handler.count_by_recipient() == {"a@x.example": 1}


def test_a_relay_that_refuses_ehlo_is_greeted_with_helo_and_still_sends() -> None:
    sink = SmtpSink(None)
    host, port = sink.start()
    mail_options: list[list[str]] = []

    async def refuse_ehlo(server, session, envelope, hostname, responses):
        return ["502 5.5.1 EHLO not implemented"]

    async def handle_mail(server, session, envelope, address, options):
        mail_options.append(list(options))
        envelope.mail_from = address
        return "250 OK"

    sink.handler.handle_EHLO = refuse_ehlo
    sink.handler.handle_MAIL = handle_mail
    message = build_message(Mail(to_email="a@x.example", to_name="Ana", subject="Hi",
                                 text="Hello.\n"), "ops@operator.example")

    async def send() -> SendOutcome:
        sender = Sender(SmtpRelay(host, port))
        try:
            return await sender.send(message)
        finally:
            await sender.close()

    try:
        outcome = asyncio.run(send())
    finally:
        sink.stop()
    assert (outcome.status, outcome.code) == (SENT, 250)
    assert sink.handler.count_by_recipient() == {"a@x.example": 1}
    assert mail_options == [[]]  # no ESMTP, so no SIZE


def test_a_relay_that_stops_answering_costs_one_timeout_and_a_new_connection() -> None:
    """The sink holds DATA for `+hold` (30 s): past the timeout the message is worth a
    retry, the connection is dropped (no QUIT to a relay that does not answer), and the next message
    goes out on a new one. The held transaction is never accepted."""
    sink = SmtpSink(None)
    host, port = sink.start()
    held, plain = (build_message(Mail(to_email=to, to_name="Ana", subject="Hi", text="Hi.\n"),
                                 "ops@operator.example")
                   for to in ("a+hold@x.example", "b@x.example"))

    async def send_both() -> tuple[SendOutcome, bool, SendOutcome]:
        sender = Sender(SmtpRelay(host, port, timeout_s=0.5))
        first = await sender.send(held)
        dropped = sender.client is None
        second = await sender.send(plain)
        await sender.close()
        return first, dropped, second

    try:
        first, dropped, second = asyncio.run(send_both())
    finally:
        sink.stop()
    assert (first.status, first.code) == (RETRY, None) and "Timeout" in first.error
    assert dropped
    assert (second.status, second.code) == (SENT, 250)
    assert sink.handler.count_by_recipient() == {"b@x.example": 1}
