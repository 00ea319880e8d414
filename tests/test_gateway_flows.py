"""A new user's day on each webhook gateway, end to end against its stand-in on 127.0.0.1
(the dashboard served by `live_server`, the stand-in posting its signed webhooks to it):
a customer's message arrives by webhook and is drafted; the reply is approved and sent
exactly once; a send whose answer was lost is settled by the echo or the read-back with
no person asked; a later delivery failure moves it to failed; an answer from the phone
flags the pending draft."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from statecore import lifecycle, whatsapp
from statecore.models import AuditEvent, Message, Source, Status
from statecore.receiving import Receiver
from statecore.sending import OUTCOME_UNKNOWN, Sender
from tests.session_helpers import valid_session

HERE = __name__
KINDS = ["waha", "evolution", "cloud"]
READ_BACK_KINDS = ["waha", "evolution"]
# A maybe-sent answer that nothing settles: WAHA's and Evolution's stand-ins delivered
# nothing (a read-back finds nothing); Cloud has no read-back, and no echo is posted.
NOT_DELIVERED_MAYBE = {
    "waha": "unprocessable",
    "evolution": "closed_before_send",
    "cloud": "error500",
}
READ_BACK_ROUTES = {"waha": "chat_messages", "evolution": "find_messages"}


def draft_reply(message: dict) -> str:
    """The test's ASSISTANT."""
    return f"Thanks for writing: {message['body']}"


@pytest.fixture(params=KINDS)
def gateway_kind(request, transactional_db, live_server, settings, tmp_path):
    """The kind's stand-in, posting to the live dashboard; no Undo window, no pacing."""
    standin = request.getfixturevalue(f"fake_{request.param}")
    standin.webhook_url = live_server.url + "/gateway/webhook"
    settings.APPROVAL_GRACE_SECONDS = 0
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    settings.ASSISTANT = f"{HERE}.draft_reply"
    valid_session(settings, tmp_path)
    return request.param, standin


