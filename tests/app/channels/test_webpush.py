"""Web push through the real parts: pywebpush encrypts and signs, the local push service
checks the VAPID signature and decrypts with the subscription's keys, as a browser's
push service and the browser would; which endpoints we post to; what a subscription
must hold."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app.channels.webpush import vapid
from app.channels.webpush.push import (
    FAILED,
    RETRY,
    SENT,
    Push,
    PushLogin,
    PushSender,
    allowed,
    close_session,
)
from app.channels.webpush.subscriptions import PushSubscription
from embedded.push_service import PushService

LOGIN = PushLogin("mailto:noc@operator.example", "mongodb://unused", "unused")


@pytest.fixture(scope="module")
def service():
    running = PushService()
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
async def _closed_session():
    yield
    await close_session()


def _subscription(found: dict):
    from app.channels.webpush.push import Subscription
    return Subscription(found["endpoint"], found["keys"]["p256dh"], found["keys"]["auth"])


async def test_the_push_service_decrypts_exactly_what_was_sent(service: PushService) -> None:
    keys = vapid.new_keys()
    browser = service.subscribe(keys.public_key)
    payload = {"title": "Special offer", "body": "20% off Turbo — até domingo", "url": "/chat/"}
    outcome = await PushSender(LOGIN, keys).send(Push(_subscription(browser), payload, "o1"))
    assert (outcome.status, outcome.code) == (SENT, 201)
    [received] = service.received(browser["endpoint"])
    assert json.loads(received) == payload


async def test_a_gone_subscription_is_final(service: PushService) -> None:
    keys = vapid.new_keys()
    browser = service.subscribe(keys.public_key)
    service.unsubscribe(browser["endpoint"])
    outcome = await PushSender(LOGIN, keys).send(Push(_subscription(browser), {"t": 1}, "o2"))
    assert (outcome.status, outcome.code) == (FAILED, 410)


async def test_a_push_signed_with_another_key_is_refused(service: PushService) -> None:
    browser = service.subscribe(vapid.new_keys().public_key)  # made for another server
    outcome = await PushSender(LOGIN, vapid.new_keys()).send(
        Push(_subscription(browser), {"t": 1}, "o3"))
    assert (outcome.status, outcome.code) == (FAILED, 403)
    assert service.received(browser["endpoint"]) == []


async def test_no_answer_is_worth_a_retry() -> None:
    keys = vapid.new_keys()
    browser = PushService().subscribe(keys.public_key)  # a service that is not running
    outcome = await PushSender(LOGIN, keys).send(Push(_subscription(browser), {}, "o4"))
    assert outcome.status == RETRY


def test_only_allowed_push_services_are_posted_to() -> None:
    services = ["fcm.googleapis.com", "*.notify.windows.com", "http://127.0.0.1:9999"]
    assert allowed("https://fcm.googleapis.com/fcm/send/abc", services)
    assert allowed("https://wns2-par02p.notify.windows.com/w/?token=x", services)
    assert allowed("http://127.0.0.1:9999/push/1", services)
    assert not allowed("http://fcm.googleapis.com/fcm/send/abc", services)  # not HTTPS
    assert not allowed("https://evil.example/fcm.googleapis.com", services)
    assert not allowed("http://127.0.0.1:8000/api/admin", services)
    assert not allowed("https://notify.windows.com.evil.example/x", services)


def test_a_subscription_holds_a_p256_point_and_sixteen_bytes() -> None:
    good = PushService().subscribe()
    assert PushSubscription.model_validate(good).keys.auth == good["keys"]["auth"]
    for keys in ({**good["keys"], "auth": "AAAA"}, {**good["keys"], "p256dh": "A" * 87},
                 {"p256dh": good["keys"]["p256dh"]}):
        with pytest.raises(ValidationError):
            PushSubscription.model_validate({"endpoint": good["endpoint"], "keys": keys})


async def test_a_push_service_no_longer_allowed_is_not_posted_to(service: PushService) -> None:
    keys = vapid.new_keys()
    browser = service.subscribe(keys.public_key)
    narrowed = PushLogin(LOGIN.contact, LOGIN.mongodb_uri, LOGIN.mongodb_db,
                         ("fcm.googleapis.com",))
    outcome = await PushSender(narrowed, keys).send(Push(_subscription(browser), {}, "o5"))
    assert outcome.status == FAILED and "not allowed" in (outcome.error or "")
    assert service.received(browser["endpoint"]) == []
