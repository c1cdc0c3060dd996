"""Settings: one pydantic-settings model read from `COMMS_*` environment variables.

Every default runs locally: with no `COMMS_MONGODB_URI` an embedded SecantusDB is
started, with no `COMMS_SMTP_HOST` an embedded SMTP sink, with no `COMMS_SMPP_HOST`
an embedded SMSC. `load_settings()` turns a
validation failure into one readable line naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "COMMS_"


class ConfigError(ValueError):
    """A setting is invalid; the message is one line naming the variable."""


Port = Annotated[int, Field(ge=1, le=65535)]


class Telemetry(BaseSettings):
    """Traces and logs: what every process needs, Serve's proxies included (which read
    only these, from their environment)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # OpenTelemetry: spans go over OTLP/HTTP to `{otlp_endpoint}/v1/traces` (a collector,
    # Jaeger, Tempo...). Unset: no tracer is installed and nothing is traced.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    otlp_sample_ratio: float = Field(default=1.0, ge=0, le=1)  # of new traces kept
    # Log lines of replicas, actors and tasks: `json` is one object a line with the trace,
    # request, campaign and session ids where one applies.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @property
    def tracing(self) -> bool:
        return self.otlp_endpoint is not None


class Settings(Telemetry):

    # MongoDB: unset means "start the embedded SecantusDB under data_dir".
    mongodb_uri: SecretStr | None = None
    mongodb_db: str = Field(default="operator_comms", pattern=r"^[A-Za-z0-9_-]{1,63}$")

    # SMTP relay: unset host means "start the embedded sink".
    smtp_host: str | None = None
    smtp_port: Port = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    mail_from: str = "Operator <no-reply@operator.example>"

    # Phone numbers written without a country code are read in this region (ISO 3166).
    default_region: str = Field(default="BR", pattern=r"^[A-Z]{2}$")

    # SMPP 3.4 SMSC for SMS campaigns: unset host means "start the embedded SMSC". Send
    # tasks bind as transmitters; the SMS gateway actor binds as a transceiver and
    # receives the delivery receipts. `smpp_window` submit_sm may await their answer at
    # once per session; `smpp_rate_limit_per_s` caps the SMSC's messages a second
    # (parts count), across the cluster.
    smpp_host: str | None = None
    smpp_port: Port = 2775
    smpp_system_id: str = Field(default="comms", min_length=1, max_length=15)
    smpp_password: SecretStr | None = None
    smpp_source: str = Field(default="4321", pattern=r"^[0-9A-Za-z ]{1,20}$")
    smpp_window: int = Field(default=10, ge=1, le=1000)
    smpp_rate_limit_per_s: float | None = Field(default=None, gt=0)
    smpp_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Keywords a customer texts (any case, accents ignored), answered before the chatbot:
    # a stop word suppresses the number for SMS and is confirmed once; a help word gets
    # the operator's help text.
    sms_stop_keywords: list[str] = Field(
        default_factory=lambda: ["STOP", "PARAR", "SAIR", "CANCELAR"], min_length=1)
    sms_stop_reply: str = Field(
        default="You will get no more SMS from us. Reply HELP for help.", min_length=1,
        max_length=160)
    sms_help_keywords: list[str] = Field(default_factory=lambda: ["HELP", "AJUDA"])
    sms_help_text: str = Field(
        default="Operator customer care: 0800 000 0000. Reply STOP to get no more SMS.",
        min_length=1, max_length=160)
    smsc_receipt_delay_s: float = Field(default=0.5, ge=0, le=3600)  # the embedded SMSC's
    smsc_submit_delay_s: float = Field(default=0.0, ge=0, le=60)  # its answer's latency

    # Sending defaults (a campaign may override workers, batch size, rate).
    # A relay 50 ms away carries about 17 messages/s per connection, so connections are
    # what a task's rate scales with; 8 per task keeps the dashboard's default launch
    # (4 tasks) at 32 connections to the relay.
    send_connections: int = Field(default=8, ge=1, le=64)
    send_max_attempts: int = Field(default=3, ge=1, le=20)
    send_task_cpus: float = Field(default=0.125, gt=0, le=4)
    # Send worker processes started when the app starts and kept idle between
    # campaigns, so a launch of up to this many tasks sends at once instead of waiting
    # for Ray to start processes (a few at a time per node, a second or two of CPU
    # each). 0: Ray starts them on demand.
    send_warm_workers: int = Field(default=8, ge=0, le=256)
    relay_rate_limit_per_s: float | None = Field(default=None, gt=0)
    send_lease_s: float = Field(default=30.0, ge=1, le=3600)
    retry_backoff_s: float = Field(default=1.0, gt=0, le=3600)
    # Outcomes are written in bulk: when this many have queued up, or the oldest has
    # waited send_flush_s. A worker killed mid-batch can leave up to twice this many
    # messages sent but unrecorded, which go out again (same Message-ID) on the rerun.
    send_flush_every: int = Field(default=25, ge=1, le=10_000)
    send_flush_s: float = Field(default=2.0, gt=0, le=60)

    # Where local state lives: embedded database, outbox, generated admin token.
    data_dir: Path = Path(".data")
    admin_token: SecretStr | None = None
    # The admin token is the way in until an admin user exists; set false then, and it
    # opens nothing (while no enabled admin user exists it still does: no lock-out).
    admin_token_enabled: bool = True
    public_url: str = "http://localhost:8000"
    http_host: str = "127.0.0.1"
    http_port: Port = 8000

    # Abuse limits on the public endpoints, requests a minute per replica (0: off); see
    # deployments/limits.py. Generous per address: mobile customers share addresses
    # behind carrier-grade NAT.
    limit_chat_sessions_per_ip: int = Field(default=120, ge=0)
    limit_chat_turns_per_session: int = Field(default=60, ge=0)
    limit_unsubscribe_per_ip: int = Field(default=30, ge=0)
    limit_sign_in_per_ip: int = Field(default=20, ge=0)
    trust_forwarded_for: bool = False  # behind a load balancer that sets X-Forwarded-For

    # Admin jobs (customer generation and import) that run at once; the rest queue.
    admin_jobs_at_once: int = Field(default=2, ge=1, le=32)

    # Reactive marketing.
    marketing_cooldown_s: float = Field(default=10.0, gt=0)
    marketing_discount_pct: float = Field(default=20.0, gt=0, lt=100)
    marketing_plan: str = "Turbo"
    marketing_window_s: float = Field(default=86_400.0, ge=0)
    marketing_offer_ttl_s: float = Field(default=7 * 86_400.0, gt=0)
    # Prefer the chat: an offer whose session has a socket open is not emailed; one
    # whose session is offline is emailed after this wait if it is still offline then.
    marketing_prefer_live: bool = False
    marketing_email_wait_s: float = Field(default=0.0, ge=0, le=7 * 86_400.0)
    marketing_offer_text: str = Field(
        default="Special offer for you: {discount}% off the {plan} plan, "
                "R$ {price} a month instead of R$ {full_price}.", min_length=1, max_length=500)

    # Outbound webhooks: the wait before each retry (Standard Webhooks' schedule,
    # about 27 hours in all), then dead; an endpoint failing that long is disabled.
    webhook_retry_s: list[float] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18_000, 36_000, 36_000],
        min_length=1, max_length=20)
    webhook_disable_after_s: float = Field(default=86_400.0, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Where webhooks may go besides the public internet: host names, addresses or
    # networks (JSON list, e.g. ["crm.internal", "10.20.0.0/16"]). Loopback, private,
    # link-local and the cluster's own addresses are refused unless listed here.
    egress_allow: list[str] = Field(default_factory=list, max_length=100)

    # Billing report: months of revenue counted per conversion, cost of one email.
    billing_months: int = Field(default=12, ge=1, le=120)
    email_cost: float = Field(default=0.002, ge=0)
    sms_cost: float = Field(default=0.01, ge=0)  # per SMS part (a long SMS is several)

    # Inbound email signup: unset host means "no signup watcher". Replies are read
    # from `imap_mailbox` and moved to the processed or review folder.
    imap_host: str | None = None
    imap_port: Port = 993
    imap_user: str | None = None
    imap_password: SecretStr | None = None
    imap_tls: bool = True
    imap_mailbox: str = "INBOX"
    imap_processed_folder: str = "Processed"
    imap_review_folder: str = "Needs review"
    imap_poll_s: float = Field(default=15.0, gt=0, le=3600)
    imap_timeout_s: float = Field(default=30.0, gt=0)
    imap_max_message_bytes: int = Field(default=2_000_000, ge=10_000)
    # Matched as whole words, case- and accent-insensitive, in the subject and the
    # reply's own text (quoted lines ignored). Unsubscribe is checked first.
    signup_keywords: list[str] = Field(default_factory=lambda: [
        "cadastro", "cadastrar", "quero", "inscrever", "assinar", "tenho interesse",
        "sign up", "signup", "subscribe", "join", "interested", "i want"], min_length=1)
    unsubscribe_keywords: list[str] = Field(default_factory=lambda: [
        "descadastrar", "descadastro", "não quero", "nao quero", "cancelar", "remover",
        "sair da lista", "parar", "unsubscribe", "remove me", "stop", "opt out"], min_length=1)
    # The authserv-id the inbound relay writes in Authentication-Results (e.g.
    # "mx.operator.example"): a signup whose sender's domain it did not authenticate
    # (DMARC, or aligned DKIM or SPF) goes to review. Unset: not checked (the
    # confirmation link still proves the address).
    signup_authserv_id: str | None = Field(default=None, min_length=1, max_length=255)
    signup_confirmation_subject: str = Field(
        default="Confirme o seu cadastro / Confirm your signup", min_length=1,
        max_length=300)
    signup_confirmation_text: str = Field(
        default="Olá {{ first_name }},\n\nRecebemos o seu pedido de cadastro. Para "
                "confirmar, abra: {{ confirm_url }}\n\nHi {{ first_name }}, we received your "
                "signup request. To confirm it, open: {{ confirm_url }}\n\nSe não foi você, "
                "ignore esta mensagem / if it was not you, ignore this message.\n",
        min_length=1, max_length=5000)

    # Ray: unset means "start or join a local Ray".
    ray_address: str | None = None
    ray_num_cpus: int | None = Field(default=None, ge=1)
    ray_dashboard_port: Port = 8265
    # Placement on a cluster (cluster.yaml): custom resources the send tasks and the
    # long-lived actors and replicas ask for, e.g. {"comms_sender": 1} on worker
    # nodes and {"comms_head": 0.01} on the head. Empty: anywhere.
    send_task_resources: dict[str, float] = Field(default_factory=dict)
    actor_resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Ray workers run in other directories: pin the path to where settings were read.
        return value.expanduser().resolve()

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

    def smpp_login(self) -> str:
        """The SMSC password (the embedded SMSC's when none is configured)."""
        if self.smpp_password is not None:
            return self.smpp_password.get_secret_value()
        return "local" if self.embedded_smsc else ""


@dataclass(frozen=True)
class Endpoints:
    """Resolved addresses of MongoDB and the SMTP relay (configured or embedded)."""

    mongodb_uri: str
    smtp_host: str
    smtp_port: int
    local_sink: bool = False
    smpp_host: str = ""
    smpp_port: int = 0
    local_smsc: bool = False

    @classmethod
    def configured(cls, settings: Settings) -> Endpoints:
        assert settings.mongodb_uri is not None and settings.smtp_host is not None
        assert settings.smpp_host is not None
        return cls(settings.mongodb_uri.get_secret_value(), settings.smtp_host,
                   settings.smtp_port, smpp_host=settings.smpp_host,
                   smpp_port=settings.smpp_port)

    def __repr__(self) -> str:  # the URI may carry a password: never print it
        return (f"Endpoints(mongodb=<hidden>, smtp={self.smtp_host}:{self.smtp_port}, "
                f"smpp={self.smpp_host}:{self.smpp_port})")


SECRET_FIELDS = {"admin_token", "smtp_password", "mongodb_uri", "imap_password",
                 "smpp_password"}


def load_settings(**overrides: object) -> Settings:
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
        shown = "" if field in SECRET_FIELDS else given
        hint = f" (got {shown!r})" if isinstance(shown, str | int | float) and shown != "" else ""
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{name}: {message}{hint}" if field else message)
    return "invalid configuration: " + "; ".join(problems)
