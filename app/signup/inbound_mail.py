"""Inbound mail: parse a raw message defensively and decide what it asks for.

Pure functions, no I/O. A message is one of:
- `bounce`: a delivery status notification (RFC 3464) about a message we sent;
- `complaint`: a feedback report (ARF, RFC 5965): a recipient marked our message as
  spam at their mailbox provider;
- `unsubscribe` / `signup`: a person's reply whose own text (quoted lines and the
  quoted original left out) holds a configured keyword; unsubscribe wins, so
  "não quero mais" is not read as "quero";
- `review`: anything else, with the reason: no keyword, an automatic reply, broken
  MIME, no usable sender, too large to read.

Nothing here raises on bad input: every header and part is read inside a guard and
what cannot be read becomes a reason for review. Attachments are never decoded or
kept; only their (sanitised) names are listed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.errors import (
    CloseBoundaryNotFoundDefect,
    MultipartInvariantViolationDefect,
    NoBoundaryInMultipartDefect,
    StartBoundaryNotFoundDefect,
)
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Any

import authres

from app.audience.customers import normalise_email
from app.channels.email.mailer import one_line
from app.signup.reply_text import REPLY_PREFIX, TEXT_LIMIT, find_keyword, html_to_text, own_text

SIGNUP, UNSUBSCRIBE, BOUNCE, REVIEW = "signup", "unsubscribe", "bounce", "review"
COMPLAINT = "complaint"
BROKEN_MIME = (StartBoundaryNotFoundDefect, CloseBoundaryNotFoundDefect,
               MultipartInvariantViolationDefect, NoBoundaryInMultipartDefect)
SNIPPET = 300
DSN_FAILED = "failed"  # a bounce report's Action for a message that will not arrive (RFC 3464)
MAX_ATTACHMENTS_LISTED = 20
MESSAGE_ID = re.compile(r"<[^<>\s]{1,500}>")


@dataclass
class BounceInfo:
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str | None  # RFC 3463 code, e.g. 5.1.1
    recipient: str | None
    diagnostic: str | None
    smtp_code: int | None
    original_message_id: str | None


@dataclass
class ComplaintInfo:
    feedback_type: str  # abuse, fraud, virus, other... (RFC 5965)
    recipient: str | None  # Original-Rcpt-To
    original_message_id: str | None


@dataclass
class Inbound:
    kind: str
    reason: str
    sender: str | None = None
    name: str = ""
    subject: str = ""
    message_id: str | None = None
    references: list[str] = field(default_factory=list)  # oldest first, In-Reply-To last
    snippet: str = ""
    attachments: list[str] = field(default_factory=list)
    bounce: BounceInfo | None = None
    complaint: ComplaintInfo | None = None
    keyword: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rules:
    """What the classifier needs from the settings."""

    signup_keywords: tuple[str, ...]
    unsubscribe_keywords: tuple[str, ...]
    own_addresses: tuple[str, ...] = ()
    # The authserv-id our inbound relay writes in Authentication-Results; with it, a
    # signup whose sender's domain it did not authenticate goes to review.
    authserv_id: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        own = getaddresses([settings.mail_from])[0][1].lower()
        return cls(tuple(settings.signup_keywords), tuple(settings.unsubscribe_keywords),
                   (own,) if own else (), settings.signup_authserv_id)


def _header(msg: Message, name: str) -> str:
    """A header as readable text, whatever its encoding; '' when absent or unreadable."""
    try:
        value = msg.get(name)
        return one_line(str(value)) if value is not None else ""
    except Exception:
        try:
            raw = msg.get_all(name) or [""]
            return one_line(str(raw[0]).encode("ascii", "replace").decode())
        except Exception:
            return ""


def _sender(msg: Message) -> tuple[str | None, str, str | None]:
    """(address, display name, problem) of the From header."""
    try:
        header = msg.get("From")
        addresses = list(getattr(header, "addresses", ()))
        pairs = [(a.display_name, a.addr_spec) for a in addresses] if addresses \
            else getaddresses([_header(msg, "From")])
    except Exception:
        pairs = getaddresses([_header(msg, "From")])
    pairs = [(name, addr) for name, addr in pairs if addr]
    if not pairs:
        return None, "", "no sender address"
    if len(pairs) > 1:
        return None, "", "more than one sender address"
    name, raw = pairs[0]
    try:
        address = normalise_email(raw)
    except ValueError as exc:
        return None, "", f"sender address not usable: {exc}"[:200]
    return address, one_line(name)[:200], None


def _message_ids(text: str) -> list[str]:
    return MESSAGE_ID.findall(text or "")[:50]


def _body_text(msg: Message) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html")) if isinstance(
            msg, EmailMessage) else None
    except Exception:
        part = None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except Exception:  # unknown charset, bad transfer encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    content = content[: TEXT_LIMIT * 5]
    if part.get_content_type() == "text/html":
        content = html_to_text(content)
    return content[:TEXT_LIMIT]


def _attachments(msg: Message) -> list[str]:
    names = []
    try:
        for part in msg.walk():
            if part.is_multipart():
                continue
            disposition = (part.get_content_disposition() or "").lower()
            filename = part.get_filename()
            if disposition == "attachment" or filename:
                names.append(one_line(str(filename or part.get_content_type()))[:100])
            if len(names) >= MAX_ATTACHMENTS_LISTED:
                break
    except Exception:
        pass
    return names


def _is_automatic(msg: Message) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    precedence = _header(msg, "Precedence").lower()
    return (bool(auto) and auto != "no") or precedence in ("auto_reply", "bulk", "junk") \
        or bool(_header(msg, "X-Autoreply") or _header(msg, "X-Autorespond"))


def _bounce(msg: Message) -> BounceInfo | None:
    """The first recipient's fields of a delivery status notification, if this is one."""
    status_part = original = None
    try:
        for part in msg.walk():
            kind = part.get_content_type()
            if kind == "message/delivery-status" and status_part is None:
                status_part = part
            elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
                original = part
    except Exception:
        return None
    if status_part is None:
        return None
    fields: dict[str, str] = {}
    try:
        payload = status_part.get_payload()
        blocks: list[Any] = payload if isinstance(payload, list) else []
        for block in blocks[1:] or blocks:  # per-message fields first, then recipients
            for name in ("Action", "Status", "Final-Recipient", "Original-Recipient",
                         "Diagnostic-Code"):
                if name not in fields and block.get(name):
                    fields[name] = one_line(str(block.get(name)))[:300]
    except Exception:
        pass
    original_id = _original_message_id(original)
    diagnostic = fields.get("Diagnostic-Code")
    code = re.search(r"\b([245]\d\d)\b", diagnostic or "")
    recipient = fields.get("Final-Recipient") or fields.get("Original-Recipient")
    return BounceInfo(
        action=(fields.get("Action") or DSN_FAILED).lower(), status=fields.get("Status"),
        recipient=recipient.split(";")[-1].strip() if recipient else None,
        diagnostic=diagnostic, smtp_code=int(code.group(1)) if code else None,
        original_message_id=original_id)


