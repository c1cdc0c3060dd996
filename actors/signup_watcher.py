"""The signup watcher: a detached actor that reads the signup mailbox over IMAP.

Every `imap_poll_s` (or when poked) it asks for the UIDs above the last one handled,
and for each, oldest first: checks the size, fetches it (headers only when too large),
classifies it (`app.signup.inbound_mail`), records and applies it (`app.signup.store`), moves it to
the processed or review folder, then advances its position. The position lives in
MongoDB, so a restarted watcher (`max_restarts=-1`) carries on without missing or
repeating a message. A message whose handling fails three times goes to review, so
one bad message cannot stall the mailbox. IMAPClient is blocking: its calls run in a
thread. Started by the Dashboard only when `COMMS_IMAP_HOST` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import ray

from actors import registry
from actors.campaign_runner import start_runner
from app.core.runtime import Runtime
from app.observability import telemetry
from app.signup import store as signup
from app.signup.imap_inbox import ImapInbox
from app.signup.inbound_mail import REVIEW, Rules, classify, describe_too_large

log = logging.getLogger("operator_comms.signup")
MAX_RUNS = 3


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class SignupWatcher(registry.MadeWithRuntime):
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.settings = settings = runtime.settings
        telemetry.setup(settings, "signup_watcher")
        self.inbox = ImapInbox(settings)
        self.rules = Rules.from_settings(settings)
        self.account = signup.account_key(settings)
        self.started_at = time.time()
        self.polls = self.handled = 0
        self.last_error: str | None = None
        self.wake = asyncio.Event()
        self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def poke(self) -> None:
        """Look at the mailbox now instead of at the next poll."""
        self.wake.set()

    async def status(self) -> dict:
        return {"account": self.account, "pid": os.getpid(), "started_at": self.started_at,
                "connected": self.inbox.client is not None, "polls": self.polls,
                "handled": self.handled, "last_error": self.last_error,
                "poll_s": self.settings.imap_poll_s}

    async def _run(self) -> None:
        db = self.runtime.database()
        while True:
            try:
                await self._poll(db)
                self.last_error = None
            except Exception as exc:  # IMAP or database trouble: reconnect next time
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("signup mailbox %s: %s", self.account, self.last_error)
                await asyncio.to_thread(self.inbox.close)
            self.polls += 1
            try:
                await signup.note_poll(db, self.account, self.last_error)
                if await signup.confirmations_to_send(db):
                    runner = start_runner(signup.CONFIRMATIONS, self.runtime)
                    await runner.poke.remote()
            except Exception as exc:  # the next poll tries again
                log.warning("signup mailbox %s: recording the poll or starting the "
                            "confirmations: %s", self.account, exc)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.imap_poll_s)

    async def _poll(self, db) -> None:
        uidvalidity = self.inbox.uidvalidity
        if self.inbox.client is None or uidvalidity is None:
            uidvalidity = await asyncio.to_thread(self.inbox.connect)
        last = await signup.position(db, self.account, uidvalidity)
        for uid in await asyncio.to_thread(self.inbox.new_uids, last):
            await self._handle(db, uidvalidity, uid)
            self.handled += 1

    async def _handle(self, db, uidvalidity: int, uid: int) -> None:
        limit = self.settings.imap_max_message_bytes
        size = await asyncio.to_thread(self.inbox.size, uid)
        if size is None:  # gone meanwhile (moved by a person)
            await signup.advance(db, self.account, uidvalidity, uid)
            return
        if size > limit:
            header = await asyncio.to_thread(self.inbox.fetch_header, uid)
            inbound = describe_too_large(header, size, limit)
        else:
            raw = await asyncio.to_thread(self.inbox.fetch, uid) or b""
            inbound = await asyncio.to_thread(classify, raw, self.rules)
        record = await signup.begin(db, self.account, uidvalidity, uid, size, inbound)
        folder = record.get("folder")
        if record["state"] == "new":
            try:
                kind, reason, outcome = await signup.apply(db, self.settings, inbound,
                                                           self.runtime.confirm_url)
            except Exception as exc:
                if record["runs"] < MAX_RUNS:
                    raise
                kind, reason, outcome = REVIEW, f"could not be handled: {exc}"[:300], {
                    "action": "review"}
            folder = (self.settings.imap_review_folder if kind == REVIEW
                      else self.settings.imap_processed_folder)
            await signup.handled(db, record["_id"], kind, reason, outcome, folder)
            log.info("signup mailbox: uid %s %s (%s)", uid, kind, reason)
        await asyncio.to_thread(self.inbox.move, uid, folder)
        await signup.moved(db, record["_id"])
        await signup.advance(db, self.account, uidvalidity, uid)


def start_signup_watcher(runtime: Runtime, replace_older: bool = False):
    """The watcher, created if it is not running (idempotent); with `replace_older`,
    replaced if it runs with another runtime (the launcher)."""
    return registry.get_or_create(
        SignupWatcher, registry.SIGNUP_WATCHER, runtime,
        resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None)


def find_signup_watcher():
    return registry.find(registry.SIGNUP_WATCHER)
