"""Mail building and SMTP: headers that cannot be injected, deterministic Message-IDs,
aiosmtplib connections pooled per process and relay, SMTP replies classified into outcomes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

import aiosmtplib
from aiosmtplib.email import quote_address

from app.channels.base import SendOutcome
from app.core.config import FurtherRelay, Settings
from app.core.endpoints import Endpoints
from app.core.statuses import AttemptOutcome

SENT, RETRY, FAILED, AUTH = AttemptOutcome


def one_line(value: str) -> str:
    """Header text with CR, LF and other control characters folded to spaces."""
    if not value.isprintable():  # rare: the character-by-character pass only then
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(value.split())


def message_id(delivery_id: str, mail_from: str) -> str:
    """The same delivery always gets the same Message-ID, so receivers can deduplicate.

    It carries the delivery id (base32, so any id is a valid dot-atom) and a check, so a
    reply or bounce naming it leads back to the delivery by `_id`, with no index on
    Message-IDs to maintain on every send.
    """
    domain = _domain_of(mail_from)
    encoded = base64.b32encode(delivery_id.encode()).decode().rstrip("=").lower()
    return f"<{encoded}.{_check(delivery_id)}@{domain}>"


@functools.lru_cache(maxsize=64)
def _domain_of(mail_from: str) -> str:
    """The sender's domain (parsed once per sender: it was half a Message-ID's cost)."""
    return parseaddr(mail_from)[1].rpartition("@")[2] or "operator-comms.local"


def delivery_id_in(message_id_text: str) -> str | None:
    """The delivery id a Message-ID of ours carries; None for anyone else's."""
    local = message_id_text.strip().removeprefix("<").partition("@")[0]
    encoded, _, check = local.rpartition(".")
    if not encoded or len(encoded) > 400:
        return None
    try:
        padded = encoded.upper() + "=" * (-len(encoded) % 8)
        delivery_id = base64.b32decode(padded).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return delivery_id if check == _check(delivery_id) else None


