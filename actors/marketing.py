"""The marketing actor: fires counter-offers, takes acceptances.

When an offer is made is the counter-offer journey's to say (`app.marketing.journey`,
walked by the journey shards): its offer step stores the offer (`offer_maker`, run in
the shard) and hands it here to fire at once. Detached, named `marketing`, async,
restarted on failure; created idempotently by the application. Its timers are one heap
served by one sleeper, not a coroutine per offer, so it holds 100,000 pending offers in
a few MB. MongoDB is the record: on (re)start it reloads every offer still to fire, and
overdue ones fire at once; the atomic claim in `app.marketing.offers` makes sure none
fires twice. Offers due together fire as one batch (a few database commands for the
batch, see `app.marketing.offers`): they go to the customers' inboxes, one call rings
the chat hub for open WebSockets, and those with an email are mailed over pooled SMTP
connections (the campaigns' sender), and those whose conversation is held by SMS are
texted through the SMS gateway, those held in Telegram sent by the bot.

Teardown: it ends with the Ray cluster, or `ray.kill(ray.get_actor("marketing",
namespace="operator-comms"))`; scheduled offers wait in MongoDB for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from datetime import timedelta
from typing import Any

import ray

from actors import registry
from actors.chat_hub import chat_hub
from actors.metrics import OfferMetrics
from actors.webhook_sender import publish
from app.channels.base import SendOutcome
from app.channels.email import composer
from app.channels.email.mailer import RETRY, SENT, Mail, build_message, message_id
from app.channels.registry import CHANNELS
from app.channels.routing import close_routed, routed_senders, send_moving
from app.channels.telegram.api import TelegramMessage, TelegramSender
from app.channels.telegram.channel import bot_login
from app.channels.webpush import subscriptions
from app.channels.webpush.channel import notification, push_login, subscription_of
from app.channels.webpush.push import GONE, Push, PushSender
from app.channels.whatsapp.api import WhatsAppMessage, WhatsAppSender
from app.channels.whatsapp.channel import cloud_login
from app.chat import channel_chat, sms_chat, telegram_chat
from app.core.runtime import Runtime
from app.core.statuses import OfferStatus
from app.journeys.enrollments import is_session_member
from app.journeys.sending import OfferMaker
from app.marketing import offers as marketing
from app.observability import telemetry

log = logging.getLogger("operator_comms.marketing")
FIRING_CONCURRENCY = 8   # batches in flight
BATCH_MAX = 100
MAIL_CONNECTIONS = 4
RETRY_S = 5.0
EXPIRE_EVERY_S = 30.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
class MarketingActor(registry.MadeWithRuntime):
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.settings = settings = runtime.settings
        telemetry.setup(settings, "marketing")
        self.heap: list[tuple[float, str]] = []
        self.held: set[str] = set()  # offers on the heap or firing
        self.mail_heap: list[tuple[float, str]] = []  # emails waiting for offline sessions
        self.wake = asyncio.Event()
        self.firing = asyncio.Semaphore(FIRING_CONCURRENCY)
        self.loaded = asyncio.Event()
        self.lateness_ms: list[float] = []
        self.hub = chat_hub(settings.actor_resources)
        self.fired = 0
        self.batches = 0
        self.sleeper = asyncio.get_running_loop().create_task(self._run())

    @property
    def db(self):
        return self.runtime.database()

    async def fire_offers(self, offer_ids: list[str]) -> int:
        """Offers the counter-offer journey just stored (`offer_maker`): fired at once
        (one firing each: an id already held here, on the heap or firing, is not
        taken twice). Returns how many were new here."""
        await self.loaded.wait()
        new = [offer_id for offer_id in dict.fromkeys(offer_ids) if offer_id not in self.held]
        at = time.time()
        for offer_id in new:
            self._hold(at, offer_id)
        if new:
            self.wake.set()
        return len(new)

    def _hold(self, at: float, offer_id: str) -> None:
        heapq.heappush(self.heap, (at, offer_id))
        self.held.add(offer_id)

    async def handle_acceptance(self, event: dict) -> dict:
        """`counter_offer_accepted`: the offer accepted, the plan changed, a conversion."""
        offer = await marketing.accept_offer(self.db, event)
        if offer is not None:
            OfferMetrics.get().count(OfferStatus.ACCEPTED)
            await publish(self.db, "offer.accepted", _offer_event(offer),
                          key=f"offer.accepted:{offer['_id']}")
        return {"accepted": offer is not None,
                "journey_send": offer.get("journey_send") if offer else None}

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

        return {"pending": len(self.heap), "fired": self.fired, "batches": self.batches,
                "rss_mb": telemetry.rss_mb(),
                "lateness_p50_ms": pct(0.5), "lateness_p99_ms": pct(0.99)}

    async def _run(self) -> None:
        while True:
            try:
                await self._sleeper()
            except Exception:
                log.exception("marketing sleeper crashed; restarting it")
                await asyncio.sleep(1)

    async def _sleeper(self) -> None:
        await marketing.recount(self.db)  # the overview's counters, healed at each start
        self.heap = await marketing.due_offers(self.db)
        heapq.heapify(self.heap)
        self.held = {offer_id for _, offer_id in self.heap}
        self.mail_heap = await marketing.mail_followups(self.db)
        heapq.heapify(self.mail_heap)
        self.loaded.set()
        last_expiry = 0.0
        while True:
            if time.monotonic() - last_expiry > EXPIRE_EVERY_S:
                await marketing.expire_offers(self.db)
                last_expiry = time.monotonic()
            self.wake.clear()
            delay = EXPIRE_EVERY_S
            while self.heap and self.heap[0][0] <= time.time():
                due = []
                while self.heap and self.heap[0][0] <= time.time() and len(due) < BATCH_MAX:
                    due.append(heapq.heappop(self.heap))
                await self.firing.acquire()
                asyncio.get_running_loop().create_task(self._fire(due))
            mail_due = []
            while self.mail_heap and self.mail_heap[0][0] <= time.time():
                mail_due.append(heapq.heappop(self.mail_heap)[1])
            if mail_due:
                asyncio.get_running_loop().create_task(self._follow_up(mail_due))
            if self.heap:
                delay = min(delay, self.heap[0][0] - time.time())
            if self.mail_heap:
                delay = min(delay, self.mail_heap[0][0] - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, delay))

    async def _fire(self, due: list[tuple[float, str]]) -> None:
        """Fire a batch of due offers; any that fail go back on the heap for a retry."""
        when = {offer_id: at for at, offer_id in due}
        retrying: set[str] = set()  # (held still: back on the heap)
        try:
            offers = await marketing.claim_for_firing(self.db, list(when))
            written, failed = await marketing.deliver_batch(self.db, offers)
            for offer_id, exc in failed.items():
                log.warning("offer %s: firing failed (%s); retrying in %.0f s", offer_id, exc,
                            RETRY_S)
                self._hold(time.time() + RETRY_S, offer_id)
                retrying.add(offer_id)
                self.wake.set()
            rings = [(docs[-1]["session_id"], docs[-1]["seq"]) for docs in written.values()
                     if docs]
            if rings:
                self.hub.publish_many.remote(rings)  # a wake-up: the inbox holds them
            fired = [offer for offer in offers if offer["_id"] in written]
            texted = await self._text([o for o in fired if o.get("sms_to")])
            texted |= await self._telegram([o for o in fired if o.get("telegram_to")])
            texted |= await self._whatsapp([o for o in fired if o.get("whatsapp_to")])
            await self._push([o for o in fired if o.get("customer_id")])
            to_mail, later = await self._choose_mail([o for o in fired if o.get("email")])
            emailed, failed_now = await self._mail(to_mail)
            for offer_id in failed_now:  # a transient failure: tried again, durably
                later[offer_id] = marketing.email_retry_at(1, self.settings.retry_backoff_s)
            await marketing.mark_sent(self.db, {offer["_id"]: emailed.get(offer["_id"], False)
                                                for offer in fired}, later)
            for offer_id, at in later.items():
                heapq.heappush(self.mail_heap, (at.timestamp(), offer_id))
            if later:
                self.wake.set()  # the sleeper's wait may end after these are due
            self.fired += len(fired)
            OfferMetrics.get().count(OfferStatus.SENT, len(fired))
            if fired:
                await publish(self.db, "offer.sent", {"offers": [
                    {**_offer_event(offer), "emailed": emailed.get(offer["_id"], False),
                     **({"texted": texted[offer["_id"]]} if offer["_id"] in texted else {})}
                    for offer in fired]})
            self.batches += 1
            at = time.time()
            self.lateness_ms += [max(0.0, (at - when[offer["_id"]]) * 1000) for offer in fired]
            del self.lateness_ms[:-100_000]
        except Exception:
            log.exception("a batch of %d offers: firing failed; retrying in %.0f s", len(due),
                          RETRY_S)
            for _, offer_id in due:
                self._hold(time.time() + RETRY_S, offer_id)
                retrying.add(offer_id)
            self.wake.set()  # a retry in RETRY_S, sooner than the sleeper's wait may end
        finally:
            self.firing.release()
            self.held -= {offer_id for _, offer_id in due} - retrying

    async def _choose_mail(self, offers: list[dict]) -> tuple[list[dict], dict[str, Any]]:
        """Which offers to email now, and which later (offer id -> when). Without
        `marketing_prefer_live`, all now; with it, none whose session has a socket open
        (the chat shows the offer), and the offline ones after `marketing_email_wait_s`."""
        if not self.settings.marketing_prefer_live or not offers:
            return offers, {}
        online = set(await self.hub.online.remote([o["session_id"] for o in offers]))
        offline = [o for o in offers if o["session_id"] not in online]
        wait = self.settings.marketing_email_wait_s
        if wait <= 0:
            return offline, {}
        at = marketing.now() + timedelta(seconds=wait)
        return [], {offer["_id"]: at for offer in offline}

    async def _follow_up(self, offer_ids: list[str]) -> None:
        """Emails that waited: sent to customers still offline (and not yet accepted)."""
        try:
            offers = await marketing.awaiting_mail(self.db, offer_ids)
            online = set(await self.hub.online.remote([o["session_id"] for o in offers])
                         ) if offers and self.settings.marketing_prefer_live else set()
            emailed, failed_now = await self._mail(
                [o for o in offers if o["session_id"] not in online])
            retry_at = {}
            for offer in offers:
                if offer["_id"] in failed_now:
                    at = marketing.email_retry_at(offer.get("email_attempts", 0) + 2,
                                                  self.settings.retry_backoff_s)
                    if at is not None:
                        retry_at[offer["_id"]] = at
                        heapq.heappush(self.mail_heap, (at.timestamp(), offer["_id"]))
            if retry_at:
                self.wake.set()
            await marketing.mark_followed_up(
                self.db, {offer["_id"]: emailed.get(offer["_id"], False) for offer in offers},
                retry_at)
        except Exception:
            log.exception("%d waiting offer emails failed; retrying in %.0f s",
                          len(offer_ids), RETRY_S)
            for offer_id in offer_ids:
                heapq.heappush(self.mail_heap, (time.time() + RETRY_S, offer_id))
            self.wake.set()

    async def _text(self, offers: list[dict]) -> dict[str, bool]:
        """Counter-offers to conversations held by SMS, through the SMS gateway's bind;
        offer id -> accepted by the SMSC."""
        if not offers:
            return {}
        gateway = registry.find(registry.SMS_GATEWAY)
        if gateway is None:
            log.warning("%d counter-offers for SMS conversations: no SMS gateway running",
                        len(offers))
            return {offer["_id"]: False for offer in offers}
        sent = await gateway.send_texts.remote([
            (offer["sms_to"], sms_chat.render(marketing.offer_messages(offer)),
             f"offer:{offer['_id']}") for offer in offers])
        return {offer["_id"]: sent.get(f"offer:{offer['_id']}", False) for offer in offers}

    async def _telegram(self, offers: list[dict]) -> dict[str, bool]:
        """Counter-offers to conversations held in Telegram, by the bot, with the
        offer's options as buttons; offer id -> accepted by the Bot API."""
        if not offers:
            return {}
        sender = TelegramSender(bot_login(self.settings, self.runtime.endpoints))
        sent = {}
        for offer in offers:
            reply = telegram_chat.render(int(offer["telegram_to"]),
                                         marketing.offer_messages(offer))
            if reply is None:
                continue
            outcome = await sender.send(TelegramMessage(
                reply.chat_id, reply.text, f"offer:{offer['_id']}", reply.options))
            sent[offer["_id"]] = outcome.status == SENT
            if outcome.status != SENT:
                log.warning("offer %s: Telegram message not sent (%s %s)", offer["_id"],
                            outcome.code, outcome.error)
        return sent

    async def _whatsapp(self, offers: list[dict]) -> dict[str, bool]:
        """Counter-offers to conversations held in WhatsApp, with the offer's options as
        reply buttons (free text: the customer wrote within the cooldown, so WhatsApp's
        24-hour window is open; outside it the Cloud API reports the message failed,
        and the offer is in the inbox and the email all the same); offer id ->
        accepted by the Cloud API."""
        if not offers:
            return {}
        sender = WhatsAppSender(cloud_login(self.settings, self.runtime.endpoints))
        sent = {}
        for offer in offers:
            turn = channel_chat.said(marketing.offer_messages(offer))
            if turn is None:
                continue
            outcome = await sender.send(WhatsAppMessage(
                offer["whatsapp_to"], f"offer:{offer['_id']}", text=turn[0],
                options=turn[1]))
            sent[offer["_id"]] = outcome.status == SENT
            if outcome.status != SENT:
                log.warning("offer %s: WhatsApp message not sent (%s %s)", offer["_id"],
                            outcome.code, outcome.error)
        return sent

    async def _push(self, offers: list[dict]) -> None:
        """Counter-offers as notifications to the browsers their customers subscribed
        (one read for the batch); a subscription the push service says is gone is
        dropped."""
        if not offers:
            return
        subscribed = {doc["_id"]: subscription_of(doc) async for doc in self.db.customers.find(
            {"_id": {"$in": [o["customer_id"] for o in offers]},
             "webpush.endpoint": {"$exists": True}, "opted_out": {"$ne": "webpush"}},
            {"webpush": 1})}
        if not subscribed:
            return
        sender = PushSender(push_login(self.settings, self.runtime.endpoints))
        chat_url = f"{self.settings.public_url.rstrip('/')}/chat/"
        gone = []
        for offer in offers:
            subscription = subscribed.get(offer["customer_id"])
            if subscription is None:
                continue
            outcome = await sender.send(Push(subscription, notification(
                "Special offer for you", offer["text"], url=chat_url,
                tag=f"offer:{offer['_id']}"), f"offer:{offer['_id']}"))
            if outcome.code in GONE:
                gone.append(subscription.endpoint)
            elif outcome.status != SENT:
                log.warning("offer %s: push not sent (%s %s)", offer["_id"], outcome.code,
                            outcome.error)
        await subscriptions.drop(self.db, gone)

    async def _mail(self, offers: list[dict]) -> tuple[dict[str, bool], set[str]]:
        """Mail the offers over a few pooled connections: (offer id -> sent, the ids that
        failed transiently, to try again). Whoever unsubscribed since the offer was made
        is skipped (read now, at send time)."""
        offers = await marketing.still_subscribed(self.db, offers)
        if not offers:
            return {}, set()
        queue: asyncio.Queue[dict] = asyncio.Queue()
        for offer in offers:
            queue.put_nowait(offer)
        sent: dict[str, bool] = {}
        transient: set[str] = set()
        email = CHANNELS["email"]
        senders = routed_senders(email, self.settings, self.runtime.endpoints,
                                 min(MAIL_CONNECTIONS, len(offers)))

        async def drain(sender) -> None:
            while not queue.empty():
                offer = queue.get_nowait()
                outcome = await send_moving(sender, build_message(
                    self._mail_for(offer), self.settings.mail_from))
                sent[offer["_id"]] = outcome.status == SENT
                if outcome.status == RETRY:
                    transient.add(offer["_id"])
                if outcome.status != SENT:
                    log.warning("offer %s: email not sent (%s %s)", offer["_id"],
                                outcome.code, outcome.error)

        try:
            await asyncio.gather(*(drain(sender) for sender in senders))
        finally:
            close_routed(email, senders)
        return sent, transient

    def _mail_for(self, offer: dict) -> Mail:
        return composer.offer_mail(
            offer, public_url=self.settings.public_url, key=self.runtime.link_key,
            message_id=message_id(f"offer:{offer['_id']}", self.settings.mail_from))


