"""Where MongoDB, the SMTP relay, the SMSC, the Telegram Bot API and the WhatsApp Cloud
API are, once resolved: the configured ones, or the embedded ones the local-services
actor started."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.config import Settings


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
    telegram_api: str = ""  # the Bot API's base URL (configured, or the embedded server's)
    local_telegram: bool = False
    whatsapp_api: str = ""  # the Cloud API's base URL (configured, or the embedded one's)
    local_whatsapp: bool = False
    local_whatsapp_secret: str = field(default="", repr=False)  # the embedded server's app
    # secret (its webhook signatures); a configured Cloud API's is a setting
    local_push: str = ""  # the embedded push service's origin (local mode), allowed too

    @classmethod
    def configured(cls, settings: Settings) -> Endpoints:
        assert settings.mongodb_uri is not None and settings.smtp_host is not None
        assert settings.smpp_host is not None
        return cls(settings.mongodb_uri.get_secret_value(), settings.smtp_host,
                   settings.smtp_port, smpp_host=settings.smpp_host,
                   smpp_port=settings.smpp_port, telegram_api=settings.telegram_api_url,
                   whatsapp_api=settings.whatsapp_api_url)

    def __repr__(self) -> str:  # the URI may carry a password: never print it
        return (f"Endpoints(mongodb=<hidden>, smtp={self.smtp_host}:{self.smtp_port}, "
                f"smpp={self.smpp_host}:{self.smpp_port}, telegram={self.telegram_api}, "
                f"whatsapp={self.whatsapp_api})")
