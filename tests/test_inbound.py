"""What a webhook item does to the state, applied once (statecore/inbound.py).

Items are built in the common model here (the adapters' own tests turn each
gateway's bodies into them; tests/test_webhook_endpoint.py goes end to end).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from statecore import clock, inbound, lifecycle, rootstate
from statecore.models import (
    AuditEvent,
    GatewayMessage,
    GatewayState,
    LogEntry,
    Message,
    Source,
    Status,
    WebhookReceipt,
)
from statecore.sending import OUTCOME_UNKNOWN
from statecore.whatsapp import (
    DeliveryFailure,
    Echo,
    EventKind,
    InboundMessage,
    State,
    WebhookItem,
)
from statecore.whatsapp import (
    Status as SessionStatus,
)
from tests.factories import make_reply

KIND = "waha"
# An echo settling a reply: receipt check, the echo's row, the candidates, one audit read,
# the tie, the move (lock, update, counters, audit), the receipt; savepoints on top.
NUMBER = "923001234567"
ECHO_SETTLE_QUERIES = 19


def customer_item(key: str, message_id: str, *, chat: str = f"{NUMBER}@c.us", text: str = "Hi"):
    stored = {
        "id": message_id,
        "from": chat,
        "fromName": "Ayesha",
        "body": text,
        "timestamp": int(clock.now().timestamp()),
        "isGroup": False,
        "type": "chat",
        "hasMedia": False,
    }
    message = InboundMessage(
        id=message_id, chat=chat, sender_name="Ayesha", text=text, stored=stored
    )
    return WebhookItem(EventKind.MESSAGE, key, "message.any", message=message, payload={"id": key})


def echo_item(key: str, gateway_id: str, *, chat: str, text: str, at=None, reply_id: str = ""):
    echo = Echo(gateway_id, chat, text, at or clock.now(), reply_id)
    return WebhookItem(EventKind.ECHO, key, "message.any", echo=echo, payload={"id": key})


def test_a_customer_message_is_stored_once_even_when_delivered_twice(db):
    item = customer_item("evt_1", "3EB0AAA")
    first = inbound.receive(KIND, [item])
    second = inbound.receive(KIND, [item])
    assert (first[0].outcome, second[0].duplicate) == ("stored", True)
    assert Message.objects.filter(message_id="3EB0AAA", status=Status.INCOMING).count() == 1
    assert WebhookReceipt.objects.get().outcome == "stored"
    assert rootstate.statistics()["total_incoming"] == 1


def test_the_same_message_from_a_lid_and_from_the_number_is_stored_once(db):
    # WAHA #1309: two envelopes, two chat ids, one bare message id.
    inbound.receive(KIND, [customer_item("evt_1", "3EB0BBB", chat="24816190603455@lid")])
    applied = inbound.receive(KIND, [customer_item("evt_2", "3EB0BBB")])
    assert applied[0].outcome == "already stored"
    assert Message.objects.filter(message_id="3EB0BBB").count() == 1
    assert WebhookReceipt.objects.count() == 2


def test_a_refused_message_is_receipted_with_the_reason_and_stores_nothing(db):
    item = customer_item("evt_1", "3EB0CCC", text="nul \x00 inside")
    applied = inbound.receive(KIND, [item])
    assert applied[0].outcome.startswith("refused: ")
    assert not Message.objects.exists()


def test_an_ignored_item_is_receipted_as_ignored(db):
    item = WebhookItem(
        EventKind.IGNORED, "evt_9", "presence.update", note="presence.update is not used"
    )
    assert inbound.receive(KIND, [item])[0].outcome == "ignored: presence.update is not used"
    receipt = WebhookReceipt.objects.get()
    assert (receipt.what, receipt.event) == ("ignored", "presence.update")


def test_an_answer_from_the_phone_is_kept_as_sent_without_counting_it(db):
    before = rootstate.statistics()["total_sent"]
    message = InboundMessage(
        id="3EB0PHONE",
        chat=f"{NUMBER}@c.us",
        text="On my way",
        from_me=True,
        received_at=clock.now(),
    )
    item = WebhookItem(EventKind.FROM_PHONE, "evt_p", "message.any", message=message)
    assert inbound.receive(KIND, [item])[0].outcome == "answer from the phone stored"
    msg = Message.objects.get(message_id="3EB0PHONE")
    assert (msg.status, msg.chat, msg.reply_to, msg.sender) == (Status.SENT, NUMBER, "", "")
    assert msg.data["from_phone"] is True and msg.body == "On my way"
    assert rootstate.statistics()["total_sent"] == before


def test_our_own_send_reported_as_from_me_is_not_an_answer_from_the_phone(db):
    GatewayMessage.objects.create(
        gateway_id="3EB0OURS", reply_id="reply_x", source="answer", recorded_at=clock.now()
    )
    message = InboundMessage(id="3EB0OURS", chat=f"{NUMBER}@c.us", text="Thanks", from_me=True)
    item = WebhookItem(EventKind.FROM_PHONE, "evt_o", "messages.upsert", message=message)
    assert inbound.receive(KIND, [item])[0].outcome == "our own send"
    assert not Message.objects.filter(message_id="3EB0OURS").exists()


def uncertain_reply(body: str = "Your order ships today"):
    reply = make_reply(Status.APPROVED, body=body)
    Message.objects.filter(pk=reply.pk).update(
        claimed_by="sender@test", claimed_at=clock.now() - timedelta(seconds=30)
    )
    lifecycle.mark_failed(
        reply.message_id,
        f"{OUTCOME_UNKNOWN} (timeout)",
        actor="sender@test",
        source=Source.WORKER,
        worker="sender@test",
        detail={"outcome_unknown": True},
    )
    return Message.objects.get(pk=reply.pk)


def test_an_echo_arriving_after_an_uncertain_send_settles_it_as_sent(db):
    reply = uncertain_reply()
    sent_before = rootstate.statistics()["total_sent"]
    item = echo_item(
        "evt_e", "3EB0ECHO", chat=f"{reply.chat}@c.us", text="Your  order ships\ntoday "
    )
    assert inbound.receive(KIND, [item])[0].outcome == f"settled {reply.message_id} as sent"
    reply.refresh_from_db()
    assert reply.status == Status.SENT and "error" not in reply.data
    audit = AuditEvent.objects.filter(message_id=reply.message_id).first()
    assert (audit.action, audit.actor) == ("confirm_sent", "gateway")
    assert audit.detail == {"gateway_message_id": "3EB0ECHO", "confirmed_by": "echo"}
    assert rootstate.statistics()["total_sent"] == sent_before + 1
    assert GatewayMessage.objects.get(gateway_id="3EB0ECHO").reply_id == reply.message_id


@pytest.mark.parametrize(
    "change",
    ["other text", "other chat", "before the claim", "certain failure", "id taken"],
)
def test_an_echo_that_does_not_match_settles_nothing(db, change):
    reply = uncertain_reply()
    chat, text, at = f"{reply.chat}@c.us", reply.body, clock.now()
    if change == "other text":
        text = "Your order ships tomorrow"
    elif change == "other chat":
        chat = "923000000001@c.us"
    elif change == "before the claim":
        at = reply.claimed_at - timedelta(minutes=3)
    elif change == "certain failure":
        AuditEvent.objects.filter(message_id=reply.message_id, action="mark_failed").update(
            detail={"outcome_unknown": False}
        )
    elif change == "id taken":
        GatewayMessage.objects.create(
            gateway_id="3EB0ECHO",
            reply_id="another_reply",
            source="answer",
            recorded_at=clock.now(),
        )
    inbound.receive(KIND, [echo_item("evt_e", "3EB0ECHO", chat=chat, text=text, at=at)])
    reply.refresh_from_db()
    assert reply.status == Status.FAILED


def test_an_echo_within_the_clock_skew_still_settles(db):
    reply = uncertain_reply()
    at = reply.claimed_at - timedelta(seconds=90)
    inbound.receive(KIND, [echo_item("evt_e", "3EB0SKEW", chat=reply.chat, text=reply.body, at=at)])
    reply.refresh_from_db()
    assert reply.status == Status.SENT


def test_one_echo_settles_one_reply_only(db):
    first, second = uncertain_reply("Same words"), uncertain_reply("Same words")
    Message.objects.filter(pk=second.pk).update(chat=first.chat)
    inbound.receive(KIND, [echo_item("evt_e", "3EB0ONE", chat=first.chat, text="Same words")])
    statuses = sorted(
        Message.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)
    )
    assert statuses == [Status.FAILED, Status.SENT]
    # The same echo delivered again (a new envelope) settles nothing more.
    inbound.receive(KIND, [echo_item("evt_f", "3EB0ONE", chat=first.chat, text="Same words")])
    assert Message.objects.filter(pk__in=[first.pk, second.pk], status=Status.SENT).count() == 1
    # Another send's echo settles the other.
    inbound.receive(KIND, [echo_item("evt_g", "3EB0TWO", chat=first.chat, text="Same words")])
    assert Message.objects.filter(pk__in=[first.pk, second.pk], status=Status.SENT).count() == 2


def test_a_delivery_failure_moves_a_sent_reply_to_failed(db):
    reply = make_reply(Status.APPROVED)
    lifecycle.mark_sent(reply.message_id, actor="sender", source=Source.WORKER)
    GatewayMessage.objects.create(
        gateway_id="wamid.X1", reply_id=reply.message_id, source="answer", recorded_at=clock.now()
    )
    stats = rootstate.statistics()
    failure = DeliveryFailure("wamid.X1", "Message undeliverable", code="131026")
    item = WebhookItem(EventKind.DELIVERY_FAILED, "wamid.X1:failed", "statuses", failure=failure)
    assert inbound.receive("cloud", [item])[0].outcome == f"{reply.message_id} failed after sending"
    reply.refresh_from_db()
    assert reply.status == Status.FAILED
    assert reply.data["error"] == "delivery failed after sending: Message undeliverable"
    after = rootstate.statistics()
    assert after["total_failed"] == stats["total_failed"] + 1
    assert after["total_sent"] == stats["total_sent"]
    entry = json.loads(LogEntry.objects.get().raw)
    assert (entry["status"], entry["message_id"]) == ("failed", "wamid.X1")
    assert AuditEvent.objects.first().action == "delivery_failed"


def test_a_delivery_failure_for_an_unknown_id_changes_nothing(db):
    failure = DeliveryFailure("wamid.NOPE", "Message undeliverable")
    item = WebhookItem(EventKind.DELIVERY_FAILED, "wamid.NOPE:failed", "statuses", failure=failure)
    assert inbound.receive("cloud", [item])[0].outcome == "no reply of ours has this id"
    assert not LogEntry.objects.exists()


def test_a_session_item_goes_through_the_session_verbs(db):
    status = SessionStatus(
        State.NEEDS_QR, "scan the QR", code="SCAN_QR_CODE", qr="2@abc", logged_out=True
    )
    item = WebhookItem(EventKind.SESSION, "evt_s", "session.status", status=status)
    inbound.receive(KIND, [item])
    state = GatewayState.objects.get()
    assert (state.state, state.qr, state.code) == ("needs_qr", "2@abc", "SCAN_QR_CODE")


def test_receipts_and_gateway_ids_are_pruned_after_the_dedupe_window(db):
    inbound.receive(KIND, [customer_item("evt_old", "3EB0OLD")])
    GatewayMessage.objects.create(gateway_id="g-old", source="echo", recorded_at=clock.now())
    WebhookReceipt.objects.update(received_at=clock.now() - timedelta(days=7, minutes=1))
    GatewayMessage.objects.update(recorded_at=clock.now() - timedelta(days=7, minutes=1))
    inbound.receive(KIND, [customer_item("evt_new", "3EB0NEW")])
    assert inbound.prune() == 2
    assert list(WebhookReceipt.objects.values_list("dedupe_key", flat=True)) == ["evt_new"]
    assert not GatewayMessage.objects.exists()


def test_an_echo_naming_our_reply_settles_it_without_comparing_text(db):
    # Cloud's `sent` status carries our reply id back (biz_opaque_callback_data), no text.
    reply = uncertain_reply()
    item = echo_item("wamid.S:sent", "wamid.S", chat=reply.chat, text="", reply_id=reply.message_id)
    assert inbound.receive("cloud", [item])[0].outcome == f"settled {reply.message_id} as sent"
    assert Message.objects.get(pk=reply.pk).status == Status.SENT


def test_an_echo_naming_a_reply_that_is_not_uncertain_changes_nothing(db):
    reply = make_reply(Status.REJECTED)
    item = echo_item("wamid.R:sent", "wamid.R", chat=reply.chat, text="", reply_id=reply.message_id)
    assert inbound.receive("cloud", [item])[0].outcome == f"echo of {reply.message_id}"
    assert Message.objects.get(pk=reply.pk).status == Status.REJECTED


def test_settling_a_late_echo_reads_no_audit_row_of_replies_with_other_text(
    db, django_assert_max_num_queries
):
    # A chat with many failed replies: only the one with the echo's text is looked into.
    others = [uncertain_reply(f"Another reply {n}") for n in range(6)]
    target = uncertain_reply("The one that went")  # claimed last: looked at after the others
    Message.objects.filter(pk__in=[o.pk for o in others]).update(chat=target.chat)
    item = echo_item("evt_q", "3EB0Q", chat=target.chat, text="The one that went")
    with django_assert_max_num_queries(ECHO_SETTLE_QUERIES):
        assert inbound.receive(KIND, [item])[0].outcome == f"settled {target.message_id} as sent"
