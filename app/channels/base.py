"""The one interface the send path calls for every channel: compose a customer's message,
open senders, say what an outcome adds to the delivery, count what the relay's rate
counts. A channel's facts (its addresses, its relay, its units, its receipts) live in
its own package behind this interface; the campaign code never asks which channel it
holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from app.audience.customers import template_variables
from app.audience.suppressions import ALL
from app.channels.templates import CompiledTemplates
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime


@dataclass(frozen=True)
class Composed:
    """A customer's message, ready for a sender."""

    message: Any  # what the channel's sender sends
    message_id: str  # the same for every attempt of a delivery (receivers deduplicate)
    units: int = 1  # what the relay's rate limit counts (an SMS's parts)


@dataclass(frozen=True)
class SendOutcome:
    """What a send came to (a channel's outcome may add to it, as an SMS's part ids)."""

    status: str  # sent | retry | failed | auth (a refused login) | skipped
    code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Route:
    """One way out for a channel's messages (a relay, an SMSC; `app.channels.routing`)."""

    key: str  # "relay", "relay:backup": its name in rates, health and metrics
    weight: float
    ceiling: float | None  # units a second across the cluster (None: no cap)
    target: Hashable  # the channel's connection details (host, port, login)


def main_then_further(key: str, main: Route, further: Iterable[tuple[Any, Hashable]]
                      ) -> list[Route]:
    """A channel's routes: its main one, then each further one of the settings (a
    `FurtherRoute` with its target) as "<key>:<name>"."""
    return [main, *(Route(f"{key}:{route.name}", route.weight, route.rate_limit_per_s,
                          target) for route, target in further)]


class Outcome(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def code(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...


class Sender(Protocol):
    async def send(self, message: Any) -> Any: ...


def variables(customer: dict, unsubscribe_url: str) -> dict[str, Any]:
    """What a template sees: the customer's fields, any imported columns, and their own
    unsubscribe link."""
    return {**template_variables(customer), "unsubscribe_url": unsubscribe_url}


def personalised(templates: CompiledTemplates, customer: dict, unsubscribe_url: str
                 ) -> tuple[str, str, str | None]:
    """(subject, text, html) of the templates for this customer."""
    return templates.render(variables(customer, unsubscribe_url))


class Channel(ABC):
    """A way to reach a customer. One instance per channel, stateless (see `registry`)."""

    name: ClassVar[str]
    relay: ClassVar[str]  # what a refused login is called in a campaign's failure reason
    receipts: ClassVar[tuple[str, ...]] = ()  # counts a delivery receipt adds (delivered..)
    takes_html: ClassVar[bool] = False  # whether a campaign may give an HTML body
    needs_subject: ClassVar[bool] = False  # whether a campaign must give a subject
    confirms: ClassVar[tuple[str, ...]] = ()  # what it reports of a message later
    # (delivered, read): what may confirm it for a fallback rule (`app.campaigns.fallback`)
    reports_statuses: ClassVar[bool] = False  # its provider posts statuses later, each
    # naming the delivery (`app.channels.statuses`)
    options_model: ClassVar[type | None] = None  # a campaign's options for this channel
    # (a pydantic model: a WhatsApp template, say), given to `compose`

    def unreachable(self, customer: dict) -> str | None:
        """Why this customer cannot be sent to by this channel (None: they can)."""
        opted_out = customer.get("opted_out", ())
        if self.name in opted_out or ALL in opted_out:
            return f"suppressed for {self.name}"
        return None

    @abstractmethod
    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        """The customer's message of a campaign (raises TemplateProblem); `options` the
        campaign's for this channel (`options_model`), if any."""

    @abstractmethod
    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        """Where this channel's messages may go: the main relay first, then the further
        ones of the settings (each with its weight and ceiling)."""

    @abstractmethod
    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        """A sender over the route, sending one message at a time."""

    def close_senders(self, route: Route, senders: list[Sender]) -> None:
        """The batch is done with these senders of the route (a pool may keep them)."""
        return None

    def stored_fields(self) -> dict[str, Any]:
        """What every delivery of this channel stores about it."""
        return {}

    def sent_fields(self, outcome: Outcome) -> dict[str, Any]:
        """What a sent outcome adds to its delivery (an SMS's part ids, say)."""
        return {}

    def address_of(self, customer: dict) -> str | None:
        """The address this channel sends the customer to (its suppression list key)."""
        return None

    def hard_bounce(self, outcome: Outcome) -> str | None:
        """Why this failed outcome means the address takes nothing more on this channel
        (a mailbox that does not exist, a number that is not valid); None otherwise."""
        return None

    def throttled(self, outcome: Outcome) -> bool:
        """Whether this answer says "slow down" (the route's rate adapts, and the
        message is deferred rather than retried as a failure)."""
        return False

    def delivered_rate(self, counts: dict[str, int]) -> float:
        """The campaign view's delivered rate: accepted by the relay, of those attempted."""
        attempted = counts.get("sent", 0) + counts.get("failed", 0) + counts.get("dead", 0)
        return round(counts.get("sent", 0) / attempted, 4) if attempted else 0.0

    def preview(self, text: str, customer: dict) -> dict[str, Any] | None:
        """What a campaign preview shows about the rendered text, under this channel's
        name (None: nothing beyond the text)."""
        return None
