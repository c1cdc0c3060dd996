"""The embedded SMTP sink: an aiosmtpd server on 127.0.0.1 that keeps every message.

The default when `COMMS_SMTP_HOST` is unset. A real server on a real socket: the
application sends to it through aiosmtplib exactly as it would to a relay. It stores
every message in a Maildir under `<data_dir>/outbox` and keeps an index for the
dashboard's outbox view. Like Amazon SES's mailbox simulator, it answers for
simulator addresses: a local part with `+reject` gets 550, one with `+tempfail` gets
451 the first time (`+tempfail3`: the first three times), and one with `+hold` is held
in DATA (up to HOLD_S) the first time, and dropped if the client goes away meanwhile,
so tests can kill a sender at a known point. With `throttle_per_s`, it answers
"421 4.7.0 ... slow down" to recipients beyond that rate, as a relay that throttles.
"""

from __future__ import annotations

import asyncio
import mailbox
import re
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as DEFAULT_POLICY
from email.utils import getaddresses
from pathlib import Path

from aiosmtpd.controller import Controller

from app.core.ratelimit import TokenBucket
from embedded.processes import free_port

OUTBOX_INDEX_LIMIT = 200_000
HOLD_S = 30.0
_TEMPFAIL = re.compile(r"\+tempfail(\d*)")


@dataclass
class OutboxEntry:
    key: str
    to: list[str]
    subject: str
    message_id: str
    received_at: str
    sender: str = ""


class SinkHandler:
    """aiosmtpd handler: simulate relay answers, store and index what is accepted."""

    def __init__(self, maildir: Path | None, delay_s: float = 0.0,
                 throttle_per_s: float | None = None):
        self.maildir = mailbox.Maildir(maildir, create=True) if maildir else None
        self.delay_s = delay_s
        self.throttle = TokenBucket(throttle_per_s) if throttle_per_s else None
        self.throttled = 0
        self.index: deque[OutboxEntry] = deque(maxlen=OUTBOX_INDEX_LIMIT)
        self.total = 0
        self._tempfailed: Counter[str] = Counter()
        self._held: set[str] = set()
        self.holding: set[str] = set()
        self._lock = threading.Lock()
        if self.maildir is not None:
            self._load_index()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        local = address.split("@", 1)[0].lower()
        if self.throttle is not None and self.throttle.take() > 0:
            self.throttled += 1
            return "421 4.7.0 Too many messages, slow down"
        if "+reject" in local:
            return "550 5.1.1 Simulated permanent rejection"
        if "+tempfail" in local:
            times = _TEMPFAIL.search(local)
            with self._lock:
                self._tempfailed[address] += 1
                failing = self._tempfailed[address] <= int(times.group(1) or 1)
            if failing:
                return "451 4.3.0 Simulated temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        hold = [a for a in envelope.rcpt_tos if "+hold" in a.split("@")[0].lower()
                and a not in self._held]
        if hold and not await self._hold(server, hold):
            return "421 4.4.2 Client went away while held"
        content = envelope.original_content or envelope.content
        key = await asyncio.to_thread(self._store, content) if self.maildir is not None else ""
        headers = BytesHeaderParser(policy=DEFAULT_POLICY).parsebytes(content)
        entry = OutboxEntry(
            key=key,
            to=list(envelope.rcpt_tos),
            subject=str(headers.get("Subject", "")),
            message_id=str(headers.get("Message-ID", "")).strip(),
            received_at=datetime.now(UTC).isoformat(),
            sender=envelope.mail_from or "",
        )
        with self._lock:
            self.index.append(entry)
            self.total += 1
        return "250 2.0.0 Message accepted"

    async def _hold(self, server, addresses: list[str]) -> bool:
        """Hold the transaction; False when the client disconnected meanwhile."""
        with self._lock:
            self._held.update(addresses)
            self.holding.update(addresses)
        try:
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:
                if server.transport is None or server.transport.is_closing():
                    return False
                await asyncio.sleep(0.05)
            return True
        finally:
            with self._lock:
                self.holding.difference_update(addresses)

    def _store(self, content: bytes) -> str:
        assert self.maildir is not None
        return self.maildir.add(content)

    def _load_index(self) -> None:
        assert self.maildir is not None
        entries = []
        for key in self.maildir.iterkeys():
            path = Path(self.maildir._path) / self.maildir._lookup(key)  # type: ignore[attr-defined]
            with open(path, "rb") as handle:
                headers = BytesHeaderParser(policy=DEFAULT_POLICY).parse(handle)
            entries.append(
                OutboxEntry(
                    key=key,
                    to=[addr for _, addr in getaddresses(
                        [str(value) for value in headers.get_all("To", [])])],
                    subject=str(headers.get("Subject", "")),
                    message_id=str(headers.get("Message-ID", "")).strip(),
                    received_at=datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(),
                )
            )
        entries.sort(key=lambda entry: entry.received_at)
        self.index.extend(entries)
        self.total = len(entries)

    # Queries for the dashboard and tests.
    def list(self, *, to: str | None = None, limit: int = 100) -> dict:
        """Newest first; `to` matches any part of a recipient address, in any case."""
        with self._lock:
            snapshot = list(self.index)
            total = self.total
        wanted = to.lower() if to else None
        found, matched = [], 0
        for entry in reversed(snapshot):
            if wanted is None or any(wanted in addr.lower() for addr in entry.to):
                matched += 1
                if len(found) < limit:
                    found.append(asdict(entry))
        return {"total": total, "matched": matched, "messages": found}

    def count_by_recipient(self, domain: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            snapshot = list(self.index)
        for entry in snapshot:
            for addr in entry.to:
                if domain is None or addr.lower().endswith("@" + domain.lower()):
                    counts[addr] = counts.get(addr, 0) + 1
        return counts

    def distinct_by_recipient(self, domain: str | None = None) -> dict[str, int]:
        """Messages per recipient counted by Message-ID, as a mailbox that deduplicates
        (Gmail does) shows them."""
        seen: dict[str, set[str]] = {}
        with self._lock:
            snapshot = list(self.index)
        for entry in snapshot:
            for addr in entry.to:
                if domain is None or addr.lower().endswith("@" + domain.lower()):
                    seen.setdefault(addr, set()).add(entry.message_id)
        return {addr: len(ids) for addr, ids in seen.items()}

    def raw(self, key: str) -> bytes | None:
        if self.maildir is None:
            return None
        try:
            return self.maildir.get_bytes(key)
        except KeyError:
            return None


class SmtpSink:
    """An aiosmtpd server on a free loopback port, running in its own thread."""

    def __init__(self, maildir: Path | None, host: str = "127.0.0.1", port: int | None = None,
                 delay_s: float = 0.0):
        self.handler = SinkHandler(maildir, delay_s=delay_s)
        self.host = host
        self.port = port or free_port(host)
        self.controller = Controller(self.handler, hostname=host, port=self.port,
                                     data_size_limit=10 * 1024 * 1024)

    def start(self) -> tuple[str, int]:
        self.controller.start()
        return self.host, self.port

    def stop(self) -> None:
        self.controller.stop()
