"""API models of journeys: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from app.core.models import Any_, Reply, Strict
from app.journeys.definition import EventType, Journey, JourneyKey

EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:|-]{1,100}$")]
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
EVENTS_AT_ONCE = 1_000


class NewJourney(Strict):
    key: JourneyKey = Field(description="the journey's name in URLs (a-z, 0-9, - and _)")
    definition: Journey


class JourneyEdit(Strict):
    definition: Journey


class JourneyCheck(Strict):
    definition: Journey


class JourneyEvent(Strict):
    id: EventId = Field(description="the event's own id: the same id twice is one event")
    type: EventType
    customer_id: CustomerId | None = Field(default=None, description="who it is about")
    session_id: SessionId | None = Field(default=None, description=(
        "the chat session it happened in (an offer step offers there); without "
        "`customer_id`, the session is who it is about"))
    at: datetime | None = Field(default=None, description="when it happened (now if none)")

    @model_validator(mode="after")
    def _about_someone(self) -> JourneyEvent:
        if self.customer_id is None and self.session_id is None:
            raise ValueError("an event names customer_id or session_id")
        return self


class JourneyEvents(Strict):
    events: list[JourneyEvent] = Field(min_length=1, max_length=EVENTS_AT_ONCE)


class EventsTaken(Reply):
    stored: int = Field(description="events kept and handed to the journeys")
    repeated: int = Field(description="events with an id already kept (ignored)")


class Checked(Reply):
    valid: bool
    listens_for: list[str]


class JourneyVersionView(Reply):
    version: int
    status: str
    created_at: str
    entered: int
    at: dict[str, int]
    passed: dict[str, dict[str, int]]
    left: dict[str, int]
    converted: dict[str, dict[str, int]]
    experiments: list[Any_] = Field(description="each split: per arm, who went its way, "
                                    "who converted, the rate and its 95% interval")


class Promotion(Strict):
    step: str = Field(max_length=40, description="the split step")
    arm: str = Field(max_length=20, description="the arm everyone goes by from now on")


class JourneyView(Reply):
    key: str
    name: str
    status: str
    version: int
    definition: Any_
    steps: list[Any_] = Field(description="each step of this version with who is at it "
                              "(all versions) and how many left it by each way")
    versions: list[JourneyVersionView]


class JourneyList(Reply):
    journeys: list[JourneyView]


class Archived(Reply):
    key: str
    left: int = Field(description="customers who were inside and left")
