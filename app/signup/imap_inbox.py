"""The IMAP side of the signup watcher: one IMAPClient connection to one mailbox.

Blocking calls (IMAPClient is synchronous); the watcher runs them in a thread. Messages
are fetched with BODY.PEEK (never marked seen), one at a time and only after their
size is known, and are moved out of the mailbox (MOVE, or COPY + delete where MOVE
is missing) once handled, so the mailbox holds only what is still to do.
"""

from __future__ import annotations

import logging
import ssl

from imapclient import IMAPClient

from app.core.config import Settings

log = logging.getLogger("operator_comms.imap")

HEADER_BYTES = 64 * 1024  # of a message too large to read, only this much of its header


class ImapInbox:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.client: IMAPClient | None = None
        self.uidvalidity: int | None = None

    @property
    def account(self) -> str:
        s = self.settings
        return f"{s.imap_user}@{s.imap_host}:{s.imap_port}/{s.imap_mailbox}"

    def connect(self) -> int:
        """Log in, create the two folders if missing, select the mailbox; its UIDVALIDITY."""
        s = self.settings
        assert s.imap_host and s.imap_user and s.imap_password
        self.close()
        client = IMAPClient(s.imap_host, port=s.imap_port, ssl=s.imap_tls,
                            ssl_context=ssl.create_default_context() if s.imap_tls else None,
                            timeout=s.imap_timeout_s)
        try:
            client.login(s.imap_user, s.imap_password.get_secret_value())
            for folder in (s.imap_processed_folder, s.imap_review_folder):
                if not client.folder_exists(folder):
                    client.create_folder(folder)
            selected = client.select_folder(s.imap_mailbox)
        except Exception:
            _quietly_close(client)
            raise
        self.client = client
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        return self.uidvalidity

    def new_uids(self, after_uid: int) -> list[int]:
        """UIDs above `after_uid`, oldest first (`n:*` also names the last message)."""
        client = self._client()
        client.noop()  # let the server tell us about new arrivals
        return sorted(uid for uid in client.search(["UID", f"{after_uid + 1}:*"])
                      if uid > after_uid)

    def size(self, uid: int) -> int | None:
        found = self._client().fetch([uid], ["RFC822.SIZE"]).get(uid)
        return int(found[b"RFC822.SIZE"]) if found else None

    def fetch(self, uid: int) -> bytes | None:
        found = self._client().fetch([uid], ["BODY.PEEK[]"]).get(uid)
        return found.get(b"BODY[]") if found else None

    def fetch_header(self, uid: int) -> bytes:
        found = self._client().fetch([uid], [f"BODY.PEEK[HEADER]<0.{HEADER_BYTES}>"]).get(uid)
        if not found:
            return b""
        return next((value for key, value in found.items()
                     if key.startswith(b"BODY[HEADER]") and isinstance(value, bytes)), b"")

    def move(self, uid: int, folder: str) -> None:
        client = self._client()
        if client.has_capability("MOVE"):
            client.move([uid], folder)
        else:
            client.copy([uid], folder)
            client.delete_messages([uid])
            client.uid_expunge([uid]) if client.has_capability("UIDPLUS") else client.expunge()

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            _quietly_close(client)

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise ConnectionError("not connected")
        return self.client


def _quietly_close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception as exc:  # the connection is already broken: close the socket
        log.debug("IMAP logout failed (%s); shutting the socket", exc)
        try:
            client.shutdown()
        except OSError as closing:
            log.debug("IMAP socket shutdown: %s", closing)
