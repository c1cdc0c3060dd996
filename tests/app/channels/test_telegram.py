"""Telegram against the local Bot API server: what the Bot API answers becomes the send
path's outcomes, the deep link ties a chat to one customer only when we signed it, and
updates read as the chatbot takes them."""

from __future__ import annotations

import pytest
from telegram.error import TelegramError

from app.channels.registry import channel_named
from app.channels.telegram import linking
from app.channels.telegram.api import (
    LOCAL_TOKEN,
    BotLogin,
    TelegramMessage,
    TelegramSender,
    set_webhook,
)
from app.channels.telegram.updates import (
    BLOCKED,
    PRESS,
    TEXT,
    Update,
    genuine,
    inbound,
    webhook_secret,
)
from app.core.signing_keys import KeyRing, SigningKey
from embedded.telegram_api import TelegramApi

TELEGRAM = channel_named("telegram")


@pytest.fixture
def bot_api():
    api = TelegramApi(throttle_per_s=0)
    api.start()
    yield api
    api.stop()


async def test_the_bot_api_answers_become_outcomes(bot_api: TelegramApi) -> None:
    sender = TelegramSender(BotLogin(bot_api.url, LOCAL_TOKEN))
    bot_api.chat(501).opened = True
    sent = await sender.send(TelegramMessage(501, "Hello", "d1", ("Yes", "No")))
    assert sent.status == "sent" and sent.message_id is not None
    assert bot_api.sent(501)[0]["reply_markup"] == {"inline_keyboard": [
        [{"text": "Yes", "callback_data": "1"}], [{"text": "No", "callback_data": "2"}]]}

    bot_api.chat(502).opened = True
    bot_api.chat(502).blocked = True
    blocked = await sender.send(TelegramMessage(502, "Hello", "d2"))
    assert (blocked.status, blocked.code) == ("failed", 403)
    assert TELEGRAM.hard_bounce(blocked) == "blocked the bot"

    unknown = await sender.send(TelegramMessage(503, "Hello", "d3"))
    assert (unknown.status, unknown.code) == ("failed", 400)
    assert TELEGRAM.hard_bounce(unknown) == "chat not found"

    wrong = await TelegramSender(BotLogin(bot_api.url, "1:wrong-secret")).send(
        TelegramMessage(501, "Hello", "d4"))
    assert wrong.status == "auth" and "wrong-secret" not in (wrong.error or "")
    with pytest.raises(TelegramError) as refused:
        await set_webhook(BotLogin(bot_api.url, "1:wrong-secret"), "http://x.example/", "s")
    assert "wrong-secret" not in str(refused.value)


async def test_too_many_requests_asks_the_route_to_slow_down() -> None:
    api = TelegramApi(throttle_per_s=1)
    api.start()
    try:
        api.chat(601).opened = True
        sender = TelegramSender(BotLogin(api.url, LOCAL_TOKEN))
        outcomes = [await sender.send(TelegramMessage(601, f"m{n}", f"d{n}"))
                    for n in range(4)]
    finally:
        api.stop()
    slowed = [o for o in outcomes if o.status == "retry"]
    assert slowed and all(o.code == 429 and TELEGRAM.throttled(o) for o in slowed)
    assert TELEGRAM.hard_bounce(slowed[0]) is None


def test_only_a_link_we_signed_ties_a_chat_to_its_customer() -> None:
    keys = KeyRing.of("secret-one")
    key = keys.signing("links")
    link = linking.deep_link("operator_bot", "cust-42", key)
    parameter = link.split("start=")[1]
    assert link.startswith("https://t.me/operator_bot?start=")
    assert len(parameter) <= 64 and all(c.isalnum() or c in "-_" for c in parameter)
    assert linking.customer_of(parameter, keys) == "cust-42"
    forged = parameter[:16] + linking.start_parameter("cust-43", key)[16:]
    assert linking.customer_of(forged, keys) is None  # another id under this MAC
    assert linking.customer_of(parameter, KeyRing.of("another-secret")) is None
    assert linking.customer_of("short", keys) is None
    with pytest.raises(linking.TooLong):
        linking.start_parameter("x" * 60, key)


def test_the_webhook_secret_follows_the_link_keys() -> None:
    keys = KeyRing.of("secret-one")
    secret = webhook_secret(keys.signing("links"))
    assert genuine(secret, keys) and not genuine(secret + "x", keys)
    assert not genuine(None, keys) and not genuine("", keys)
    retired = KeyRing(tuple(
        SigningKey(k.kid, k.purpose, k.secret, k.created_at, retired_at=k.created_at)
        for k in keys.keys))
    assert not genuine(secret, retired)


def test_updates_read_as_the_chatbot_takes_them() -> None:
    text = inbound(Update.model_validate({"update_id": 1, "message": {
        "message_id": 5, "chat": {"id": 77, "type": "private"}, "text": "/start abc_DEF",
        "from": {"id": 77, "first_name": "Ana"}, "date": 0}}))
    assert text is not None and (text.kind, text.chat_id) == (TEXT, 77)
    assert text.start_parameter == "abc_DEF"
    press = inbound(Update.model_validate({"update_id": 2, "callback_query": {
        "id": "q1", "from": {"id": 77, "first_name": "Ana"}, "data": "2",
        "chat_instance": "x"}}))
    assert press is not None and (press.kind, press.text, press.callback_id) == (
        PRESS, "2", "q1")
    blocked = inbound(Update.model_validate({"update_id": 3, "my_chat_member": {
        "chat": {"id": 77, "type": "private"}, "date": 0, "from": {"id": 77},
        "old_chat_member": {"status": "member"},
        "new_chat_member": {"status": "kicked"}}}))
    assert blocked is not None and blocked.kind == BLOCKED
    group = inbound(Update.model_validate({"update_id": 4, "message": {
        "message_id": 6, "chat": {"id": -5, "type": "group"}, "text": "hi"}}))
    assert group is None
