"""Walking a customer through a journey, as pure logic: from where they are and what
happened (they entered, their wait's timer fired, an event came), the steps they pass
at once, what those steps do (sends, attributes set), and where they wait next or why
they left. No database, no clock of its own: the caller passes `now`.

A split's arm is drawn from a hash of the enrollment and the step, so walking the same
move again (a shard restarted mid-move) picks the same arm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal

from app.audience.timezones import customer_zones
from app.core.windows import Window, wait_for
from app.journeys.definition import (
    EXIT,
    OFFER,
    Branch,
    Exit,
    Journey,
    Offer,
    Scalar,
    Send,
    SetAttribute,
    Split,
    Wait,
    WaitFor,
    WaitUntil,
    targets,
)

MAX_STEPS_PER_MOVE = 500  # (a journey has at most 100 steps and no loop without a wait)
Why = Literal["exit", "converted"]


@dataclass(frozen=True)
class Entered:
    """The customer entered the journey."""


@dataclass(frozen=True)
class TimerFired:
    """The wait the customer is at ran out (a wait-for: its timeout)."""


@dataclass(frozen=True)
class EventHeard:
    type: str


Trigger = Entered | TimerFired | EventHeard


@dataclass(frozen=True)
class SendAction:
    step: str
    channel: str


@dataclass(frozen=True)
class SetAction:
    step: str
    attribute: str
    value: Scalar


@dataclass
class Move:
    """One move of a customer: what the steps passed do, where they wait now (`step`,
    `due_at`, and for a wait-for `waiting_for`), or why they left (`left`); `passed`
    is each step passed with the way it went (a branch's case, a split's arm)."""

    actions: list[SendAction | SetAction] = field(default_factory=list)
    passed: list[tuple[str, str]] = field(default_factory=list)
    step: str | None = None
    due_at: datetime | None = None
    waiting_for: str | None = None
    left: Why | None = None
    arms: dict[str, str] = field(default_factory=dict)


def move(journey: Journey, customer: dict[str, Any], *, at: str | None, trigger: Trigger,
         now: datetime, enrollment_id: str, default_timezone: str,
         windows: Mapping[str, tuple[Window, ...]] | None = None) -> Move:
    """Where `trigger` takes a customer at step `at` (None: not in yet). `windows`:
    each channel's send windows (quiet hours, `COMMS_SEND_WINDOWS`): a send outside
    them waits at its step until they open, then sends."""
    result = Move()
    if isinstance(trigger, Entered):
        target: str = journey.steps[0].id
    else:
        if at is None:
            raise ValueError("a timer or an event moves a customer who is in the journey")
        here = journey.step(at)
        if isinstance(trigger, EventHeard) and trigger.type in journey.exit_on:
            result.left = "converted"
            return result
        if isinstance(here, WaitFor):
            if isinstance(trigger, EventHeard):
                if trigger.type != here.event:
                    raise ValueError(f"step {at!r} waits for {here.event!r}, not {trigger.type!r}")
                target = _to(journey, here, here.on_event or here.next)
                result.passed.append((here.id, "event"))
            else:
                target = _to(journey, here, here.on_timeout or EXIT)
                result.passed.append((here.id, "timeout"))
        elif isinstance(here, Wait | WaitUntil) and isinstance(trigger, TimerFired):
            target = _to(journey, here, here.next)
            result.passed.append((here.id, "done"))
        elif isinstance(here, Send) and isinstance(trigger, TimerFired):
            target = here.id  # a send held for its window: sent now (if open)
        else:
            raise ValueError(f"step {at!r} does not move on {trigger!r}")
    attributes = dict(customer)
    attributes["vars"] = dict(customer.get("vars") or {})
    for _ in range(MAX_STEPS_PER_MOVE):
        if target == EXIT:
            result.left = "exit"
            return result
        step = journey.step(target)
        if isinstance(step, Exit):
            result.passed.append((step.id, "exit"))
            result.left = "exit"
            return result
        if isinstance(step, Wait):
            result.step, result.due_at = step.id, now + timedelta(seconds=step.seconds)
            return result
        if isinstance(step, WaitUntil):
            result.step = step.id
            result.due_at = next_local_time(step.local_time, customer, now, default_timezone)
            return result
        if isinstance(step, WaitFor):
            result.step, result.waiting_for = step.id, step.event
            result.due_at = now + timedelta(seconds=step.timeout_s)
            return result
        if isinstance(step, Branch):
            value = attribute(attributes, step.attribute)
            case = next((c for c in step.cases if _same(c.equals, value)), None)
            result.passed.append((step.id, f"case {step.cases.index(case)}" if case else "else"))
            target = case.next if case else _to(journey, step, step.next)
            continue
        if isinstance(step, Split):
            arm = pick_arm(step, enrollment_id)
            result.passed.append((step.id, arm.name))
            result.arms[step.id] = arm.name
            target = _to(journey, step, arm.next or step.next)
            continue
        if isinstance(step, Send):
            held = wait_for((windows or {}).get(step.channel, ()), customer_zones(
                customer, default_timezone), now) if (windows or {}).get(step.channel) \
                else timedelta(0)
            if held > timedelta(0):  # quiet hours where the customer is
                result.step, result.due_at = step.id, now + held
                return result
            result.actions.append(SendAction(step.id, step.channel))
        elif isinstance(step, Offer):  # (an answer to the customer's own conversation:
            result.actions.append(SendAction(step.id, OFFER))  # no quiet hours hold it)
        elif isinstance(step, SetAttribute):
            result.actions.append(SetAction(step.id, step.attribute, step.value))
            _assign(attributes, step.attribute, step.value)
        result.passed.append((step.id, "done"))
        target = _to(journey, step, step.next)
    raise RuntimeError(f"journey moved {MAX_STEPS_PER_MOVE} steps without a wait")


def reads_customer(journey: Journey, at: str, trigger: Trigger,
                   windows: Mapping[str, tuple[Window, ...]] | None = None) -> bool:
    """Whether moving a customer on from step `at` by `trigger` may read who they are
    (a branch's attribute, a local time, a send's quiet hours where they are): a
    move that cannot is walked without reading the customer."""
    here = journey.step(at)
    if isinstance(trigger, EventHeard):
        return True  # (rare enough: not worth the walk)
    if isinstance(here, Send):
        starts = [here.id]
    elif isinstance(here, WaitFor):
        starts = [here.on_timeout or EXIT]
    else:
        starts = [_to(journey, here, here.next)]
    seen: set[str] = set()
    while starts:
        target = starts.pop()
        if target == EXIT or target in seen:
            continue
        seen.add(target)
        step = journey.step(target)
        if isinstance(step, Branch | WaitUntil) or (
                isinstance(step, Send) and (windows or {}).get(step.channel)):
            return True
        if isinstance(step, Wait | WaitFor | Exit):
            continue
        starts.extend(t if t is not None else journey.following(step.id)
                      for t in targets(step))
    return False


def _to(journey: Journey, step: Any, target: str | None) -> str:
    return target if target is not None else journey.following(step.id)


def attribute(customer: dict[str, Any], path: str) -> Any:
    if path.startswith("vars."):
        return (customer.get("vars") or {}).get(path[5:])
    return customer.get(path)


def _assign(customer: dict[str, Any], path: str, value: Scalar) -> None:
    if path.startswith("vars."):
        customer["vars"][path[5:]] = value
    else:
        customer[path] = value


def _same(expected: Scalar, value: Any) -> bool:
    if isinstance(expected, bool) or isinstance(value, bool):
        return expected is value
    return expected == value


def pick_arm(step: Split, enrollment_id: str):
    """The arm of `step` for this enrollment: by weight, from a hash (the same every
    time it is asked)."""
    digest = hashlib.blake2b(f"{enrollment_id}|{step.id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2 ** 64 * sum(arm.weight for arm in step.arms)
    for arm in step.arms:
        point -= arm.weight
        if point < 0:
            return arm
    return step.arms[-1]


def next_local_time(hh_mm: str, customer: dict[str, Any], now: datetime,
                    default_timezone: str) -> datetime:
    """The next `hh_mm` (after `now`) where the customer is (their first zone)."""
    zone = customer_zones(customer, default_timezone)[0]
    hour, minute = (int(part) for part in hh_mm.split(":"))
    local = now.astimezone(zone)
    day = local.date()
    for offset in range(3):
        candidate = datetime.combine(day + timedelta(days=offset), time(hour, minute),
                                     tzinfo=zone)
        if candidate > now:
            return candidate.astimezone(now.tzinfo)
    raise AssertionError("a local time recurs within three days")
