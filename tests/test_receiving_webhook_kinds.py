"""The receiving loop for gateways that push (WAHA, Evolution, the Cloud API).

Their webhooks store customers' messages in the request (`/gateway/webhook`); a round of
the loop watches the session, backfills what a lost webhook missed, prunes old webhook
records and drafts. First against a fake client object (tests/test_backfill.py), then
against the WAHA and Evolution stand-ins over real HTTP.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command

from statecore import clock, inbound, session, whatsapp
from statecore.backfill import CHAT_EVERY
from statecore.models import GatewayMessage, GatewayState, Message, Source, Status, WebhookReceipt
from statecore.receiving import PRUNE_EVERY, Receiver
from statecore.whatsapp import (
    DEDUPE_WINDOW,
    EventKind,
    State,
    Traits,
    WebhookItem,
)
from statecore.whatsapp import Status as GatewayStatus
from tests.session_helpers import valid_session
from tests.test_backfill import CHAT, Clock, FakeClient, Said, customer_message

HERE = "tests.test_receiving_webhook_kinds"
ASKED: list[dict] = []


def draft_reply(message: dict) -> str:
    """The test's ASSISTANT."""
    ASKED.append(message)
    return f"Thanks, {message['fromName']}: we open at 9."


@pytest.fixture
def ready(db, settings, tmp_path):
    """A waha deployment with a valid session and the test's assistant."""
    settings.GATEWAY_KIND = "waha"
    settings.ASSISTANT = f"{HERE}.draft_reply"
    valid_session(settings, tmp_path)
    ASKED.clear()


@pytest.fixture
def client(ready) -> FakeClient:
    return FakeClient()


def receiver(client) -> Receiver:
    return Receiver(client, say=Said())


def by_webhook(message, key: str = "") -> None:
    """The message as /gateway/webhook applies it (the request, not the loop)."""
    [applied] = inbound.receive(
        "waha",
        [
            WebhookItem(
                kind=EventKind.MESSAGE,
                dedupe_key=key or f"evt_{message.id}",
                event="message",
                message=message,
            )
        ],
    )
    assert applied.outcome == "stored"


def drafts_of(message_id: str) -> list[Message]:
    return list(Message.objects.filter(reply_to=message_id))


# --- A round -------------------------------------------------------------------------------


def test_a_round_never_pulls_and_drafts_what_the_webhook_stored(client):
    message = customer_message(CHAT, "Open on Sunday?")
    client.keep(message)
    by_webhook(message)

    summary = receiver(client).run_once()  # the fake raises if pulled or marked

    [draft] = drafts_of(message.id)
    assert draft.status == Status.PENDING_APPROVAL
    assert draft.body == "Thanks, Ayesha: we open at 9."
    assert [m["id"] for m in ASKED] == [message.id]
    assert summary.pushed and summary.drafting.drafted == 1
    assert str(summary).startswith("customers' messages come by webhook; backfill: ")


def test_a_lost_webhooks_message_is_stored_by_the_next_round_and_drafted_once(client):
    first = customer_message(CHAT, "Hi", at=clock.now() - timedelta(minutes=3))
    client.keep(first)
    by_webhook(first)
    missing = client.keep(customer_message(CHAT, "Are you open?"))
    worker = receiver(client)

    summary = worker.run_once()

    assert summary.backfill.stored == 1
    assert Message.objects.get(message_id=missing.id).status == Status.INCOMING
    assert len(drafts_of(missing.id)) == 1 and len(drafts_of(first.id)) == 1
    second = worker.run_once()
    assert second.backfill.stored == 0 and second.drafting.drafted == 0
    assert Message.objects.filter(message_id=missing.id).count() == 1
    assert sorted(m["id"] for m in ASKED) == sorted([first.id, missing.id])


def test_the_watch_records_the_qr_and_nothing_is_backfilled_while_not_ready(client):
    by_webhook(client.keep(customer_message(CHAT, "Hi")))
    client.said = GatewayStatus(
        State.NEEDS_QR, "Scan the QR code", code="SCAN_QR_CODE", qr="2@AbC,stand-in"
    )
    worker = receiver(client)

    summary = worker.run_once()

    state = GatewayState.objects.get()
    assert (state.state, state.qr) == ("needs_qr", "2@AbC,stand-in")
    assert session.current()["requires_qr"] is True
    assert summary.watched and summary.backfill is None
    assert client.asked == []


