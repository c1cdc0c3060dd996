"""The local-services actor: owns the embedded SecantusDB, SMTP sink, SMSC, Telegram
Bot API server, WhatsApp Cloud API server and web push service of local mode.

One detached, named actor per Ray cluster, so every replica, actor and task reaches
the same servers; it hands out their addresses and answers outbox queries. The
launcher creates it when MongoDB, SMTP or SMPP is not configured
(`deployments.cluster`). Teardown: it ends with the Ray cluster (`serve run`,
`make run` and the tests start a local one), or
`ray.kill(ray.get_actor("local-services", namespace="operator-comms"))`; its child
database process dies with it.
"""

from __future__ import annotations

import ray

from actors import registry
from app.core.config import Settings
from app.core.endpoints import Endpoints
from embedded.mongo import EmbeddedMongo
from embedded.processes import free_ports
from embedded.push_service import PushService
from embedded.smsc import Smsc
from embedded.smtp_sink import SmtpSink
from embedded.telegram_api import TelegramApi
from embedded.whatsapp_api import WhatsAppApi


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class LocalServices:
    def __init__(self, settings: Settings, mongo_port: int, smtp_port: int,
                 smpp_port: int | None = None, telegram_port: int | None = None,
                 whatsapp_port: int | None = None, push_port: int | None = None):
        self.settings = settings
        host = str(settings.local_services_host)  # (127.0.0.1, or the head's address)
        self.mongo = self.sink = self.smsc = None
        self.telegram: TelegramApi | None = None
        self.whatsapp: WhatsAppApi | None = None
        mongodb_uri = settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else ""
        if settings.embedded_mongodb:
            self.mongo = EmbeddedMongo(settings.data_dir, host=host, port=mongo_port)
            mongodb_uri = self.mongo.start()
        smtp_host, port = settings.smtp_host or "", settings.smtp_port
        if settings.embedded_smtp:
            self.sink = SmtpSink(settings.data_dir / "outbox", host=host, port=smtp_port)
            smtp_host, port = self.sink.start()
        smpp_host, smpp = settings.smpp_host or "", settings.smpp_port
        if settings.embedded_smsc:
            self.smsc = Smsc(settings.smpp_system_id, settings.smpp_login(),
                             receipt_delay_s=settings.smsc_receipt_delay_s, host=host,
                             port=smpp_port,
                             submit_delay_s=settings.smsc_submit_delay_s)
            smpp_host, smpp = self.smsc.start()
        telegram_api = settings.telegram_api_url
        if settings.embedded_telegram:
            self.telegram = TelegramApi(host=host, port=telegram_port,
                                        latency_s=settings.local_telegram_latency_s)
            telegram_api = self.telegram.start()
        whatsapp_api = settings.whatsapp_api_url
        if settings.embedded_whatsapp:
            self.whatsapp = WhatsAppApi(
                phone_number_id=settings.whatsapp_phone_number_id,
                app_id=settings.whatsapp_app_id, host=host, port=whatsapp_port,
                latency_s=settings.local_whatsapp_latency_s)
            whatsapp_api = self.whatsapp.start()
        self.push = PushService(host=host, port=push_port)  # browsers' push service
        push_service = self.push.start()
        self._endpoints = Endpoints(mongodb_uri=mongodb_uri, smtp_host=smtp_host,
                                    smtp_port=port, local_sink=self.sink is not None,
                                    smpp_host=smpp_host, smpp_port=smpp,
                                    local_smsc=self.smsc is not None,
                                    telegram_api=telegram_api,
                                    local_telegram=self.telegram is not None,
                                    whatsapp_api=whatsapp_api,
                                    local_whatsapp=self.whatsapp is not None,
                                    local_whatsapp_secret=self.whatsapp.app_secret
                                    if self.whatsapp else "", local_push=push_service)

    def endpoints(self) -> Endpoints:
        return self._endpoints

    def outbox(self, to: str | None = None, limit: int = 100) -> dict:
        if self.sink is None:
            return {"total": 0, "matched": 0, "messages": []}
        return self.sink.handler.list(to=to, limit=limit)

    def outbox_counts(self, domain: str | None = None) -> dict[str, int]:
        return self.sink.handler.count_by_recipient(domain) if self.sink else {}

    def outbox_distinct_counts(self, domain: str | None = None) -> dict[str, int]:
        return self.sink.handler.distinct_by_recipient(domain) if self.sink else {}

    def outbox_holding(self) -> list[str]:
        return sorted(self.sink.handler.holding) if self.sink else []

    def outbox_message(self, key: str) -> bytes | None:
        return self.sink.handler.raw(key) if self.sink else None

    def sms_outbox(self, number: str | None = None, limit: int = 100) -> dict:
        if self.smsc is None:
            return {"total": 0, "matched": 0, "messages": []}
        return self.smsc.messages(number, limit)

    def sms_counts(self, contains: str | None = None) -> dict[str, int]:
        return self.smsc.count_by_number(contains) if self.smsc else {}

    def smsc_stats(self) -> dict[str, int]:
        return self.smsc.stats() if self.smsc else {}

    def sms_arrivals(self, since: float = 0.0) -> list[float]:
        return self.smsc.arrivals(since) if self.smsc else []

    def sms_holding(self) -> list[str]:
        return self.smsc.holding_now() if self.smsc else []

    def sms_inbound(self, source: str, destination: str, text: str) -> bool:
        """A mobile-originated SMS into the embedded SMSC (local mode)."""
        if self.smsc is None:
            return False
        self.smsc.inject_mo(source, destination, text)
        return True

    def telegram_say(self, chat_id: int, text: str, first_name: str = "Customer") -> int:
        """A customer of the embedded Bot API writes to the bot (delivered to the
        webhook before this returns); the update's id."""
        return self._telegram().say(chat_id, text, first_name)

    def telegram_press(self, chat_id: int, data: str) -> int:
        return self._telegram().press(chat_id, data)

    def telegram_block(self, chat_id: int, tell: bool = True) -> int | None:
        return self._telegram().block(chat_id, tell)

    def telegram_sent(self, chat_id: int | None = None) -> list[dict]:
        return self._telegram().sent(chat_id)

    def telegram_sent_counts(self) -> dict[int, int]:
        return self._telegram().sent_counts()

    def telegram_open_chats(self, chat_ids: list[int]) -> None:
        self._telegram().open_chats(chat_ids)

    def telegram_arrivals(self, since: float = 0.0) -> list[float]:
        return self._telegram().arrivals(since)

    def whatsapp_register_many(self, wa_ids: list[str], reads: bool = True) -> None:
        self._whatsapp().register_many(wa_ids, reads)

    def whatsapp_arrivals(self, since: float = 0.0) -> list[float]:
        return self._whatsapp().arrivals(since)

    def telegram_webhook(self) -> dict[str, str]:
        return {"url": self._telegram().webhook.get("url", "")}

    def telegram_deliver_raw(self, body: bytes, secret: str | None) -> int:
        return self._telegram().deliver_raw(body, secret)

    def whatsapp_register(self, wa_id: str, name: str = "Customer",
                          reads: bool = True) -> None:
        """A number of the embedded Cloud API has WhatsApp (`reads`: its customer reads
        what arrives)."""
        self._whatsapp().register(wa_id, name, reads)

    def whatsapp_say(self, wa_id: str, text: str) -> str:
        """The customer writes to the business (delivered to the webhook before this
        returns); the message's id."""
        return self._whatsapp().say(wa_id, text)

    def whatsapp_press(self, wa_id: str, option_id: str) -> str:
        return self._whatsapp().press(wa_id, option_id)

    def whatsapp_read(self, wa_id: str) -> int:
        return self._whatsapp().read(wa_id)

    def whatsapp_block(self, wa_id: str) -> None:
        self._whatsapp().block(wa_id)

    def whatsapp_sent(self, wa_id: str | None = None) -> list[dict]:
        return self._whatsapp().sent(wa_id)

    def whatsapp_sent_counts(self) -> dict[str, int]:
        return self._whatsapp().sent_counts()

    def whatsapp_webhook(self) -> dict[str, str]:
        return {"url": self._whatsapp().webhook.get("url", "")}

    def whatsapp_deliver_raw(self, body: bytes, signature: str | None) -> int:
        return self._whatsapp().deliver_raw(body, signature)

    def whatsapp_pending_statuses(self) -> int:
        """Statuses not posted to the webhook yet."""
        return len(self._whatsapp().pending_statuses)

    def push_subscribe(self, server_key: str | None = None) -> dict:
        """A browser's new push subscription on the embedded push service (what
        `pushManager.subscribe()` gives a page)."""
        return self.push.subscribe(server_key)

    def push_unsubscribe(self, endpoint: str) -> None:
        self.push.unsubscribe(endpoint)

    def push_received(self, endpoint: str) -> list[bytes]:
        """What the browser of this subscription got, decrypted."""
        return self.push.received(endpoint)

    def _whatsapp(self) -> WhatsAppApi:
        if self.whatsapp is None:
            raise RuntimeError("no embedded WhatsApp Cloud API: COMMS_WHATSAPP_ACCESS_TOKEN "
                               "is set")
        return self.whatsapp

    def _telegram(self) -> TelegramApi:
        if self.telegram is None:
            raise RuntimeError("no embedded Telegram Bot API: COMMS_TELEGRAM_BOT_TOKEN is set")
        return self.telegram

    def __ray_shutdown__(self) -> None:
        self.push.stop()
        if self.whatsapp:
            self.whatsapp.stop()
        if self.telegram:
            self.telegram.stop()
        if self.smsc:
            self.smsc.stop()
        if self.sink:
            self.sink.stop()
        if self.mongo:
            self.mongo.stop()