def _check(delivery_id: str) -> str:
    return hashlib.sha256(delivery_id.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Mail:
    to_email: str
    to_name: str
    subject: str
    text: str
    html: str | None = None
    message_id: str | None = None
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SMTP: the envelope and the RFC 5322 bytes."""

    sender: str
    recipient: str
    data: bytes

    def as_string(self) -> str:
        return self.data.decode("utf-8").replace("\r\n", "\n")


# Writing the bytes directly: the stdlib's EmailMessage with its header registry was
# the largest part of a send's CPU (`benchmarks.send_path_cpu` compares). The rules
# are the same: every header value is one line (CR/LF and controls folded to spaces),
# non-ASCII display names and subjects are RFC 2047 encoded-words, List-Unsubscribe
# stays plain, bodies are 7bit or 8bit UTF-8, quoted-printable when a line is too long.
MAX_LINE = 998


@functools.lru_cache(maxsize=64)
def _from_header(mail_from: str) -> tuple[str, str]:
    name, addr = parseaddr(mail_from)
    return addr, formataddr((one_line(name), one_line(addr)), charset="utf-8")


@functools.lru_cache(maxsize=2)
def _date(second: int) -> str:
    """The Date header of a second (it has no finer part), formatted once a second."""
    return formatdate(second, usegmt=True)


def _header_text(value: str) -> str:
    text = one_line(value)
    if text.isascii() and len(text) < 900:
        return text
    return Header(text, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _body_part(text: str, subtype: str) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    if all(len(line.encode("utf-8")) <= MAX_LINE for line in lines):
        cte = "7bit" if text.isascii() else "8bit"
        data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    else:
        cte = "quoted-printable"
        data = binascii.b2a_qp(("\n".join(lines) + "\n").encode("utf-8"), istext=True)
        data = data.replace(b"\n", b"\r\n")
    headers = (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
               f"Content-Transfer-Encoding: {cte}\r\n\r\n")
    return headers.encode("ascii") + data


def build_message(mail: Mail, mail_from: str) -> OutgoingMessage:
    sender, from_header = _from_header(mail_from)
    recipient = one_line(mail.to_email)
    headers = [f"From: {from_header}",
               f"To: {formataddr((one_line(mail.to_name), recipient), charset='utf-8')}",
               f"Subject: {_header_text(mail.subject)}",
               f"Date: {_date(int(time.time()))}"]
    if mail.message_id:
        headers.append(f"Message-ID: {one_line(mail.message_id)}")
    if mail.unsubscribe_url:
        headers.append(f"List-Unsubscribe: <{one_line(mail.unsubscribe_url)}>")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    headers.append("MIME-Version: 1.0")
    head = ("\r\n".join(headers) + "\r\n").encode("utf-8")
    if not mail.html:
        return OutgoingMessage(sender, recipient, head + _body_part(mail.text, "plain"))
    boundary = f"=_{secrets.token_hex(12)}"
    # The CRLF before each delimiter belongs to the delimiter, not to the part.
    parts = [b"--" + boundary.encode() + b"\r\n" + _body_part(mail.text, "plain") + b"\r\n",
             b"--" + boundary.encode() + b"\r\n" + _body_part(mail.html, "html") + b"\r\n"]
    body = (f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            ).encode("ascii") + b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return OutgoingMessage(sender, recipient, head + body)


# An RFC 5321 dot-atom mailbox in ASCII: what aiosmtplib's `quote_address` (parseaddr,
# then a check for characters that could inject into the command line) returns
# unchanged, bracketed. Anything else goes through it.
_PLAIN_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_MAILBOX = re.compile(
    rf"{_PLAIN_ATOM}(?:\.{_PLAIN_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


@functools.lru_cache(maxsize=64)
def _quoted(address: str) -> bytes:
    return quote_address(address).encode("ascii")


def envelope_address(address: str) -> bytes:
    """`<address>` for MAIL FROM or RCPT TO, as aiosmtplib's `mail` and `rcpt` write it:
    a plain mailbox (a campaign's recipients) is bracketed as is; the sender, and any
    other form, go through aiosmtplib's parser once (cached), which folds what could
    inject into the command, or raises ValueError; non-ASCII raises UnicodeEncodeError,
    as the ASCII command line of `mail` and `rcpt` does."""
    if _PLAIN_MAILBOX.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return _quoted(address)


def classify(exc: BaseException) -> SendOutcome:
    """4xx and connection trouble are worth a retry; 5xx is final; bad login stops all."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return SendOutcome(AUTH, exc.code, one_line(exc.message)[:300])
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return classify(exc.recipients[0])
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        status = RETRY if 400 <= exc.code < 500 else FAILED
        return SendOutcome(status, exc.code, one_line(exc.message)[:300])
    return SendOutcome(RETRY, None, one_line(f"{type(exc).__name__}: {exc}")[:300])


@dataclass(frozen=True)
class SmtpRelay:
    """Where and how to reach one relay (a route's target; the password never printed)."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    starttls: bool = False
    timeout_s: float = 30.0


def main_relay(settings: Settings, endpoints: Endpoints) -> SmtpRelay:
    """The relay of `COMMS_SMTP_*` (or the embedded sink the launcher started)."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpRelay(endpoints.smtp_host, endpoints.smtp_port, settings.smtp_user, password,
                     settings.smtp_tls, settings.smtp_starttls, settings.smtp_timeout_s)


def further_relays(settings: Settings) -> list[tuple[FurtherRelay, SmtpRelay]]:
    """The further relays of `COMMS_SMTP_ROUTES`, with how to reach each."""
    return [(route, SmtpRelay(
        route.host, route.port, route.user,
        route.password.get_secret_value() if route.password else None, route.tls,
        route.starttls, settings.smtp_timeout_s)) for route in settings.smtp_routes]


def smtp_client(relay: SmtpRelay) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(hostname=relay.host, port=relay.port, username=relay.user,
                           password=relay.password, use_tls=relay.tls,
                           start_tls=relay.starttls, timeout=relay.timeout_s)


class Sender:
    """One SMTP connection, opened on first use and reopened after a drop.

    A connection that sat idle in the pool is checked with NOOP before it carries a
    message, so a relay that dropped it meanwhile costs a reconnect, not a retry.
    """

    IDLE_CHECK_S = 5.0

    def __init__(self, relay: SmtpRelay):
        self.relay = relay
        self.client: aiosmtplib.SMTP | None = None
        self.last_used = time.monotonic()

    async def send(self, message: OutgoingMessage) -> SendOutcome:
        try:
            await self._ready()
            await self._transaction(message)
            self.last_used = time.monotonic()
            return SendOutcome(SENT, 250)
        except Exception as exc:  # every SMTP or socket failure becomes an outcome
            outcome = classify(exc)
            if outcome.code is None or outcome.status == AUTH:
                await self.close()  # the connection is unusable; the next send reconnects
            else:
                await self._reset()
            return outcome

    async def _transaction(self, message: OutgoingMessage) -> None:
        """MAIL, RCPT, DATA: what aiosmtplib's `sendmail` does for one recipient, less
        its parsing of each address on every command (`envelope_address`; a visible
        share of a send worker's CPU in its profile) and its recount of the size (the
        bytes are CRLF already). A refusal raises as aiosmtplib's `mail` and `rcpt` do;
        `send` then resets the transaction."""
        client = self.client
        assert client is not None  # (connected by `send` first)
        options = ([f"SIZE={len(message.data)}".encode()]
                   if client.supports_extension("size") else [])
        reply = await client.execute_command(
            b"MAIL", b"FROM:" + envelope_address(message.sender), *options)
        if reply.code != 250:
            raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, message.sender)
        reply = await client.execute_command(
            b"RCPT", b"TO:" + envelope_address(message.recipient))
        if reply.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message,
                                                  message.recipient)
        await client.data(message.data)

    async def _ready(self) -> None:
        if self.client is not None and self.client.is_connected:
            if time.monotonic() - self.last_used < self.IDLE_CHECK_S:
                return
            try:
                await self.client.noop()
                return
            except Exception:
                await self.close()
        self.client = smtp_client(self.relay)
        await self.client.connect()
        if self.client.is_ehlo_or_helo_needed:  # no login or STARTTLS said EHLO yet:
            try:  # the relay's extensions (SIZE) are known from here
                await self.client.ehlo()
            except aiosmtplib.SMTPHeloError:  # a relay without ESMTP, as sendmail allowed
                await self.client.helo()

    async def _reset(self) -> None:
        # After a refused recipient the transaction must be reset before the next one.
        try:
            if self.client is not None and self.client.is_connected:
                await self.client.rset()
        except Exception:
            await self.close()

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except Exception:
                client.close()