def _original_message_id(original: Message | None) -> str | None:
    """The Message-ID of the original a report attaches (whole, or its headers)."""
    try:
        if original is not None and original.get_content_type() == "message/rfc822":
            attached: Any = original.get_payload()
            inner = attached[0] if isinstance(attached, list) and attached else attached
            return next(iter(_message_ids(_header(inner, "Message-ID"))), None)
        if original is not None:
            headers: Any = original.get_payload(decode=True) or b""
            inner = message_from_bytes(headers, policy=email_policy.default)
            return next(iter(_message_ids(_header(inner, "Message-ID"))), None)
    except Exception:
        return None
    return None


def _address_or_none(raw: str) -> str | None:
    try:
        return normalise_email(raw) if raw else None
    except ValueError:
        return None


def _complaint(msg: Message) -> ComplaintInfo | None:
    """A feedback report's type, recipient and original Message-ID, if this is one."""
    report = original = None
    try:
        for part in msg.walk():
            kind = part.get_content_type()
            if kind == "message/feedback-report" and report is None:
                report = part
            elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
                original = part
        if report is None:
            return None
        payload: Any = report.get_payload()
        fields = payload[0] if isinstance(payload, list) and payload else report
        recipient = one_line(str(fields.get("Original-Rcpt-To") or ""))[:300]
        return ComplaintInfo(
            feedback_type=one_line(str(fields.get("Feedback-Type") or "other"))[:40].lower(),
            recipient=_address_or_none(recipient.strip("<> ")),
            original_message_id=_original_message_id(original))
    except Exception:
        return None


def parse_headers(raw: bytes) -> Message:
    return message_from_bytes(raw, policy=email_policy.default)


def describe_too_large(header_bytes: bytes, size: int, limit: int) -> Inbound:
    """A message over the size limit: its headers only, for the review queue."""
    msg = parse_headers(header_bytes)
    sender, name, _ = _sender(msg)
    return Inbound(REVIEW, f"too large to read: {size} bytes (limit {limit})", sender=sender,
                   name=name, subject=_header(msg, "Subject")[:300],
                   message_id=next(iter(_message_ids(_header(msg, "Message-ID"))), None))


