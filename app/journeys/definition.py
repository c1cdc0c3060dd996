"""What a journey is, as data: its entry event, its steps, its exit rules; checked
before it is stored (every target a step names exists; no loop without a wait).

A step names where the customer goes next (`next`, and a branch's cases, a split's
arms, a wait-for's two outcomes); no target means the step that follows in the list,
and `exit` leaves the journey (as does the end of the list).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.channels.registry import CHANNELS

EXIT = "exit"
StepId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,63}$")]
JourneyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
# What a branch reads and a set step writes: the customer's plan or client flag, or one
# of their variables (imported columns, or set by a journey) as `vars.<name>`.
AttributePath = Annotated[str, StringConstraints(
    pattern=r"^(plan|is_client|timezone|vars\.[A-Za-z0-9_]{1,40})$")]
Scalar = str | int | float | bool | None
YEAR_S = 366 * 86_400.0
_HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class StepBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StepId
    next: StepId | None = Field(default=None, description="where to go after this step "
                                "(none: the following step; `exit`: leave)")


class Wait(StepBase):
    type: Literal["wait"]
    seconds: float = Field(gt=0, le=YEAR_S)


class WaitUntil(StepBase):
    type: Literal["wait_until"]
    local_time: str = Field(description="HH:MM in the customer's time zone (the next one)")

    @model_validator(mode="after")
    def _clock(self) -> WaitUntil:
        if not _HH_MM.match(self.local_time):
            raise ValueError("local_time must be HH:MM (00:00 to 23:59)")
        return self


class WaitFor(StepBase):
    type: Literal["wait_for"]
    event: EventType
    timeout_s: float = Field(gt=0, le=YEAR_S)
    on_event: StepId | None = None  # (none: `next`, or the following step)
    on_timeout: StepId | None = None


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    equals: Scalar
    next: StepId


class Branch(StepBase):
    type: Literal["branch"]
    attribute: AttributePath
    cases: list[Case] = Field(min_length=1, max_length=20)


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,20}$")]
    weight: float = Field(gt=0, le=1_000)
    next: StepId | None = None


class Split(StepBase):
    type: Literal["split"]
    arms: list[Arm] = Field(min_length=1, max_length=10, description="(one arm: a "
                            "promoted winner, everyone goes its way)")


class Send(StepBase):
    type: Literal["send"]
    channel: str = Field(description="a channel that needs no options of its own "
                         "(email, sms, telegram, webpush)")
    subject: str = Field(default="", max_length=300, description="(a channel with subjects)")
    text: str = Field(min_length=1, max_length=20_000)
    html: str | None = Field(default=None, max_length=100_000)
    track: bool = Field(default=True, description="open pixel and tracked links")

    @model_validator(mode="after")
    def _channel(self) -> Send:
        usable = sorted(name for name, channel in CHANNELS.items()
                        if channel.options_model is None)
        if self.channel not in usable:
            raise ValueError(f"channel must be one of {usable}")
        if CHANNELS[self.channel].needs_subject and not self.subject.strip():
            raise ValueError(f"a {self.channel} send needs a subject")
        return self


OFFER = "offer"  # the channel of an offer step's sends


class Offer(StepBase):
    """The operator's counter-offer (`COMMS_MARKETING_PLAN` at
    `COMMS_MARKETING_DISCOUNT_PCT` off, valid `COMMS_MARKETING_OFFER_TTL_S`): into the
    chat inbox of the session the entry event names (`session_id`), on the channel that
    conversation is held in (SMS, Telegram, WhatsApp), by email and by web push; the
    customer accepts it in the chat (`counter_offer_accepted`)."""

    type: Literal["offer"]


class SetAttribute(StepBase):
    type: Literal["set"]
    attribute: AttributePath
    value: Scalar


class Exit(StepBase):
    type: Literal["exit"]


Step = Annotated[Wait | WaitUntil | WaitFor | Branch | Split | Send | Offer | SetAttribute
                 | Exit, Field(discriminator="type")]
WAITING = (Wait, WaitUntil, WaitFor)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: EventType


class Journey(BaseModel):
    """A journey's definition: one version of it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    entry: Entry
    steps: list[Step] = Field(min_length=1, max_length=100)
    exit_on: list[EventType] = Field(default_factory=list, max_length=10,
                                     description="events that end the journey (a conversion)")
    reentry: bool = Field(default=False, description="may a customer enter again after "
                          "leaving (each entry event its own time through)")

    @model_validator(mode="after")
    def _well_formed(self) -> Journey:
        ids = [step.id for step in self.steps]
        if EXIT in ids:
            raise ValueError(f"`{EXIT}` is where a step leaves, not a step id")
        if len(set(ids)) != len(ids):
            raise ValueError(f"step ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
        known = set(ids) | {EXIT}
        for step in self.steps:
            for target in targets(step):
                if target is not None and target not in known:
                    raise ValueError(f"step {step.id!r} goes to {target!r}, which is not a step")
        loop = _loop_without_wait(self)
        if loop:
            raise ValueError(f"steps {' -> '.join(loop)} loop without a wait")
        return self

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def following(self, step_id: str) -> str:
        """The step after `step_id` in the list, or `exit` after the last."""
        ids = [step.id for step in self.steps]
        at = ids.index(step_id)
        return ids[at + 1] if at + 1 < len(ids) else EXIT

    def events(self) -> set[str]:
        """Every event type this journey listens for."""
        return {self.entry.event, *self.exit_on,
                *(s.event for s in self.steps if isinstance(s, WaitFor))}


def targets(step: StepBase) -> list[str | None]:
    """Where a step may go (None: the following step)."""
    if isinstance(step, Branch):
        return [case.next for case in step.cases] + [step.next]
    if isinstance(step, Split):
        return [arm.next or step.next for arm in step.arms]
    if isinstance(step, WaitFor):
        return [step.on_event or step.next, step.on_timeout]
    if isinstance(step, Exit):
        return []
    return [step.next]


def _loop_without_wait(journey: Journey) -> list[str]:
    """A cycle through steps that take no time (a customer would spin in it), or []."""
    edges: dict[str, list[str]] = {}
    for step in journey.steps:
        if isinstance(step, WAITING):
            continue
        edges[step.id] = [t if t is not None else journey.following(step.id)
                          for t in targets(step)]
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in edges.get(node, []):
            if target in edges:
                if state.get(target) == 1:
                    return path[path.index(target):] + [target]
                if state.get(target) is None and (found := visit(target)):
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return []