def local_services(settings: Settings):
    """The cluster's local-services actor, created on first use (idempotent)."""
    # Distinct ports, none the app's own HTTP port (chosen before, bound after).
    # (Chosen where this runs: the head, as a rule, where they will listen; elsewhere,
    # ports free on this host's loopback.)
    host = str(settings.local_services_host)
    try:
        ports = free_ports(6, avoid={settings.http_port}, host=host)
    except OSError:  # not an address of this host
        ports = free_ports(6, avoid={settings.http_port})
    return registry.get_or_create(LocalServices, registry.LOCAL_SERVICES, settings, *ports,
                                  resources=settings.actor_resources)


async def resolve_endpoints(settings: Settings) -> Endpoints:
    """Where MongoDB, SMTP and the SMSC are: configured ones, or the embedded ones (whose
    actor the launcher started; this only finds it)."""
    if not (settings.embedded_mongodb or settings.embedded_smtp or settings.embedded_smsc
            or settings.embedded_telegram or settings.embedded_whatsapp):
        return Endpoints.configured(settings)
    services = registry.find(registry.LOCAL_SERVICES)
    if services is None:
        raise RuntimeError("the embedded services are not running: start operator-comms "
                           "with `operator-comms run` or `serve run serve_config.yaml`")
    return await services.endpoints.remote()
