"""API models: what clients send (validated, with limits) and the shapes we return."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateCustomers(Strict):
    count: int = Field(ge=1, le=1_000_000)
    domain: str = Field(default="demo.operator.example", pattern=r"^[A-Za-z0-9.-]{1,200}$")
    tag: Tag | None = None


class Audience(Strict):
    """Who receives a campaign. Unsubscribed customers are always left out."""

    tag: Tag | None = None
    plan: str | None = Field(default=None, max_length=100)
    is_client: bool | None = None
    email_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,200}$")


class Templates(Strict):
    subject: str = Field(min_length=1, max_length=1000)
    body_text: str = Field(min_length=1, max_length=200_000)
    body_html: str | None = Field(default=None, max_length=500_000)


class CampaignCreate(Templates):
    name: Name
    audience: Audience = Field(default_factory=Audience)


class PreviewRequest(Templates):
    customer_email: str | None = Field(default=None, max_length=320)


class LaunchOptions(Strict):
    workers: int = Field(default=4, ge=1, le=512, description="send tasks in flight")
    batch_size: int = Field(default=50, ge=1, le=5000)
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=100_000)
    connections: int | None = Field(default=None, ge=1, le=64,
                                    description="SMTP connections per send task")