def _offer_event(offer: dict) -> dict:
    return {"offer_id": offer["_id"], "session_id": offer.get("session_id"),
            "customer_id": offer.get("customer_id"), "plan": offer.get("plan"),
            "discount_pct": offer.get("discount_pct")}


def offer_maker(runtime: Runtime) -> OfferMaker:
    """The journeys' offer step, run in a journey shard: each offer stored (named from
    its send, so a step made again finds it), then the batch handed to the marketing
    actor to fire at once. Stored is made: if the actor is away, it fires the offer
    when it starts (it reloads every offer still to fire)."""
    settings = runtime.settings
    actor = registry.Named(registry.MARKETING)

    async def make(db: Any, offered: list[tuple[dict, dict]]) -> list[SendOutcome]:
        outcomes, to_fire = [], []
        for enrollment, item in offered:
            if not enrollment.get("session_id"):
                outcomes.append(SendOutcome("skipped", None, "no chat session to offer in"))
                continue
            member = enrollment["customer_id"]
            offer_id = marketing.offer_id_of(item["key"])
            offer, why = await marketing.schedule_offer(db, settings, {
                "_id": offer_id, "session_id": enrollment["session_id"],
                "customer_id": None if is_session_member(member) else member,
                "journey_send": item["key"]}, delay_s=0.0)
            if offer is None and why != marketing.DUPLICATE:
                outcomes.append(SendOutcome("skipped", None, why))
                continue
            if offer is not None:
                OfferMetrics.get().count(OfferStatus.SCHEDULED)
            to_fire.append(offer_id)
            outcomes.append(SendOutcome(SENT))
        handle = actor()
        if to_fire and handle is not None:
            await handle.fire_offers.remote(to_fire)
        return outcomes

    return make


def marketing_actor(runtime: Runtime, replace_older: bool = False):
    """The cluster's marketing actor, created on first use (idempotent); with
    `replace_older`, replaced if it runs with another runtime (the launcher)."""
    return registry.get_or_create(
        MarketingActor, registry.MARKETING, runtime, resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None)
