"""What the history says of what the gateway reported: a send it confirmed, a delivery
that failed after sending, and a person's answer from the phone."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from statecore import clock, inbound, lifecycle
from statecore.models import GatewayMessage, Source, Status
from statecore.whatsapp import DeliveryFailure, EventKind, InboundMessage, WebhookItem
from tests.factories import make_reply
from tests.test_inbound import echo_item, uncertain_reply
from tests.users import make_user


@pytest.fixture
def rc(db) -> Client:
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    return client


def history(rc: Client) -> str:
    response = rc.get(reverse("approvals:history"))
    assert response.status_code == 200
    return response.content.decode()


def test_a_send_settled_by_the_echo_says_so(rc):
    reply = uncertain_reply()
    inbound.receive("waha", [echo_item("evt_e", "3EB0E", chat=reply.chat, text=reply.body)])
    page = history(rc)
    assert "Sent: confirmed by the gateway&#x27;s echo" in page
    assert "The outcome is unknown" not in page


def test_a_delivery_failure_says_it_failed_after_sending(rc):
    reply = make_reply(Status.APPROVED)
    lifecycle.mark_sent(reply.message_id, actor="sender", source=Source.WORKER)
    GatewayMessage.objects.create(
        gateway_id="wamid.Z", reply_id=reply.message_id, source="answer", recorded_at=clock.now()
    )
    failure = DeliveryFailure("wamid.Z", "Message undeliverable", code="131026")
    item = WebhookItem(EventKind.DELIVERY_FAILED, "wamid.Z:failed", "statuses", failure=failure)
    inbound.receive("cloud", [item])
    page = history(rc)
    assert "Delivery failed after sending" in page
    assert "delivery failed after sending: Message undeliverable" in page


def test_an_answer_from_the_phone_is_shown_as_such_and_as_text(rc):
    message = InboundMessage(
        id="3EB0P", chat="923001234567@c.us", text="<b>On my way</b>", from_me=True
    )
    inbound.receive(
        "waha", [WebhookItem(EventKind.FROM_PHONE, "e", "message.any", message=message)]
    )
    page = history(rc)
    assert "Answered from the phone" in page
    assert "&lt;b&gt;On my way&lt;/b&gt;" in page and "<b>On my way" not in page
