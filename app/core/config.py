"""Settings: one pydantic-settings model read from `COMMS_*` environment variables.

Each setting's docstring is its description: `docs/configuration.md` is generated from
them (`operator-comms settings-doc --write`), and a test fails when the page differs.

Every default runs locally: with no `COMMS_MONGODB_URI` an embedded SecantusDB is
started, with no `COMMS_SMTP_HOST` an embedded SMTP sink, with no `COMMS_SMPP_HOST`
an embedded SMSC. `load_settings()` turns a
validation failure into one readable line naming the variable.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.windows import Window

ENV_PREFIX = "COMMS_"


class ConfigError(ValueError):
    """A setting is invalid; the message is one line naming the variable."""


Port = Annotated[int, Field(ge=1, le=65535)]
RouteName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


class FurtherRoute(BaseModel):
    """A relay or SMSC beside the main one: its name (its key is `relay:<name>` or
    `smsc:<name>` on the dashboard and in metrics), its share and its ceiling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RouteName
    host: str = Field(min_length=1, max_length=253)
    weight: float = Field(default=1.0, gt=0, le=1000)
    rate_limit_per_s: float | None = Field(default=None, gt=0)


class FurtherRelay(FurtherRoute):
    """Another SMTP relay (e.g. a second provider)."""

    port: Port = 587
    user: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    tls: bool = False

    @model_validator(mode="after")
    def _one_tls_mode(self) -> Self:
        if self.starttls and self.tls:
            raise ValueError("starttls and tls are exclusive")
        return self


class FurtherSmsc(FurtherRoute):
    """Another SMPP 3.4 SMSC (e.g. a second aggregator)."""

    port: Port = 2775
    system_id: str = Field(default="comms", min_length=1, max_length=15)
    password: SecretStr | None = None


class Telemetry(BaseSettings):
    """Traces and logs: what every process needs, Serve's proxies included (which read
    only these, from their environment)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True,
                                      use_attribute_docstrings=True)

    # OpenTelemetry over OTLP/HTTP (a collector, Jaeger, Tempo...).
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    """OTLP/HTTP base URL of your trace collector (spans go to `<url>/v1/traces`); unset:
    nothing is traced"""
    otlp_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """share of new traces kept (a request with a sampled `traceparent` is always kept)"""
    # Log lines of replicas, actors and tasks.
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per line from every replica, actor and task, with the trace,
    request, campaign and session ids where one applies"""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    """level of the app's own lines (`INFO` adds a line per chat turn, send batch and
    runner start or end)"""

    @property
    def tracing(self) -> bool:
        return self.otlp_endpoint is not None