class SenderPool:
    """SMTP connections kept across batches by a worker process, per relay and login.

    Ray reuses worker processes, so a send task takes connections a previous batch
    left open instead of paying connect, EHLO and login again. The pool belongs to one
    event loop (the worker's), like the connections in it.
    """

    MAX_IDLE = 64

    def __init__(self) -> None:
        self.idle: dict[SmtpRelay, list[Sender]] = {}

    async def take(self, relay: SmtpRelay, n: int) -> list[Sender]:
        idle = self.idle.setdefault(relay, [])
        taken = [idle.pop() for _ in range(min(n, len(idle)))]
        return taken + [Sender(relay) for _ in range(n - len(taken))]

    def give(self, senders: list[Sender]) -> None:
        for sender in senders:
            idle = self.idle.setdefault(sender.relay, [])
            if sender.client is not None and sender.client.is_connected and (
                    len(idle) < self.MAX_IDLE):
                idle.append(sender)
            else:
                asyncio.get_running_loop().create_task(sender.close())


_pools: dict[int, SenderPool] = {}


def sender_pool() -> SenderPool:
    """This event loop's pool (one per worker process in practice)."""
    loop_id = id(asyncio.get_running_loop())
    pool = _pools.get(loop_id)
    if pool is None:
        pool = _pools[loop_id] = SenderPool()
    return pool


async def smtp_ping(settings: Settings, endpoints: Endpoints) -> None:
    """Connect, say NOOP and leave; raises when the relay cannot be reached."""
    client = smtp_client(main_relay(settings, endpoints))
    client.timeout = min(settings.smtp_timeout_s, 5.0)
    await client.connect()
    try:
        await client.noop()
    finally:
        await client.quit()
