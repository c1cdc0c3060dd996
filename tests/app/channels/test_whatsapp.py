"""The WhatsApp channel's own logic: the Cloud API's request shapes and answers (against
the local Cloud API server, through the real HTTP client), the webhook's signature and
handshake, what a notification holds, the 24-hour window, and what confirms a message
for a fallback rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from app.campaigns.fallback import Confirm, wait_level
from app.channels.templates import TemplateProblem, compile_templates
from app.channels.whatsapp.api import (
    AUTH,
    FAILED,
    RETRY,
    SENT,
    CloudLogin,
    TemplateCall,
    WhatsAppMessage,
    WhatsAppSender,
    classify,
    payload,
)
from app.channels.whatsapp.channel import WhatsAppChannel, in_window
from app.channels.whatsapp.webhook import (
    Notification,
    genuine,
    inbound,
    signature,
    statuses,
    verified,
    verify_token,
)
from app.core.signing_keys import LINKS, KeyRing, SigningKey
from embedded.whatsapp_api import WhatsAppApi
from tests.app.channels.test_channels import RUNTIME

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_payloads_follow_the_cloud_api_shapes() -> None:
    assert payload(WhatsAppMessage("5521", "d1", text="Hi")) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "5521",
        "type": "text", "text": {"preview_url": False, "body": "Hi"}}
    template = payload(WhatsAppMessage("5521", "d1", template=TemplateCall(
        "campaign_message", "pt_BR", ("Olá Ana",))))
    assert template["template"] == {"name": "campaign_message", "language": {"code": "pt_BR"},
                                    "components": [{"type": "body", "parameters": [
                                        {"type": "text", "text": "Olá Ana"}]}]}
    buttons = payload(WhatsAppMessage("5521", "t", text="Q?", options=("Yes", "No")))
    assert buttons["interactive"]["type"] == "button"
    assert [b["reply"] for b in buttons["interactive"]["action"]["buttons"]] == [
        {"id": "1", "title": "Yes"}, {"id": "2", "title": "No"}]
    listed = payload(WhatsAppMessage("5521", "t", text="Q?", options=(
        "Billing", "Support", "Plans", "A much longer option than a row title allows")))
    rows = listed["interactive"]["action"]["sections"][0]["rows"]
    assert listed["interactive"]["type"] == "list" and [r["id"] for r in rows] == [
        "1", "2", "3", "4"]
    assert len(rows[3]["title"]) == 24 and rows[3]["description"].startswith("A much")


def test_answers_become_outcomes() -> None:
    def error(code: int) -> dict:
        return {"error": {"message": f"(#{code}) x", "code": code}}
    assert classify(401, error(190)).status == AUTH
    assert (classify(400, error(130429)).status, classify(400, error(130429)).code) == (
        RETRY, 429)
    assert classify(404, error(132001)).status == FAILED
    assert classify(503, {}).status == RETRY
    assert "EAAsecret" not in (classify(401, {"error": {
        "message": "bad EAAsecret", "code": 190}}, "EAAsecret").error or "")


async def test_a_sender_against_the_local_cloud_api() -> None:
    server = WhatsAppApi()
    url = server.start()
    try:
        server.register("5521911112222")
        login = CloudLogin(url, "v21.0", server.phone_number_id, server.token)
        sender = WhatsAppSender(login)
        sent = await sender.send(WhatsAppMessage("5521911112222", "d1", template=TemplateCall(
            "campaign_message", "en", ("Hi Ana",))))
        assert sent.status == SENT and sent.message_id and sent.message_id.startswith("wamid.")
        assert server.sent("5521911112222")[0]["text"] == "Hi Ana"
        unknown = await sender.send(WhatsAppMessage("5521911112222", "d2",
                                                    template=TemplateCall("nope", "en")))
        assert (unknown.status, unknown.code) == (FAILED, 132001)
        refused = await WhatsAppSender(CloudLogin(url, "v21.0", server.phone_number_id,
                                                  "wrong")).send(
            WhatsAppMessage("5521911112222", "d3", text="x"))
        assert refused.status == AUTH and "wrong" not in (refused.error or "")
        # Free text to a number that never wrote: accepted, then failed (131047) later.
        late = await sender.send(WhatsAppMessage("5521911112222", "d4", text="hello"))
        assert late.status == SENT
        assert all(m["id"] != late.message_id for m in server.sent("5521911112222"))
    finally:
        server.stop()


def test_the_webhook_signature_and_the_handshake() -> None:
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    assert genuine(body, signature(body, "s3cret"), "s3cret")
    assert not genuine(body, signature(body, "other"), "s3cret")
    assert not genuine(body + b" ", signature(body, "s3cret"), "s3cret")
    assert not genuine(body, None, "s3cret") and not genuine(body, signature(body, ""), "")
    key = SigningKey(kid="k1", purpose=LINKS, secret="links-secret", created_at=NOW)
    keys = KeyRing((key,))
    assert verified("subscribe", verify_token(key), keys)
    assert not verified("subscribe", "guess", keys)
    assert not verified("unsubscribe", verify_token(key), keys)


def test_a_notification_holds_messages_and_statuses() -> None:
    notification = Notification.model_validate_json(json.dumps({
        "object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
            {"field": "messages", "value": {"messages": [
                {"from": "5521", "id": "wamid.a", "timestamp": "1765100000", "type": "text",
                 "text": {"body": " hi "}},
                {"from": "5521", "id": "wamid.b", "timestamp": "1765100001",
                 "type": "interactive", "interactive": {
                     "type": "button_reply", "button_reply": {"id": "2", "title": "No"}}},
                {"from": "5521", "id": "wamid.c", "timestamp": "1765100002",
                 "type": "sticker", "sticker": {}}],
                "statuses": [
                    {"id": "wamid.x", "status": "read", "timestamp": "1765100003"},
                    {"id": "wamid.y", "status": "failed", "timestamp": "1765100004",
                     "errors": [{"code": 131026, "title": "Message undeliverable"}]},
                    {"id": "wamid.z", "status": "deleted", "timestamp": "1765100005"}]}}]}]}))
    assert [(m.kind, m.text) for m in inbound(notification)] == [("text", "hi"),
                                                                 ("press", "2")]
    found = statuses(notification)
    assert [(s.message_id, s.status, s.error_code) for s in found] == [
        ("wamid.x", "read", None), ("wamid.y", "failed", 131026)]


def test_inside_the_window_text_outside_it_the_template() -> None:
    channel = WhatsAppChannel()
    templates = compile_templates("", "Hi {{ name }}, news!")
    recent = {"_id": "c1", "name": "Ana", "phone": "+5521911112222",
              "whatsapp": {"last_inbound_at": datetime.now(UTC) - timedelta(hours=2)}}
    assert in_window(recent) and not in_window({**recent, "whatsapp": {
        "last_inbound_at": datetime.now(UTC) - timedelta(hours=25)}})
    text = channel.compose(templates, recent, runtime=RUNTIME, delivery_id="c:1",
                           tracking=None).message
    assert (text.to, text.text, text.template) == ("5521911112222", "Hi Ana, news!", None)
    cold = {**recent, "whatsapp": {}}
    with pytest.raises(TemplateProblem, match="whatsapp.template"):
        channel.compose(templates, cold, runtime=RUNTIME, delivery_id="c:1", tracking=None)
    call = channel.compose(templates, cold, runtime=RUNTIME, delivery_id="c:1", tracking=None,
                           options={"template": "offer", "parameters": ["{{ name }}"]}
                           ).message.template
    assert call == TemplateCall("offer", "en", ("Ana",))
    assert channel.unreachable({"_id": "c2"}) == "no phone number"


def test_what_confirms_a_message_for_a_fallback_rule() -> None:
    read, delivered = Confirm(60, "read"), Confirm(60, "delivered")
    assert wait_level(read, ("delivered", "read"), False) == "read"  # WhatsApp
    assert wait_level(read, ("delivered",), False) == "delivered"  # SMS reports no reads
    assert wait_level(delivered, ("delivered", "read"), False) == "delivered"
    assert wait_level(read, ("read",), True) == "read"  # an email with an open pixel
    assert wait_level(read, ("read",), False) is None  # ... without one: nothing waits
    assert wait_level(delivered, ("read",), True) is None  # an email's acceptance
    assert wait_level(read, (), False) is None  # Telegram reports nothing
