"""Inbound mail for the signup tests: replies to campaigns and bounces, as raw bytes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP


@dataclass
class Sample:
    raw: bytes
    message_id: str


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex}@prospect.example>"


def reply(sender: str, text: str, *, subject: str = "Re: Oferta: sign up for Turbo",
          in_reply_to: str | None = None, content_type: str = "text/plain; charset=utf-8",
          attachment: tuple[str, bytes] | None = None) -> Sample:
    """A person's answer; with `in_reply_to`, a reply to that campaign message."""
    mid = new_message_id()
    threading = (f"In-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\n"
                 if in_reply_to else "")
    head = (f"From: {sender}\r\nTo: Operator <no-reply@operator.example>\r\n"
            f"Subject: {subject}\r\nMessage-ID: {mid}\r\n{threading}"
            "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n")
    if attachment is None:
        return Sample(f"{head}Content-Type: {content_type}\r\n\r\n{text}\r\n".encode(), mid)
    msg = EmailMessage()
    msg.set_content(text)
    name, data = attachment
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    body = msg.as_bytes(policy=SMTP).split(b"\r\n", 1)[1]  # drop its own MIME-Version
    return Sample(head.encode() + body, mid)


def bounce_for(recipient: str, original_message_id: str) -> Sample:
    """A delivery status notification (RFC 3464) for a message we sent."""
    mid = new_message_id().replace("prospect.example", "mx.prospect.example")
    raw = f"""From: Mail Delivery System <MAILER-DAEMON@mx.prospect.example>\r
To: no-reply@operator.example\r
Subject: Undelivered Mail Returned to Sender\r
Message-ID: {mid}\r
Auto-Submitted: auto-replied\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"\r
\r
--dsn-boundary\r
Content-Type: text/plain; charset=us-ascii\r
\r
This is the mail system. Your message could not be delivered.\r
--dsn-boundary\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.prospect.example\r
Arrival-Date: Sun, 22 Nov 2026 10:00:00 +0000\r
\r
Final-Recipient: rfc822; {recipient}\r
Original-Recipient: rfc822; {recipient}\r
Action: failed\r
Status: 5.1.1\r
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: user unknown\r
\r
--dsn-boundary\r
Content-Type: text/rfc822-headers\r
\r
From: Operator <no-reply@operator.example>\r
To: {recipient}\r
Subject: Oferta: sign up for Turbo\r
Message-ID: {original_message_id}\r
\r
--dsn-boundary--\r
"""
    return Sample(raw.encode(), mid)


def complaint_for(recipient: str, original_message_id: str) -> Sample:
    """A feedback report (ARF, RFC 5965): the recipient marked our message as spam."""
    mid = new_message_id().replace("prospect.example", "fbl.prospect.example")
    raw = f"""From: Feedback Loop <fbl@fbl.prospect.example>\r
To: abuse@operator.example\r
Subject: FW: Oferta: sign up for Turbo\r
Message-ID: {mid}\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary="arf-boundary"\r
\r
--arf-boundary\r
Content-Type: text/plain; charset=us-ascii\r
\r
This is an email abuse report for a message you sent.\r
--arf-boundary\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: ProspectFBL/1.0\r
Version: 1\r
Original-Rcpt-To: <{recipient}>\r
\r
--arf-boundary\r
Content-Type: text/rfc822-headers\r
\r
From: Operator <no-reply@operator.example>\r
To: {recipient}\r
Subject: Oferta: sign up for Turbo\r
Message-ID: {original_message_id}\r
\r
--arf-boundary--\r
"""
    return Sample(raw.encode(), mid)
