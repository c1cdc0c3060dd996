"""Several routes for one channel (relays, SMSCs): each connection of a send task picks a
route by weight among those in service, and a route that cannot be reached is taken out
for a while (a circuit breaker) so its share goes to the others.

What counts against a route is what says nothing about a message: no answer at all (a
refused or dropped connection, a timeout; outcome code None) or a refused login. A
route's breaker opens after `route_breaker_failures` of those in a row (one refused
login is enough), for `route_breaker_open_s`, doubling each time it opens again up to
MAX_OPEN_FACTOR times; then one connection tries it (half open): an answer closes it, a
failure opens it again. Breakers are per worker process (each learns by its own first
failures, which cost a refused connection); the transitions go to the rate limiter
actor (`report`), which shows every route's health to operators.

With one route there is nothing to fail over to: it is always tried, as before, and a
refused login stops the campaign. With several, a message whose route failed goes back
to its batch's queue (the send path requeues it, no attempt counted) and is sent over
another route; when every route is out, a send fails at once as a transient failure
and waits for its retry's backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from app.channels.base import Channel, Route, SendOutcome
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.statuses import AttemptOutcome

MAX_OPEN_FACTOR = 10
MAX_MOVES = 8  # (send_moving)
PROBE_S = 60.0  # a half-open trial that never reports back frees the route after this
Report = Callable[[str, bool, str | None], None]  # (route key, in service, last error)


def route_limits(routes: list[Route]) -> dict[str, float]:
    """The routes' ceilings, as the rate limiter's keys."""
    return {route.key: route.ceiling for route in routes if route.ceiling}


def unanswered(outcome: Any) -> bool:
    """Whether an outcome says the route, not the message, failed: no answer at all,
    or a refused login."""
    return outcome.status == AttemptOutcome.AUTH or (
        outcome.status == AttemptOutcome.RETRY and outcome.code is None)


class Breaker:
    """One route's breaker in this process (see the module's docstring)."""

    def __init__(self, failures: int, open_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.failures_to_open, self.open_s, self.clock = failures, open_s, clock
        self.failures = 0
        self.openings = 0  # in a row, without an answer between them
        self.open_until: float | None = None  # None: closed
        self.probe_until = 0.0  # a half-open trial is out until then
        self.last_error: str | None = None

    @property
    def closed(self) -> bool:
        return self.open_until is None

    def usable(self) -> bool:
        """Closed; or open past its time and no trial out (then this caller is it)."""
        if self.open_until is None:
            return True
        now = self.clock()
        if now < self.open_until or now < self.probe_until:
            return False
        self.probe_until = now + PROBE_S
        return True

    def failed(self, error: str | None, *, login: bool = False) -> bool:
        """A failure on this route; True if it took the route out just now."""
        self.failures += 1
        self.last_error = error
        half_open = self.open_until is not None
        if not (half_open or login or self.failures >= self.failures_to_open):
            return False
        self.openings += 1
        factor = min(MAX_OPEN_FACTOR, 2 ** (self.openings - 1))
        self.open_until = self.clock() + self.open_s * factor
        self.probe_until = 0.0
        return not half_open

    def answered(self) -> bool:
        """The route answered; True if that put it back in service."""
        reopened = self.open_until is not None
        self.failures = self.openings = 0
        self.open_until = None
        self.probe_until = 0.0
        return reopened


class Breakers:
    """This process's breakers, by route key and target (a changed relay is a new one)."""

    def __init__(self, failures: int, open_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.failures, self.open_s, self.clock = failures, open_s, clock
        self.by_route: dict[tuple[str, Hashable], Breaker] = {}

    def of(self, route: Route) -> Breaker:
        key = (route.key, route.target)
        breaker = self.by_route.get(key)
        if breaker is None:
            breaker = self.by_route[key] = Breaker(self.failures, self.open_s, self.clock)
        return breaker


_breakers: dict[tuple[int, float], Breakers] = {}


def process_breakers(failures: int, open_s: float) -> Breakers:
    """The breakers of this process (shared by its send tasks) under these settings."""
    found = _breakers.get((failures, open_s))
    if found is None:
        found = _breakers[(failures, open_s)] = Breakers(failures, open_s)
    return found


Opener = Callable[[Route], Awaitable[Any]]  # a route's sender for one connection


class RoutedSender:
    """One connection's senders, one per route it has used, and the route it is on."""

    def __init__(self, routes: list[Route], breakers: Breakers, open_sender: Opener,
                 report: Report | None = None, rng: random.Random | None = None):
        self.routes = routes
        self.breaker = {route.key: breakers.of(route) for route in routes}
        self.open_sender, self.report = open_sender, report
        self.rng = rng or random.Random()
        self.senders: dict[str, Any] = {}
        self.current: Route | None = None
        self.probing = False  # the current route is out and this connection tries it
        self.used: Route | None = None  # the route of the last send
        self.moved = False  # the last send failed on its route and another can carry it

    def breaker_of(self, route: Route) -> Breaker:
        return self.breaker[route.key]

    def route(self) -> Route | None:
        """The route the next send takes (None: every route is out)."""
        if len(self.routes) == 1:
            return self.routes[0]
        if self.current is not None and (self.probing
                                         or self.breaker_of(self.current).closed):
            return self.current
        self.current = self._pick(exclude=None)
        return self.current

    def _pick(self, exclude: Route | None) -> Route | None:
        self.probing = False
        closed = [r for r in self.routes if r is not exclude and self.breaker_of(r).closed]
        if closed:
            return self.rng.choices(closed, [r.weight for r in closed])[0]
        for route in self.routes:  # every one is out: one whose time is up may try
            if route is not exclude and self.breaker_of(route).usable():
                self.probing = True
                return route
        return None

    async def send(self, message: Any) -> Any:
        route = self.route()
        self.used, self.moved = route, False
        if route is None:
            return _every_route_out(self.routes, self.breaker)
        sender = self.senders.get(route.key)
        if sender is None:
            sender = self.senders[route.key] = await self.open_sender(route)
        outcome = await sender.send(message)
        self.probing = False
        breaker = self.breaker_of(route)
        if unanswered(outcome):
            if breaker.failed(outcome.error, login=outcome.status == AttemptOutcome.AUTH):
                self._tell(route, False, outcome.error)
            if len(self.routes) > 1:
                self.current = self._pick(exclude=route)
                self.moved = self.current is not None
        elif breaker.answered():
            self._tell(route, True, None)
        return outcome

    def _tell(self, route: Route, in_service: bool, error: str | None) -> None:
        if self.report is not None:
            self.report(route.key, in_service, error)


def routed_senders(channel: Channel, settings: Settings, endpoints: Endpoints, n: int,
                   report: Report | None = None) -> list[RoutedSender]:
    """n connections over the channel's routes, each opening its route's sender on
    first use; give them back with `close_routed`."""
    routes = channel.routes(settings, endpoints)
    breakers = process_breakers(settings.route_breaker_failures,
                                settings.route_breaker_open_s)

    async def open_sender(route: Route) -> Any:
        return await channel.open_sender(settings, route)

    return [RoutedSender(routes, breakers, open_sender, report) for _ in range(n)]


def close_routed(channel: Channel, senders: list[RoutedSender]) -> None:
    """Give each route's senders back to the channel (a pool may keep them)."""
    for route in senders[0].routes if senders else ():
        used = [s.senders[route.key] for s in senders if route.key in s.senders]
        if used:
            channel.close_senders(route, used)


async def send_moving(sender: RoutedSender, message: Any) -> Any:
    """Send, and again over the next route while the one taken failed and another
    took over (a few times at most: each failure counts toward its breaker)."""
    outcome = await sender.send(message)
    for _ in range(MAX_MOVES):
        if not sender.moved:
            break
        outcome = await sender.send(message)
    return outcome


def _every_route_out(routes: list[Route], breaker: dict[str, Breaker]) -> SendOutcome:
    errors = "; ".join(f"{r.key}: {breaker[r.key].last_error}" for r in routes)
    return SendOutcome(AttemptOutcome.RETRY, None, f"every route is out ({errors})"[:300])


class RouteHealth:
    """The cluster's view of each route, from the transitions the worker processes
    report (the rate limiter actor keeps it): the last word wins, so a route is out
    from the first process that took it out until one hears it answer again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.routes: dict[str, dict[str, Any]] = {}

    def heard(self, key: str, in_service: bool, error: str | None) -> None:
        state = self.routes.setdefault(key, {"outages": 0, "out_since": None,
                                             "last_error": None})
        if in_service:
            state["out_since"] = None
            return
        if state["out_since"] is None:
            state["outages"] += 1
            state["out_since"] = self.clock()
        state["last_error"] = error

    def view(self) -> dict[str, dict[str, Any]]:
        """Per route: "in service" or "out", for how long, how many outages, why."""
        now = self.clock()
        return {key: {"state": "in service" if state["out_since"] is None else "out",
                      "out_for_s": None if state["out_since"] is None
                      else round(now - state["out_since"], 1),
                      "outages": state["outages"], "last_error": state["last_error"]}
                for key, state in self.routes.items()}