def wait_for(check: Callable[[], object], timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {check.__doc__ or check}")


def sender(timeout: float = 5.0) -> Sender:
    client = whatsapp.gateway(status_timeout=timeout, send_timeout=timeout)
    return Sender(client, sleep=lambda s: None, say=lambda text: None)


def arrive_and_draft(standin, text: str = "Do you deliver on Sundays?") -> Message:
    """A customer writes; the webhook stores it; one receiving round drafts it."""
    standin.add_customer_message(text)
    incoming = wait_for(lambda: Message.objects.filter(status=Status.INCOMING).first())
    with whatsapp.gateway() as client:
        Receiver(client, say=lambda text: None).run_once()
    return Message.objects.get(status=Status.PENDING_APPROVAL, reply_to=incoming.message_id)


def test_a_customers_message_is_drafted_and_the_reply_sent_exactly_once(gateway_kind):
    kind, standin = gateway_kind
    draft = arrive_and_draft(standin)
    assert draft.body == "Thanks for writing: Do you deliver on Sundays?"
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    first, again = sender().run_once(), sender().run_once()
    assert (first.sent, again.sent) == (1, 0)
    assert [call.text for call in standin.delivered()] == [draft.body]
    assert Message.objects.get(pk=draft.pk).status == Status.SENT


def test_a_lost_answer_is_settled_by_the_echo_that_came_first(gateway_kind):
    kind, standin = gateway_kind
    draft = arrive_and_draft(standin)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    standin.echo_mode = "before_answer"
    standin.queue_send_modes("drop")
    sender().run_once()
    sender().run_once()
    reply = Message.objects.get(pk=draft.pk)
    assert reply.status == Status.SENT
    assert len(standin.delivered()) == 1 and len(standin.sends) == 1
    audit = AuditEvent.objects.filter(message_id=draft.message_id, action="mark_sent").get()
    assert audit.detail["confirmed_by"] == "echo"


def test_an_echo_after_the_answer_still_settles_the_reply(gateway_kind):
    kind, standin = gateway_kind
    draft = arrive_and_draft(standin)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    standin.echo_mode = "after_answer"
    standin.queue_send_modes("drop")
    # No read-back to find it first: only the late echo can settle it.
    if kind in READ_BACK_ROUTES:
        standin.set_failure(READ_BACK_ROUTES[kind], "error500")
    sender().run_once()

    def settled():
        """the reply settled as sent"""
        return Message.objects.get(pk=draft.pk).status == Status.SENT

    wait_for(settled)
    sender().run_once()
    assert len(standin.sends) == 1
    confirmed = AuditEvent.objects.filter(
        message_id=draft.message_id, action__in=["mark_sent", "confirm_sent"]
    ).get()
    assert confirmed.detail["confirmed_by"] == "echo"


@pytest.mark.parametrize("kind", READ_BACK_KINDS)
def test_with_no_echo_the_read_back_finds_the_reply_the_gateway_sent(
    request, kind, transactional_db, live_server, settings, tmp_path
):
    standin = request.getfixturevalue(f"fake_{kind}")
    standin.webhook_url = live_server.url + "/gateway/webhook"
    settings.APPROVAL_GRACE_SECONDS = 0
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    settings.ASSISTANT = f"{HERE}.draft_reply"
    valid_session(settings, tmp_path)
    draft = arrive_and_draft(standin)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    standin.echo_mode = "never"
    standin.queue_send_modes("drop")
    sender().run_once()
    reply = Message.objects.get(pk=draft.pk)
    assert reply.status == Status.SENT
    audit = AuditEvent.objects.filter(message_id=draft.message_id, action="mark_sent").get()
    assert audit.detail["confirmed_by"] == "read-back"
    assert len(standin.sends) == 1


def test_with_nothing_to_show_it_went_a_person_is_asked(gateway_kind):
    kind, standin = gateway_kind
    draft = arrive_and_draft(standin)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    standin.echo_mode = "never"
    # Reached WhatsApp? The stand-in says no: nothing to echo or read back.
    standin.queue_send_modes(NOT_DELIVERED_MAYBE[kind])
    sender().run_once()
    reply = Message.objects.get(pk=draft.pk)
    assert reply.status == Status.FAILED and OUTCOME_UNKNOWN in reply.data["error"]


def test_a_delivery_failure_reported_later_moves_the_sent_reply_to_failed(gateway_kind):
    kind, standin = gateway_kind
    draft = arrive_and_draft(standin)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    sender().run_once()
    gateway_id = standin.sends[-1].gateway_id
    standin.fail_delivery(gateway_id)

    def failed():
        """the reply moved to failed"""
        return Message.objects.get(pk=draft.pk).status == Status.FAILED

    wait_for(failed)
    assert AuditEvent.objects.filter(message_id=draft.message_id).first().action == (
        "delivery_failed"
    )


@pytest.mark.parametrize("kind", ["waha", "evolution"])
def test_an_answer_from_the_phone_flags_the_pending_draft(
    request, kind, transactional_db, live_server, settings, tmp_path
):
    from approvals.queue import build_cards
    from statecore import clock

    standin = request.getfixturevalue(f"fake_{kind}")
    standin.webhook_url = live_server.url + "/gateway/webhook"
    settings.ASSISTANT = f"{HERE}.draft_reply"
    valid_session(settings, tmp_path)
    draft = arrive_and_draft(standin)
    time.sleep(1.1)  # the answer comes a second after the draft (times are to the second)
    standin.answer_from_phone("I'll call you now", chat="923001234567")
    wait_for(lambda: Message.objects.filter(status=Status.SENT).first())
    phone = Message.objects.get(status=Status.SENT)
    assert phone.data["from_phone"] is True and phone.body == "I'll call you now"
    card = build_cards([Message.objects.get(pk=draft.pk)], now=clock.now())[0]
    assert card.stale