def test_the_session_coming_back_catches_up_every_recent_chat(client, monkeypatch):
    now = Clock(monkeypatch)
    quiet = customer_message("923001111111@c.us", "Yesterday", at=now.at - timedelta(hours=6))
    by_webhook(client.keep(quiet))
    client.said = GatewayStatus(State.DISCONNECTED, "The session is stopped", code="STOPPED")
    worker = receiver(client)
    worker.run_once()
    assert client.asked == []

    # While it was down a message came in and its webhook was lost; now it is back.
    missed = client.keep(
        customer_message("923001111111@c.us", "Hello?", at=now.at - timedelta(hours=5))
    )
    client.said = GatewayStatus(State.READY, "WhatsApp is connected", code="WORKING")
    now.advance(timedelta(seconds=5))
    summary = worker.run_once()

    # A quiet chat (not active in the last 2 hours) is asked because the session came back.
    assert client.asked_chats() == ["923001111111@c.us"]
    assert summary.backfill.stored == 1
    assert Message.objects.filter(message_id=missed.id).exists()


def test_a_ready_recorded_by_the_gateways_webhook_is_a_coming_back_too(client, monkeypatch):
    now = Clock(monkeypatch)
    by_webhook(client.keep(customer_message(CHAT, "Hi", at=now.at - timedelta(hours=6))))
    client.said = GatewayStatus(State.DISCONNECTED, "The session is stopped", code="STOPPED")
    worker = receiver(client)
    worker.run_once()

    # The session.status webhook says WORKING before the loop's own watch asks again.
    session.record_status(
        GatewayStatus(State.READY, "WhatsApp is connected", code="WORKING"),
        actor="gateway",
        source=Source.GATEWAY,
    )
    client.said = GatewayStatus(State.READY, "WhatsApp is connected", code="WORKING")
    now.advance(timedelta(seconds=5))
    worker.run_once()
    assert client.asked_chats() == [CHAT]


def test_the_first_ready_round_catches_up_a_loop_just_started_and_only_that_one(
    client, monkeypatch
):
    now = Clock(monkeypatch)
    by_webhook(client.keep(customer_message(CHAT, "Hi", at=now.at - timedelta(hours=6))))
    worker = receiver(client)
    worker.run_once()
    assert client.asked_chats() == [CHAT]

    # Still ready: a quiet chat is not asked again.
    now.advance(timedelta(minutes=10))
    worker.run_once()
    assert client.asked_chats() == [CHAT]


def test_a_gateway_that_cannot_backfill_is_never_asked_to_list(client):
    client.traits = Traits(has_webhooks=True, reply_window=timedelta(hours=24))
    message = client.keep(customer_message(CHAT, "Hi"))
    by_webhook(message)

    summary = receiver(client).run_once()

    assert client.asked == []
    assert summary.backfill is None and summary.drafting.drafted == 1
    assert "backfill" not in str(summary)


# --- Pruning -------------------------------------------------------------------------------


def _old_records(now, n: int) -> None:
    at = now - DEDUPE_WINDOW - timedelta(minutes=1)
    for k in range(n):
        WebhookReceipt.objects.create(
            kind="waha",
            dedupe_key=f"evt_old_{at.timestamp()}_{k}",
            event="message",
            what="message",
            payload="{}",
            received_at=at,
        )
        GatewayMessage.objects.create(
            gateway_id=f"old_{at.timestamp()}_{k}",
            source=GatewayMessage.Source.ECHO,
            recorded_at=at,
        )


def test_old_webhook_records_are_pruned_at_most_once_an_hour(client, monkeypatch):
    now = Clock(monkeypatch)
    _old_records(now.at, 2)
    fresh = customer_message(CHAT, "Hi")
    by_webhook(fresh, key="evt_fresh")
    worker = receiver(client)

    assert worker.run_once().pruned == 4
    assert list(WebhookReceipt.objects.values_list("dedupe_key", flat=True)) == ["evt_fresh"]
    assert GatewayMessage.objects.count() == 0

    _old_records(now.at, 1)
    now.advance(PRUNE_EVERY - timedelta(seconds=1))
    summary = worker.run_once()
    assert summary.pruned is None and WebhookReceipt.objects.count() == 2

    now.advance(timedelta(seconds=1))
    assert worker.run_once().pruned == 2
    assert list(WebhookReceipt.objects.values_list("dedupe_key", flat=True)) == ["evt_fresh"]


def test_the_scripts_service_keeps_its_round_exactly(db, settings, tmp_path, fake_gateway):
    """No backfill and no pruning for the polled service: its round is the old one."""
    from tests.session_helpers import use_gateway

    settings.ASSISTANT = ""
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    _old_records(clock.now(), 1)
    fake_gateway.add_customer_message("Hello")
    with whatsapp.gateway() as gateway:
        summary = Receiver(gateway, say=Said()).run_once()
    assert summary.stored == 1 and not summary.pushed
    assert summary.backfill is None and summary.pruned is None
    assert WebhookReceipt.objects.count() == 1
    assert str(summary).startswith("1 stored, 0 already stored")


# --- The command ---------------------------------------------------------------------------


