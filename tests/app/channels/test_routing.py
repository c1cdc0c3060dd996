"""Routes and breakers as pure logic: which route a connection takes, when a route is
taken out and let back, and what operators are told. (The two-relay campaign against
real SMTP servers is in tests/app/campaigns/test_sending.py.)"""

from __future__ import annotations

import asyncio
import random

from app.channels.base import Route, SendOutcome
from app.channels.routing import Breaker, Breakers, RoutedSender, RouteHealth, send_moving

SENT = SendOutcome("sent", 250)
DROPPED = SendOutcome("retry", None, "SMTPServerDisconnected: connection lost")
REFUSED_LOGIN = SendOutcome("auth", 535, "authentication failed")
SLOW_DOWN = SendOutcome("retry", 421, "4.7.0 slow down")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Relay:
    """A route's sender that answers what the test says, and keeps what it carried."""

    def __init__(self, answer: SendOutcome = SENT) -> None:
        self.answer = answer
        self.carried: list[str] = []

    async def send(self, message: str) -> SendOutcome:
        if self.answer.status == "sent":
            self.carried.append(message)
        return self.answer


def routed(relays: dict[str, Relay], weights: dict[str, float], breakers: Breakers,
           events: list | None = None, seed: int = 7) -> RoutedSender:
    routes = [Route(key, weights[key], None, key) for key in relays]

    async def open_sender(route: Route) -> Relay:
        return relays[route.key]

    report = (lambda *event: events.append(event)) if events is not None else None
    return RoutedSender(routes, breakers, open_sender, report, random.Random(seed))


def test_a_breaker_opens_after_failures_in_a_row_and_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, open_s=30, clock=clock)
    assert not breaker.failed("x") and not breaker.failed("x")
    assert breaker.answered() is False  # an answer between failures starts the count again
    assert not breaker.failed("x") and not breaker.failed("x")
    assert breaker.failed("refused") and not breaker.closed
    assert not breaker.usable()
    clock.now += 30
    assert breaker.usable()  # half open: one caller tries
    assert not breaker.usable()  # and only one
    assert not breaker.failed("again")  # still out (not newly), for twice as long
    clock.now += 59
    assert not breaker.usable()
    clock.now += 1
    assert breaker.usable() and breaker.answered() and breaker.closed


def test_a_refused_login_takes_a_route_out_at_once() -> None:
    breaker = Breaker(failures=3, open_s=30, clock=Clock())
    assert breaker.failed("535", login=True) and not breaker.closed


def test_connections_share_routes_by_weight() -> None:
    breakers = Breakers(3, 30, Clock())
    relays = {"relay": Relay(), "relay:backup": Relay()}
    taken = [routed(relays, {"relay": 3, "relay:backup": 1}, breakers, seed=n).route()
             for n in range(400)]
    share = sum(1 for route in taken if route is not None and route.key == "relay") / 400
    assert 0.68 <= share <= 0.82  # 3 to 1


def test_a_route_that_drops_hands_its_messages_to_the_other_and_is_reported() -> None:
    breakers, events = Breakers(2, 30, Clock()), []
    main, backup = Relay(DROPPED), Relay()
    senders = [routed({"relay": main, "relay:backup": backup}, {"relay": 1000,
                                                                 "relay:backup": 1},
                      breakers, events, seed=n) for n in range(3)]

    async def run() -> list[SendOutcome]:
        return [await send_moving(sender, f"m{n}") for n, sender in enumerate(senders)]

    outcomes = asyncio.run(run())
    assert outcomes == [SENT, SENT, SENT]
    assert backup.carried == ["m0", "m1", "m2"]
    assert events == [("relay", False, DROPPED.error)]  # out once, after two failures
    assert all(s.route() is not None and s.route().key == "relay:backup" for s in senders)


def test_answers_that_are_about_the_message_keep_the_route() -> None:
    breakers = Breakers(1, 30, Clock())
    main = Relay(SLOW_DOWN)
    sender = routed({"relay": main, "relay:backup": Relay()}, {"relay": 1000,
                                                              "relay:backup": 0.001},
                    breakers)
    outcome = asyncio.run(sender.send("m"))
    assert outcome == SLOW_DOWN and not sender.moved
    assert breakers.of(sender.routes[0]).closed


def test_when_every_route_is_out_a_send_fails_at_once_and_a_trial_brings_one_back() -> None:
    clock, events = Clock(), []
    breakers = Breakers(1, 30, clock)
    main, backup = Relay(REFUSED_LOGIN), Relay(DROPPED)
    sender = routed({"relay": main, "relay:backup": backup}, {"relay": 1, "relay:backup": 1},
                    breakers, events)

    async def send() -> SendOutcome:
        return await sender.send("m")

    first = asyncio.run(send())
    assert sender.moved  # the other route takes it
    second = asyncio.run(send())
    assert {first.status, second.status} == {"auth", "retry"} and not sender.moved
    out = asyncio.run(send())
    assert out.status == "retry" and out.code is None and "every route is out" in out.error
    assert main.carried == backup.carried == []
    clock.now += 30
    backup.answer = SENT
    trials = [asyncio.run(send()) for _ in range(3)]  # main tried first, fails again
    assert trials[0].status == "auth" and trials[1:] == [SENT, SENT]
    assert backup.carried == ["m", "m"] and not breakers.of(sender.routes[0]).closed
    assert ("relay:backup", True, None) in events


def test_one_route_is_always_tried_and_its_outage_still_reported() -> None:
    events: list = []
    main = Relay(DROPPED)
    sender = routed({"relay": main}, {"relay": 1}, Breakers(1, 30, Clock()), events)
    for _ in range(3):
        outcome = asyncio.run(sender.send("m"))
        assert outcome == DROPPED and not sender.moved
    main.answer = SENT
    assert asyncio.run(sender.send("m")) == SENT
    assert events == [("relay", False, DROPPED.error), ("relay", True, None)]


def test_the_clusters_view_of_a_route_is_the_last_word_of_any_worker() -> None:
    clock = Clock()
    health = RouteHealth(clock)
    health.heard("relay", False, "refused")
    clock.now += 5
    health.heard("relay", False, "refused again")  # another worker: the same outage
    assert health.view()["relay"] == {"state": "out", "out_for_s": 5.0, "outages": 1,
                                      "last_error": "refused again"}
    health.heard("relay", True, None)
    assert health.view()["relay"]["state"] == "in service"
    health.heard("relay", False, "down")
    assert health.view()["relay"]["outages"] == 2