def classify(raw: bytes, rules: Rules) -> Inbound:
    """What this message is; never raises."""
    try:
        msg = message_from_bytes(raw, policy=email_policy.default)
    except Exception as exc:  # the parser is lenient; this is only a last guard
        return Inbound(REVIEW, f"unreadable message: {type(exc).__name__}")
    subject = _header(msg, "Subject")[:300]
    in_reply_to = _message_ids(_header(msg, "In-Reply-To"))
    references = [ref for ref in _message_ids(_header(msg, "References"))
                  if ref not in in_reply_to] + in_reply_to
    sender, name, sender_problem = _sender(msg)
    found = Inbound(REVIEW, "", sender=sender, name=name, subject=subject,
                    message_id=next(iter(_message_ids(_header(msg, "Message-ID"))), None),
                    references=references, attachments=_attachments(msg))

    complaint = _complaint(msg)
    if complaint is not None:
        found.kind, found.complaint = COMPLAINT, complaint
        found.reason = f"feedback report: {complaint.feedback_type}"
        return found
    bounce = _bounce(msg)
    if bounce is not None:
        found.kind, found.bounce = BOUNCE, bounce
        found.reason = f"delivery status: {bounce.action} {bounce.status or ''}".strip()
        return found
    defects = [type(d).__name__ for d in _all_defects(msg) if isinstance(d, BROKEN_MIME)]
    if defects:
        found.reason = "broken MIME: " + ", ".join(sorted(set(defects)))
        return found
    body = own_text(_body_text(msg))
    found.snippet = one_line(body)[:SNIPPET]
    if _is_automatic(msg):
        found.reason = "automatic reply"
        return found
    if sender_problem:
        found.reason = sender_problem
        return found
    if sender in rules.own_addresses:
        found.reason = "sent from our own address"
        return found
    # The subject of a reply is the campaign's own: only a fresh message's subject counts.
    is_reply = bool(references) or bool(REPLY_PREFIX.match(subject))
    text = body if is_reply else f"{subject}\n{body}"
    for kind, keywords in ((UNSUBSCRIBE, rules.unsubscribe_keywords),
                           (SIGNUP, rules.signup_keywords)):
        keyword = find_keyword(text, keywords)
        if keyword:
            found.kind, found.keyword, found.reason = kind, keyword, f"keyword {keyword!r}"
            if (kind == SIGNUP and rules.authserv_id and sender
                    and not authenticated(msg, sender, rules.authserv_id)):
                found.kind = REVIEW
                found.reason = (f"signup from a domain {rules.authserv_id} did not "
                                "authenticate (DMARC, DKIM or SPF)")
            return found
    found.reason = "no signup or unsubscribe keyword"
    return found


def authenticated(msg: Message, sender: str, authserv_id: str) -> bool:
    """Whether our own relay (`authserv_id`) says the sender's domain is authentic: DMARC
    passed for it, or DKIM or SPF passed for it or a domain above it (relaxed
    alignment). Authentication-Results from any other server are ignored: a sender can
    write whatever it likes there."""
    domain = sender.rsplit("@", 1)[-1].lower()
    for value in msg.get_all("Authentication-Results") or []:
        try:
            header = authres.AuthenticationResultsHeader.parse(
                f"Authentication-Results: {value}")
        except Exception:  # authres raises its own SyntaxError on a malformed header
            continue
        if (header.authserv_id or "").lower() != authserv_id.lower():
            continue
        for result in header.results:
            if result.result != "pass":
                continue
            found = {(p.type, p.name): (p.value or "").lower() for p in result.properties}
            if result.method == "dmarc" and found.get(("header", "from")) == domain:
                return True
            if result.method == "dkim" and _aligned(found.get(("header", "d")), domain):
                return True
            if result.method == "spf" and _aligned(
                    found.get(("smtp", "mailfrom"), "").rsplit("@", 1)[-1], domain):
                return True
    return False


def _aligned(authenticated_domain: str | None, domain: str) -> bool:
    return authenticated_domain is not None and authenticated_domain != "" and (
        domain == authenticated_domain or domain.endswith("." + authenticated_domain))


def _all_defects(msg: Message) -> list:
    defects: list[Any] = []
    try:
        for part in msg.walk():
            defects.extend(getattr(part, "defects", []))
    except Exception:  # a structure the walk itself cannot follow
        defects.append(MultipartInvariantViolationDefect())
    return defects
