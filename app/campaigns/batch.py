"""What crosses the Ray boundary for one batch: the job the runner hands a send task
(`BatchJob`), and what the task hands back (`BatchSummary`, with its `BatchClose`). A
batch's close (what is left of it, at which attempt) travels in the summary and is
written by the runner with the round's counters (`app.campaigns.rounds`), the one way a
batch is closed.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.campaigns.caps import Cap
from app.campaigns.fallback import Confirm
from app.channels.base import Channel
from app.channels.registry import channel_named
from app.core.config import Settings
from app.core.rollups import Increments, key_safe
from app.core.runtime import Runtime
from app.core.statuses import FINAL_DELIVERY, DeliveryStatus
from app.core.windows import Window


@dataclass
class BatchJob:
    """One batch as the runner hands it to a task: its recipients and its claim."""

    campaign_id: str
    batch_id: str
    claim: str
    attempt: int
    customer_ids: list[str]
    runtime: Runtime
    templates: dict[str, str | None]
    connections: int
    # Created by the runner for this claim, and submitted without Ray retries (a worker
    # that dies fails the task; the runner claims the batch anew): nothing of it can be
    # recorded yet, so the task reads no records. Any other run reads them first.
    fresh: bool = False
    # What is left of the claim's lease when the runner hands the job over, by the
    # runner's monotonic clock (the lease's end is the database's; see `BatchRun`).
    # None: the task renews before it sends.
    lease_left_s: float | None = None
    # The recipients' documents as the runner read them with the audience page, and
    # when; the task then only asks who unsubscribed since. None: the task reads them.
    customers: list[dict] | None = None
    customers_read_at: datetime | None = None
    limits: dict[str, float] = field(default_factory=dict)
    limiter: Any = None  # the rate limiter's handle, used by the task's `reserve`
    # The campaign runner's handle: told when every message of the batch is taken (the
    # last ones on the wire), so the next batch's dispatch overlaps them.
    runner: Any = None
    trace: dict[str, str] | None = None  # the runner's span: the batch's goes under it
    tracking: dict[str, bool] | None = None  # opens, clicks (app.channels.email.tracking)
    # The endpoints that want delivery.status events, as the runner knows them (told of
    # every change through the API); None: this process reads them (app.integrations.webhooks).
    listeners: list[str] | None = None
    channel: str = "email"  # the campaign's channel (`app.channels.registry`)
    cap: Cap | None = None  # the frequency cap its sends keep to (`app.campaigns.caps`)
    windows: tuple[Window, ...] = ()  # send windows (`app.campaigns.quiet_hours`)
    # The channels to try, in order, for a recipient `channel` cannot reach, each with
    # its send windows.
    fallback: tuple[tuple[str, tuple[Window, ...]], ...] = ()
    customers_choice: bool = False  # a customer's `preferred_channel` goes first
    # How long a channel of the rule that is not the recipient's last has to confirm a
    # message (`app.campaigns.fallback`); None: only who it cannot reach, or who it
    # refuses at once, goes by the next one.
    confirm: Confirm | None = None
    channel_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by channel

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def sends_by(self) -> Channel:
        return channel_named(self.channel)


class BatchControl:
    """A stop request that another thread (the task's, on `ray.cancel`) can make."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.requested = False

    def bind(self) -> asyncio.Event:
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        if self.requested:
            self.event.set()
        return self.event

    def request_stop(self) -> None:
        self.requested = True
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)


def worker_identity(node_id: str | None = None) -> dict[str, Any]:
    node = (node_id or socket.gethostname())[:12]
    return {"node": node, "worker": f"{node[:8]}-{os.getpid()}", "worker_pid": os.getpid(),
            "host": socket.gethostname()}




@dataclass
class BatchClose:
    """How a run leaves its batch: the recipients left (none: done), at which attempt,
    due after `backoff_s`; written only under the run's `claim`."""

    batch: str
    claim: str
    remaining: list[str]
    attempt: int
    backoff_s: float = 0.0


@dataclass
class BatchSummary:
    """What one run of a batch did, for the runner: its counts, roll-up increments and
    close, where it ran, and why it stopped early if it did."""

    batch: str
    channel: str
    node: str
    worker: str
    worker_pid: int
    host: str
    claimed: int = 0  # recipients this run took to send
    counts: dict[str, int] = field(default_factory=dict)  # by final status
    retries: int = 0  # outcomes that wait for another attempt
    latencies: list[float] = field(default_factory=list)  # ms, of the sends
    released: int = 0  # recipients left unsent (stopped)
    waiting: int = 0  # recipients outside their send window, due when it opens
    deferred: int = 0  # sends put back after a "slow down" answer (no attempt counted)
    rerouted: int = 0  # sends put back because their route failed and another took over
    due_in_s: float | None = None  # when the batch is due again (None: not)
    stopped: str | None = None  # lost, lease lost, lease lapsed, auth, pause...
    close: BatchClose | None = None
    rollups: Increments | None = None  # not yet written to the roll-ups
    webhooks: int = 0  # events stored for webhook endpoints
    counted: bool = False  # its counts are written already (a cancelled task's)

    @classmethod
    def started(cls, job: BatchJob, identity: dict[str, Any]) -> BatchSummary:
        return cls(batch=job.batch_id, channel=job.channel, node=identity["node"],
                   worker=identity["worker"], worker_pid=identity["worker_pid"],
                   host=identity["host"])

    def increments(self) -> dict[str, int]:
        """The campaign counters' `$inc` for this run's outcomes."""
        inc: dict[str, int] = {f"counts.{status}": n for status, n in self.counts.items()
                               if status in FINAL_DELIVERY and n}
        if self.retries:
            inc["retries"] = self.retries
        sent = self.counts.get(DeliveryStatus.SENT, 0)
        if sent:
            inc[f"by_node.{key_safe(self.node)}"] = sent
            inc[f"by_worker.{key_safe(self.worker)}"] = sent
        return inc