def test_receive_messages_once_for_a_pushing_gateway_prints_what_it_did(
    client, monkeypatch, capsys
):
    earlier = customer_message(CHAT, "Earlier", at=clock.now() - timedelta(minutes=30))
    by_webhook(client.keep(earlier))
    missing = client.keep(customer_message(CHAT, "Hi"))
    monkeypatch.setattr(whatsapp, "gateway", lambda **kw: _Closing(client))

    call_command("receive_messages")

    out = capsys.readouterr().out
    assert f"Receiver using the waha gateway at {client.address}; drafts by {HERE}" in out
    assert "customers' messages come by webhook; backfill: 1 chats asked, 1 stored" in out
    assert "drafting: 2 drafted" in out
    assert Message.objects.filter(message_id=missing.id).exists()


class _Closing:
    """The client as `with whatsapp.gateway() as gateway` hands it out."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return None


# --- Against the stand-ins, over real HTTP: the webhook to the live dashboard -------------


def _incoming_with(body: str) -> Message:
    return Message.objects.get(status=Status.INCOMING, body=body)


def _live(standin, live_server, settings) -> None:
    settings.ASSISTANT = f"{HERE}.draft_reply"
    ASKED.clear()
    standin.webhook_url = live_server.url + "/gateway/webhook"


def _a_lost_webhook_is_backfilled_once_and_drafted(standin, monkeypatch, redeliver) -> None:
    """The scenario both gateways share; `redeliver(data)` posts the lost message's webhook
    late, as the gateway's own retry would."""
    standin.add_customer_message("Hi, is the shop open?", sender="923001234567")
    first = _incoming_with("Hi, is the shop open?")  # came by the webhook, in the request
    standin.lose_webhooks = True
    lost = standin.add_customer_message("And on Sunday?", sender="923001234567")
    assert not Message.objects.filter(body="And on Sunday?").exists()

    with whatsapp.gateway() as gateway:
        worker = Receiver(gateway, say=Said())
        summary = worker.run_once()

        stored = _incoming_with("And on Sunday?")
        assert summary.backfill.stored == 1 and summary.backfill.already_stored == 1
        assert [d.status for d in drafts_of(stored.message_id)] == [Status.PENDING_APPROVAL]
        assert len(drafts_of(first.message_id)) == 1
        assert stored.data["from"] == first.data["from"]

        # The next rounds, the chat asked again: nothing more.
        now = Clock(monkeypatch)
        now.advance(CHAT_EVERY)
        again = worker.run_once()
        assert again.backfill.chats == 1
        assert (again.backfill.stored, again.drafting.drafted) == (0, 0)

    # The webhook arrives after all: the same message, stored once.
    standin.lose_webhooks = False
    redeliver(lost)
    assert Message.objects.filter(body="And on Sunday?").count() == 1
    assert Message.objects.filter(status=Status.INCOMING).count() == 2
    assert sorted(m["body"] for m in ASKED) == ["And on Sunday?", "Hi, is the shop open?"]


def test_waha_a_lost_webhooks_message_is_stored_once_by_the_next_round_and_drafted(
    fake_waha, live_server, settings, monkeypatch
):
    from statecore.whatsapp.standin_waha import envelope

    _live(fake_waha, live_server, settings)

    def redeliver(payload):
        body = envelope("message.any", payload, session=fake_waha.session, me=fake_waha.me)
        assert fake_waha.post_webhook(body) == 200

    _a_lost_webhook_is_backfilled_once_and_drafted(fake_waha, monkeypatch, redeliver)


def test_evolution_a_lost_webhooks_message_is_stored_once_by_the_next_round_and_drafted(
    fake_evolution, live_server, settings, monkeypatch
):
    from statecore.whatsapp.standin_evolution import envelope

    _live(fake_evolution, live_server, settings)

    def redeliver(data):
        body = envelope("messages.upsert", data, instance=settings.GATEWAY_SESSION)
        assert fake_evolution.post_webhook(body) == 200

    _a_lost_webhook_is_backfilled_once_and_drafted(fake_evolution, monkeypatch, redeliver)


def test_waha_noweb_without_its_store_is_said_once_and_the_round_goes_on(
    fake_waha, live_server, settings
):
    _live(fake_waha, live_server, settings)
    fake_waha.engine = "NOWEB"
    fake_waha.add_customer_message("Hi", sender="923001234567")
    fake_waha.lose_webhooks = True
    fake_waha.add_customer_message("Lost", sender="923001234567")

    with whatsapp.gateway() as gateway:
        worker = Receiver(gateway, say=Said())
        first = worker.run_once()
        worker.backfiller.session_back()  # asked again at once
        worker.run_once()

        assert first.backfill.failed_chats == 1 and "store" in first.backfill.error
        assert first.drafting.drafted == 1  # what the webhook stored is drafted all the same
        assert sum("Could not backfill" in line for line in worker.say) == 1

        # Its store turned on: the lost message comes back.
        fake_waha.noweb_store = True
        worker.backfiller.session_back()
        assert worker.run_once().backfill.stored == 1
    assert Message.objects.filter(body="Lost").count() == 1