class Settings(Telemetry):

    # MongoDB: unset means "start the embedded SecantusDB under data_dir".
    mongodb_uri: SecretStr | None = None
    """any `mongodb://` or `mongodb+srv://` URI; unset: the embedded SecantusDB under the
    data directory (never logged or returned)"""
    mongodb_db: str = Field(default="operator_comms", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    """database name"""

    # SMTP relay: unset host means "start the embedded sink".
    smtp_host: str | None = None
    """SMTP relay host; unset: the embedded SMTP sink (every message kept in
    `<data_dir>/outbox`)"""
    smtp_port: Port = 587
    """SMTP relay port"""
    smtp_user: str | None = None
    """relay login"""
    smtp_password: SecretStr | None = None
    """relay password (never logged or returned)"""
    smtp_starttls: bool = False
    """STARTTLS on a plain port (exclusive with `COMMS_SMTP_TLS`)"""
    smtp_tls: bool = False
    """implicit TLS (exclusive with `COMMS_SMTP_STARTTLS`)"""
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    """how long one SMTP command may wait for its answer"""
    smtp_weight: float = Field(default=1.0, gt=0, le=1000)
    """the main relay's share of the messages when there are further relays"""
    smtp_routes: list[FurtherRelay] = Field(default_factory=list, max_length=16)
    """further SMTP relays, as JSON: `[{"name": "backup", "host": "...", "port": 587,
    "user": "...", "password": "...", "starttls": true, "weight": 1,
    "rate_limit_per_s": 50}]`; messages are shared by weight, and a relay that refuses
    connections, times out or refuses the login is taken out for a while
    (`route_breaker_*`) while the others carry its share"""
    mail_from: str = "Operator <no-reply@operator.example>"
    """the From header of every email"""

    default_region: str = Field(default="BR", pattern=r"^[A-Z]{2}$")
    """phone numbers written without a country code are read in this region (ISO 3166);
    every phone is kept in E.164"""
    default_timezone: str = "America/Sao_Paulo"
    """the time zone of a customer whose own (a `timezone` attribute) and whose phone's
    are unknown, for send windows"""
    send_windows: dict[str, str] = Field(default_factory=dict)
    """each channel's send window in the recipient's local time, e.g. `{"sms":
    "08:00-21:00"}` (marketing campaigns only; a campaign's own window applies too)"""

    # SMPP 3.4 SMSC for SMS campaigns: unset host means "start the embedded SMSC". Send
    # tasks bind as transmitters; the SMS gateway actor binds as a transceiver and
    # receives the delivery receipts. `smpp_window` submit_sm may await their answer at
    # once per session; `smpp_rate_limit_per_s` caps the SMSC's messages a second
    # (parts count), across the cluster.
    smpp_host: str | None = None
    """the SMSC of SMS campaigns (SMPP 3.4); unset: the embedded SMSC"""
    smpp_port: Port = 2775
    """the SMSC's port"""
    smpp_system_id: str = Field(default="comms", min_length=1, max_length=15)
    """the bind's login"""
    smpp_password: SecretStr | None = None
    """the bind's password (never logged or returned; the embedded SMSC's is `local`)"""
    smpp_source: str = Field(default="4321", pattern=r"^[0-9A-Za-z ]{1,20}$")
    """the sender: digits (a short code or number) or an alphanumeric sender id"""
    smpp_window: int = Field(default=10, ge=1, le=1000)
    """submit_sm awaiting their answers at once, per SMPP session (one per send worker
    process)"""
    smpp_rate_limit_per_s: float | None = Field(default=None, gt=0)
    """SMS parts a second to the SMSC, shared by every task; unset: no cap"""
    smpp_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """how long a submit waits for its answer (then it is retried)"""
    smpp_weight: float = Field(default=1.0, gt=0, le=1000)
    """the main SMSC's share of the messages when there are further SMSCs"""
    smpp_routes: list[FurtherSmsc] = Field(default_factory=list, max_length=16)
    """further SMSCs, as JSON: `[{"name": "backup", "host": "...", "port": 2775,
    "system_id": "...", "password": "...", "weight": 1, "rate_limit_per_s": 100}]`;
    shared and taken out like `COMMS_SMTP_ROUTES`"""
    route_breaker_failures: int = Field(default=3, ge=1, le=100)
    """connection failures in a row (or one refused login) that take a relay or SMSC
    out while another is there to carry its messages"""
    route_breaker_open_s: float = Field(default=30.0, gt=0, le=3600)
    """how long a route stays out before one connection tries it again (doubling each
    time it fails again, up to ten times as long)"""
    # Telegram: unset token means "start the embedded Bot API server" (local mode).
    telegram_bot_token: SecretStr | None = None
    """the bot's token from @BotFather (never logged or returned); unset: the embedded
    Bot API server of local mode and its bot"""
    telegram_api_url: str = Field(default="https://api.telegram.org",
                                  pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    """the Bot API's base URL (a self-hosted Bot API server, say); ignored while the
    token is unset"""
    telegram_bot_username: str = Field(default="operator_bot",
                                       pattern=r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
    """the bot's username, for the `https://t.me/<username>?start=...` links that tie a
    customer's chat to them"""
    local_telegram_latency_s: float = Field(default=0.0, ge=0, le=10)
    """how long the embedded Bot API server takes to answer each call (benchmarks)"""
    telegram_rate_limit_per_s: float | None = Field(default=30.0, gt=0)
    """messages a second to the Bot API across the cluster (Telegram's broadcast limit is
    about 30); unset: no cap"""
    # WhatsApp: unset access token means "start the embedded Cloud API server".
    whatsapp_access_token: SecretStr | None = None
    """the Cloud API's access token (a system user's; never logged or returned); unset:
    the embedded Cloud API server of local mode"""
    whatsapp_app_secret: SecretStr | None = None
    """the Meta app's secret: the webhook's `X-Hub-Signature-256` is checked with it
    (required with the access token; local mode uses the embedded server's)"""
    whatsapp_app_id: str = Field(default="100000000000002", pattern=r"^[0-9]{1,32}$")
    """the Meta app's id: the launcher subscribes its WhatsApp webhook on each deploy"""
    whatsapp_phone_number_id: str = Field(default="100000000000001",
                                          pattern=r"^[0-9]{1,32}$")
    """the business phone number's id, that campaigns and the bot send from"""
    whatsapp_api_url: str = Field(default="https://graph.facebook.com",
                                  pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    """the Cloud API's base URL; ignored while the access token is unset"""
    whatsapp_api_version: str = Field(default="v21.0", pattern=r"^v[0-9]{1,3}\.[0-9]$")
    """the Graph API version in every request's path"""
    whatsapp_rate_limit_per_s: float | None = Field(default=80.0, gt=0)
    """messages a second to the Cloud API across the cluster (a number's default
    throughput is 80); unset: no cap"""
    local_whatsapp_latency_s: float = Field(default=0.0, ge=0, le=10)
    """how long the embedded Cloud API server takes to answer each call (benchmarks)"""
    # Web push: our VAPID key pair is made on first run and kept in the database.
    webpush_contact: str = Field(default="mailto:noc@operator.example",
                                 pattern=r"^(mailto:[^\s@]+@[^\s@]+|https://\S+)$")
    """how push services may reach us (the VAPID `sub` claim): mailto: or https:"""
    webpush_title: str = Field(default="Your operator", min_length=1, max_length=120)
    """a notification's title when the campaign has no subject"""
    webpush_services: list[str] = Field(default_factory=lambda: [
        "fcm.googleapis.com", "updates.push.services.mozilla.com", "*.notify.windows.com",
        "*.push.apple.com"], max_length=50)
    """the push services a browser's subscription may point at (host patterns, HTTPS
    only; or an exact `http://host:port` origin): we post to nothing else"""
    webpush_rate_limit_per_s: float | None = Field(default=500.0, gt=0)
    """pushes a second across the cluster; unset: no cap"""

    sms_stop_keywords: list[str] = Field(
        default_factory=lambda: ["STOP", "PARAR", "SAIR", "CANCELAR"], min_length=1)
    """a text that is only one of these words (any case, accents ignored) suppresses the
    number for SMS"""
    sms_stop_reply: str = Field(
        default="You will get no more SMS from us. Reply HELP for help.", min_length=1,
        max_length=160)
    """the one confirmation a stop word gets"""
    sms_start_keywords: list[str] = Field(
        default_factory=lambda: ["START", "UNSTOP", "VOLTAR"])
    """a text that is only one of these words lifts the number's SMS suppression (the
    customer's own opt-in)"""
    sms_start_reply: str = Field(
        default="You will get our SMS again. Reply STOP to stop.", min_length=1,
        max_length=160)
    """the one confirmation a start word gets"""
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)
    """an address whose sends end dead (every attempt a transient failure) this many
    times is suppressed for that channel"""
    sms_help_keywords: list[str] = Field(default_factory=lambda: ["HELP", "AJUDA"])
    """a text that is only one of these words gets the help text"""
    sms_help_text: str = Field(
        default="Operator customer care: 0800 000 0000. Reply STOP to get no more SMS.",
        min_length=1, max_length=160)
    """the operator's help text"""
    smsc_receipt_delay_s: float = Field(default=0.5, ge=0, le=3600)  # the embedded SMSC's
    """the embedded SMSC: how long before it sends a delivery receipt"""
    smsc_submit_delay_s: float = Field(default=0.0, ge=0, le=60)  # its answer's latency
    """the embedded SMSC: how long before it answers each submit"""

    # Sending defaults (a campaign may override workers, batch size, rate).
    # A relay 50 ms away carries about 17 messages/s per connection, so connections are
    # what a task's rate scales with; 8 per task keeps the dashboard's default launch
    # (4 tasks) at 32 connections to the relay.
    send_connections: int = Field(default=8, ge=1, le=64)
    """SMTP connections driven at once by one send task (a campaign may override it)"""
    send_max_attempts: int = Field(default=3, ge=1, le=20)
    """attempts before a delivery is `dead`"""
    frequency_cap_messages: int | None = Field(default=None, ge=1, le=50)
    """at most this many campaign messages per customer in `frequency_cap_days`, across
    campaigns and channels (unset: no cap; a campaign may set its own or turn it off;
    transactional messages such as signup confirmations are exempt)"""
    frequency_cap_days: float = Field(default=7.0, gt=0, le=365)
    """the rolling period of the frequency cap, in days"""
    send_task_cpus: float = Field(default=0.125, gt=0, le=4)
    """logical CPUs one send task asks Ray for"""
    # Warm workers: a launch of up to this many tasks sends at once instead of waiting
    # for Ray to start processes (a few at a time per node, a second or two of CPU each).
    send_warm_workers: int = Field(default=8, ge=0, le=256)
    """send worker processes started with the app and kept idle between campaigns; best a
    little above the largest `workers` launched (0: Ray starts them at launch)"""
    relay_rate_limit_per_s: float | None = Field(default=None, gt=0)
    """messages a second to the relay, shared by every task of every campaign; unset: no
    cap"""
    send_lease_s: float = Field(default=30.0, ge=1, le=3600)
    """how long a dead task's claim on a batch holds before the batch is sent again (its
    end is set and judged by the database's clock)"""
    retry_backoff_s: float = Field(default=1.0, gt=0, le=3600)
    """first retry delay; doubles per attempt, with full jitter"""
    # Outcomes are written in bulk; what a killed worker had unwritten goes out again
    # (same Message-ID) on the rerun.
    send_flush_every: int = Field(default=25, ge=1, le=10_000)
    """outcomes written per bulk insert; a killed worker can leave up to twice this many
    sent but unrecorded"""
    send_flush_s: float = Field(default=2.0, gt=0, le=60)
    """the longest an outcome waits before its bulk insert"""

    data_dir: Path = Path(".data")
    """embedded database, outbox, generated admin token"""
    local_services_host: IPvAnyAddress = Field(default=IPv4Address("127.0.0.1"))
    """the address the embedded services (database, SMTP sink, SMSC, messaging and push
    stand-ins) listen on and are reached at: this machine only, by default; the head's
    own address on a cluster whose other hosts use them (`cluster-local.yaml`)"""
    admin_token: SecretStr | None = None
    """bearer token for `/api` (16 or more characters); unset: generated and kept in
    `<data_dir>/admin_token`"""
    admin_token_enabled: bool = True
    """`false` once an admin user exists: the admin token then opens nothing (while no
    enabled admin user exists it still does)"""
    public_url: str = "http://localhost:8000"
    """base of the links in emails (unsubscribe, signup confirmation, tracking)"""
    http_host: str = "127.0.0.1"
    """where the Serve proxy listens"""
    http_port: Port = 8000
    """the Serve proxy's port"""

    # Abuse limits on the public endpoints, requests a minute per replica (0: off); see
    # deployments/limits.py. Generous per address: mobile customers share addresses
    # behind carrier-grade NAT.
    limit_chat_sessions_per_ip: int = Field(default=120, ge=0)
    """new chat sessions a minute per client address, per replica (0: off)"""
    limit_chat_turns_per_session: int = Field(default=60, ge=0)
    """chat messages a minute per session, REST and WebSocket (0: off)"""
    limit_unsubscribe_per_ip: int = Field(default=30, ge=0)
    """unsubscribe link requests a minute per client address (0: off)"""
    limit_sign_in_per_ip: int = Field(default=20, ge=0)
    """sign-in attempts a minute per client address (0: off)"""
    trust_forwarded_for: bool = False  # behind a load balancer that sets X-Forwarded-For
    """behind a load balancer: the client address is the last hop of `X-Forwarded-For`"""

    admin_jobs_at_once: int = Field(default=2, ge=1, le=32)
    """customer generations and imports that run at once; the rest wait `queued`"""

    # Reactive marketing.
    marketing_cooldown_s: float = Field(default=10.0, gt=0)
    """wait between a refusal and its counter-offer (the counter-offer journey's
    cooldown, published from here at each deploy)"""
    marketing_discount_pct: float = Field(default=20.0, gt=0, lt=100)
    """the counter-offer's discount"""
    marketing_plan: str = "Turbo"
    """the plan counter-offers are for (from `app/marketing/catalogue.yaml`)"""
    marketing_window_s: float = Field(default=86_400.0, ge=0)
    """at most one counter-offer per customer in this window"""
    marketing_offer_ttl_s: float = Field(default=7 * 86_400.0, gt=0)
    """how long a sent offer can be accepted (the journey's wait for the acceptance)"""
    # Prefer the chat: an offer whose session has a socket open is not emailed; one
    # whose session is offline is emailed after this wait if it is still offline then.
    marketing_prefer_live: bool = False
    """a counter-offer to a session with the chat open goes to the chat only, not by email"""
    marketing_email_wait_s: float = Field(default=0.0, ge=0, le=7 * 86_400.0)
    """with the preference on: how long an offline customer's offer waits in the chat
    before it is emailed"""
    marketing_offer_text: str = Field(
        default="Special offer for you: {discount}% off the {plan} plan, "
                "R$ {price} a month instead of R$ {full_price}.", min_length=1, max_length=500)
    """the offer's text (`{discount}`, `{plan}`, `{price}`, `{full_price}`)"""

    # Journeys.
    journey_shards: int = Field(default=4, ge=1, le=64)
    """journey shard actors: customers are hashed to them (spread over the nodes)"""

    # Outbound webhooks: the wait before each retry (Standard Webhooks' schedule,
    # about 27 hours in all), then dead; an endpoint failing that long is disabled.
    webhook_retry_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18_000.0, 36_000.0, 36_000.0],
        min_length=1, max_length=20)
    """seconds before each webhook retry (about 27 hours in all), then the message is dead"""
    webhook_disable_after_s: float = Field(default=86_400.0, ge=0)
    """an endpoint whose every attempt failed this long is disabled when a message dies"""
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """one webhook attempt's timeout"""
    # Where webhooks may go besides the public internet.
    egress_allow: list[str] = Field(default_factory=list, max_length=100)
    """JSON list of host names, addresses or networks webhooks may reach although internal
    (loopback, private, link-local and the cluster's own addresses are refused otherwise)"""

    # Billing report.
    billing_months: int = Field(default=12, ge=1, le=120)
    """months of revenue counted per conversion in the billing report"""
    email_cost: float = Field(default=0.002, ge=0)
    """messaging cost of one email, in the catalogue's currency"""
    sms_cost: float = Field(default=0.01, ge=0)  # per SMS part (a long SMS is several)
    """messaging cost of one SMS part (a long SMS is billed per part)"""

    # Inbound email signup: unset host means "no signup watcher". Replies are read
    # from `imap_mailbox` and moved to the processed or review folder.
    imap_host: str | None = None
    """IMAP server of the signup mailbox; unset: no signup watcher"""
    imap_port: Port = 993
    """the IMAP server's port"""
    imap_user: str | None = None
    """mailbox login (required with the host)"""
    imap_password: SecretStr | None = None
    """mailbox password (required with the host; never logged or returned)"""
    imap_tls: bool = True
    """implicit TLS with the certificate checked, or plain"""
    imap_mailbox: str = "INBOX"
    """the folder replies arrive in"""
    imap_processed_folder: str = "Processed"
    """where handled messages are moved (created if missing)"""
    imap_review_folder: str = "Needs review"
    """where messages that need a person are moved (created if missing)"""
    imap_poll_s: float = Field(default=15.0, gt=0, le=3600)
    """how often the mailbox is read (`POST /api/signup/poll` reads it now)"""
    imap_timeout_s: float = Field(default=30.0, gt=0)
    """how long one IMAP command may wait for its answer"""
    imap_max_message_bytes: int = Field(default=2_000_000, ge=10_000)
    """larger messages are not downloaded: their headers go to review"""
    signup_keywords: list[str] = Field(default_factory=lambda: [
        "cadastro", "cadastrar", "quero", "inscrever", "assinar", "tenho interesse",
        "sign up", "signup", "subscribe", "join", "interested", "i want"], min_length=1)
    """words that make a reply a signup: whole words, case- and accent-insensitive, in the
    subject and the reply's own text (quoted lines ignored)"""
    unsubscribe_keywords: list[str] = Field(default_factory=lambda: [
        "descadastrar", "descadastro", "não quero", "nao quero", "cancelar", "remover",
        "sair da lista", "parar", "unsubscribe", "remove me", "stop", "opt out"], min_length=1)
    """words that make a reply an unsubscribe (checked before the signup words)"""
    # The authserv-id the inbound relay writes in Authentication-Results (e.g.
    # "mx.operator.example"): a signup whose sender's domain it did not authenticate
    # (DMARC, or aligned DKIM or SPF) goes to review. Unset: not checked (the
    # confirmation link still proves the address).
    signup_authserv_id: str | None = Field(default=None, min_length=1, max_length=255)
    """the authserv-id your inbound relay writes in `Authentication-Results`: a signup
    whose sender's domain it did not authenticate (DMARC, or aligned DKIM or SPF) goes to
    review; unset: not checked"""
    signup_confirmation_subject: str = Field(
        default="Confirme o seu cadastro / Confirm your signup", min_length=1,
        max_length=300)
    """Jinja2 template of the confirmation email's subject"""
    signup_confirmation_text: str = Field(
        default="Olá {{ first_name }},\n\nRecebemos o seu pedido de cadastro. Para "
                "confirmar, abra: {{ confirm_url }}\n\nHi {{ first_name }}, we received your "
                "signup request. To confirm it, open: {{ confirm_url }}\n\nSe não foi você, "
                "ignore esta mensagem / if it was not you, ignore this message.\n",
        min_length=1, max_length=5000)
    """Jinja2 template of the confirmation email (customer variables, `unsubscribe_url`,
    `confirm_url`: the signup stays pending until it is followed)"""

    # Ray: unset means "start or join a local Ray".
    ray_address: str | None = None
    """join this Ray cluster (`auto` on a node of one); unset: start a local Ray"""
    ray_num_cpus: int | None = Field(default=None, ge=1)
    """a local Ray's logical CPUs (unset: 8)"""
    ray_dashboard_port: Port = 8265
    """a local Ray's dashboard port (on 127.0.0.1)"""
    # Placement on a cluster (cluster.yaml): custom resources the send tasks and the
    # long-lived actors and replicas ask for, e.g. {"comms_sender": 1} on worker
    # nodes and {"comms_head": 0.01} on the head. Empty: anywhere.
    send_task_resources: dict[str, float] = Field(default_factory=dict)
    """custom resources a send task asks for on a cluster, e.g. `{"comms_sender": 1}`"""
    actor_resources: dict[str, float] = Field(default_factory=dict)
    """custom resources the long-lived actors and replicas ask for on a cluster, e.g.
    `{"comms_head": 0.01}`"""

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Ray workers run in other directories: pin the path to where settings were read.
        return value.expanduser().resolve()

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"no such time zone: {value!r} (an IANA name)") from None
        return value

    @field_validator("send_windows")
    @classmethod
    def _windows(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            Window.parse(text)  # ValueError names what is wrong
        return value

    @field_validator("smtp_routes", "smpp_routes")
    @classmethod
    def _unique_names(cls, value: list[FurtherRoute]) -> list[FurtherRoute]:
        names = [route.name for route in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"route names must differ: {', '.join(repeated)} repeats")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("mongodb://", "mongodb+srv://")
        ):
            raise ValueError("must start with mongodb:// or mongodb+srv://")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> Self:
        if self.smtp_starttls and self.smtp_tls:
            raise ValueError("COMMS_SMTP_STARTTLS and COMMS_SMTP_TLS are exclusive: pick one")
        return self

    @model_validator(mode="after")
    def _imap_login(self) -> Self:
        if self.imap_host and not (self.imap_user and self.imap_password):
            raise ValueError("COMMS_IMAP_HOST is set: COMMS_IMAP_USER and "
                             "COMMS_IMAP_PASSWORD are required too")
        return self

    @model_validator(mode="after")
    def _whatsapp_signatures(self) -> Self:
        if self.whatsapp_access_token and not self.whatsapp_app_secret:
            raise ValueError("COMMS_WHATSAPP_ACCESS_TOKEN is set: COMMS_WHATSAPP_APP_SECRET "
                             "is required too (the webhook's signatures are checked with it)")
        return self

    def whatsapp_secret(self, local_secret: str) -> str:
        """The app secret that signs the WhatsApp webhook (the embedded server's in local
        mode)."""
        if self.whatsapp_app_secret is not None:
            return self.whatsapp_app_secret.get_secret_value()
        return local_secret if self.embedded_whatsapp else ""

    @property
    def signup_enabled(self) -> bool:
        return bool(self.imap_host)

    @property
    def embedded_mongodb(self) -> bool:
        return self.mongodb_uri is None

    @property
    def embedded_smtp(self) -> bool:
        return self.smtp_host is None

    @property
    def embedded_smsc(self) -> bool:
        return self.smpp_host is None

    @property
    def embedded_telegram(self) -> bool:
        return self.telegram_bot_token is None

    @property
    def embedded_whatsapp(self) -> bool:
        return self.whatsapp_access_token is None

    def smpp_login(self) -> str:
        """The SMSC password (the embedded SMSC's when none is configured)."""
        if self.smpp_password is not None:
            return self.smpp_password.get_secret_value()
        return "local" if self.embedded_smsc else ""


# ("password": a further route's)
SECRET_FIELDS = {"admin_token", "smtp_password", "mongodb_uri", "imap_password",
                 "smpp_password", "password", "telegram_bot_token",
                 "whatsapp_access_token", "whatsapp_app_secret"}


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise ConfigError with one clear line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        name = f"{ENV_PREFIX}{field.upper()}"
        given = error.get("input")
        shown = "" if any(str(part) in SECRET_FIELDS for part in error["loc"]) else given
        hint = f" (got {shown!r})" if isinstance(shown, str | int | float) and shown != "" else ""
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}{hint}" if field else message)
    return "invalid configuration: " + "; ".join(problems)
