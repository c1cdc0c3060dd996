"""The marketing actor: hears refusals, waits a cooldown, fires counter-offers.

Detached, named `marketing`, async, restarted on failure; created idempotently by
the application. Its timers are one heap served by one sleeper, not a coroutine per
offer, so it holds 100,000 pending offers in a few MB. MongoDB is the record: on
(re)start it reloads every offer still to fire, and overdue ones fire at once; the
atomic claim in `app.marketing` makes sure none fires twice. At fire time the offer
goes to the customer's inbox, rings the chat hub for an open WebSocket, and, when
the customer has an email, is mailed through the same SMTP path as campaigns.

Teardown: it ends with the Ray cluster, or `ray.kill(ray.get_actor("marketing",
namespace="operator-comms"))`; scheduled offers wait in MongoDB for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time

import ray

from actors.chat_hub import chat_hub
from app import marketing
from app.config import Endpoints, Settings
from app.db import database
from app.mailer import Mail, Sender, build_message, message_id
from app.tokens import sign_customer_id

log = logging.getLogger("operator_comms.marketing")
NAMESPACE = "operator-comms"
ACTOR_NAME = "marketing"
FIRING_CONCURRENCY = 32
EXPIRE_EVERY_S = 30.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
class MarketingActor:
    def __init__(self, settings: Settings, endpoints: Endpoints, unsubscribe_secret: str):
        self.settings = settings
        self.endpoints = endpoints
        self.unsubscribe_secret = unsubscribe_secret
        self.heap: list[tuple[float, str]] = []
        self.wake = asyncio.Event()
        self.firing = asyncio.Semaphore(FIRING_CONCURRENCY)
        self.loaded = asyncio.Event()
        self.lateness_ms: list[float] = []
        self.hub = chat_hub(settings.actor_resources)
        self.fired = 0
        self.sleeper = asyncio.get_running_loop().create_task(self._run())

    @property
    def db(self):
        return database(self.endpoints.mongodb_uri, self.settings.mongodb_db)

    async def handle_refusal(self, event: dict, delay_s: float | None = None) -> dict:
        """An `offer_refused` event: schedule its counter-offer (idempotent per event).

        `delay_s` overrides the cooldown for this offer (an operator rescheduling, a test).
        """
        await self.loaded.wait()
        offer, why = await marketing.schedule_offer(self.db, self.settings, event, delay_s)
        if offer is not None:
            heapq.heappush(self.heap, (offer["fire_at"].timestamp(), offer["_id"]))
            self.wake.set()
        return {"scheduled": offer is not None, "reason": why,
                "offer_id": offer["_id"] if offer else None}

    async def handle_acceptance(self, event: dict) -> dict:
        """`counter_offer_accepted`: the offer accepted, the plan changed, a conversion."""
        offer = await marketing.accept_offer(self.db, event)
        return {"accepted": offer is not None}

    async def handle_upgrade(self, event: dict) -> dict:
        """`offer_accepted` in the bot's own flow: the plan changed, a conversion."""
        await marketing.record_upgrade(self.db, event, self.settings.marketing_plan)
        return {"recorded": True}

    async def stats(self) -> dict:
        """Pending timers, fired count and firing lateness (for benchmarks and the UI)."""
        lateness = sorted(self.lateness_ms)

        def pct(p: float) -> float | None:
            return round(lateness[min(len(lateness) - 1, int(p * len(lateness)))], 2) \
                if lateness else None

        return {"pending": len(self.heap), "fired": self.fired, "rss_mb": _rss_mb(),
                "lateness_p50_ms": pct(0.5), "lateness_p99_ms": pct(0.99)}

    async def _run(self) -> None:
        while True:
            try:
                await self._sleeper()
            except Exception:
                log.exception("marketing sleeper crashed; restarting it")
                await asyncio.sleep(1)

    async def _sleeper(self) -> None:
        self.heap = await marketing.due_offers(self.db)
        heapq.heapify(self.heap)
        self.loaded.set()
        last_expiry = 0.0
        while True:
            if time.monotonic() - last_expiry > EXPIRE_EVERY_S:
                await marketing.expire_offers(self.db)
                last_expiry = time.monotonic()
            self.wake.clear()
            delay = EXPIRE_EVERY_S
            while self.heap and self.heap[0][0] <= time.time():
                fire_at, offer_id = heapq.heappop(self.heap)
                await self.firing.acquire()
                asyncio.get_running_loop().create_task(self._fire(offer_id, fire_at))
            if self.heap:
                delay = min(delay, self.heap[0][0] - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, delay))

    async def _fire(self, offer_id: str, due: float) -> None:
        try:
            offer = await marketing.take_for_firing(self.db, offer_id)
            if offer is None:
                return  # fired already (by an earlier life of this actor, or another)
            docs = await marketing.deliver_to_inbox(self.db, offer)
            if docs:
                await self.hub.publish.remote(offer["session_id"], docs[-1]["seq"])
            emailed = bool(offer.get("email")) and await self._mail(offer)
            await marketing.mark_sent(self.db, offer_id, emailed)
            self.fired += 1
            self.lateness_ms.append(max(0.0, (time.time() - due) * 1000))
            del self.lateness_ms[:-100_000]
        except Exception:
            log.exception("offer %s: firing failed; retrying in 5 s", offer_id)
            heapq.heappush(self.heap, (time.time() + 5, offer_id))
        finally:
            self.firing.release()

    async def _mail(self, offer: dict) -> bool:
        token = sign_customer_id(offer["customer_id"], self.unsubscribe_secret)
        unsubscribe_url = f"{self.settings.public_url.rstrip('/')}/unsubscribe/{token}"
        chat_url = f"{self.settings.public_url.rstrip('/')}/chat"
        mail = Mail(to_email=offer["email"], to_name="", subject="A special offer for you",
                    text=f"{offer['text']}\n\nAccept it in the chat: {chat_url}\n\n"
                         f"Unsubscribe: {unsubscribe_url}\n",
                    message_id=message_id(f"offer:{offer['_id']}", self.settings.mail_from),
                    unsubscribe_url=unsubscribe_url)
        sender = Sender(self.settings, self.endpoints)
        try:
            outcome = await sender.send(build_message(mail, self.settings.mail_from))
        finally:
            await sender.close()
        if outcome.status != "sent":
            log.warning("offer %s: email not sent (%s %s)", offer["_id"], outcome.code,
                        outcome.error)
        return outcome.status == "sent"


def _rss_mb() -> float | None:
    """This process's resident memory (Linux), for the stats."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def marketing_actor(settings: Settings, endpoints: Endpoints, unsubscribe_secret: str):
    """The cluster's marketing actor, created on first use (idempotent)."""
    return MarketingActor.options(
        name=ACTOR_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        resources=settings.actor_resources,
    ).remote(settings, endpoints, unsubscribe_secret)
