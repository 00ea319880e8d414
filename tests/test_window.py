"""Cloud's 24-hour reply window and 4,096-character limit: the core, the sender's check,
the queue's cards and actions, bulk approve, Retry and the overview; and nothing of it
with a gateway that has no window (wwebjs)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from statecore import clock, lifecycle, rootstate, statefile, whatsapp, window
from statecore.lifecycle import MoveRefused, Refusal
from statecore.models import AuditEvent, Message, Source, Status
from statecore.window import WINDOW_CLOSED_TEXT
from tests.conftest import APPROVE_QUERIES
from tests.factories import make_incoming, make_reply
from tests.query_data import bulk_state
from tests.users import make_user

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/queue/"}
DAY = timedelta(hours=24)


class Clock:
    """The project's clock (statecore.clock.now), held still and moved by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def move(self, **delta) -> None:
        self.at += timedelta(**delta)

    def ago(self, **delta) -> str:
        """A stored timestamp (naive local ISO, as the scripts write it) `delta` ago."""
        return clock.local_iso(self.at - timedelta(**delta))


@pytest.fixture
def now(monkeypatch) -> Clock:
    return at_noon(monkeypatch)


def at_noon(monkeypatch) -> Clock:
    """The clock held at 12:00 local time, March 10, 2026."""
    fixed = Clock(timezone.make_aware(datetime(2026, 3, 10, 12, 0)))
    monkeypatch.setattr(clock, "now", fixed)
    return fixed


@pytest.fixture
def cloud(settings, monkeypatch):
    """The Cloud API as the configured gateway."""
    use_cloud(settings)


def use_cloud(settings) -> None:
    settings.GATEWAY_KIND = "cloud"
    settings.GATEWAY_URL = "http://127.0.0.1:9"
    settings.GATEWAY_API_KEY = "k"
    settings.GATEWAY_PHONE_NUMBER_ID = "1065403522"
    settings.GATEWAY_VERIFY_TOKEN = "v"
    settings.GATEWAY_WEBHOOK_SECRET = "s"
    assert whatsapp.traits().reply_window == DAY
    assert whatsapp.traits().max_text_length == 4096


def customer(
    number: str = "923001234567", *, at: str, body: str = "Hello", name: str = "Customer"
) -> Message:
    return make_incoming(number=number, name=name, body=body, timestamp=at)


def draft(incoming: Message, *, at: str, **extra) -> Message:
    return make_reply(incoming=incoming, timestamp=at, **extra)


def phone_answer(number: str, *, at: str, body: str = "Done, sent it") -> Message:
    """A person's answer from the phone, stored as the receiving code stores it."""
    data = {
        "id": f"true_{number}@c.us_PHONE{at}",
        "recipient": f"{number}@c.us",
        "body": body,
        "timestamp": at,
        "from_phone": True,
    }
    return lifecycle.add_message(data, "sent", actor="phone", source="gateway")


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def audit_count(msg: Message) -> int:
    return AuditEvent.objects.filter(message_id=msg.message_id).count()


def url(name: str, msg: Message | None = None) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk] if msg else [])


def card_html(response, msg: Message) -> str:
    text = response.content.decode()
    match = re.search(rf'<article id="card-{msg.pk}".*?</article>', text, re.S)
    assert match, f"no card for {msg.message_id}"
    return match.group(0)


@pytest.fixture
def rc(db) -> Client:
    return reviewer_client()


def reviewer_client() -> Client:
    """A client signed in as a reviewer (a real session: its queries count)."""
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    return client


# --- The window itself --------------------------------------------------------------


def test_the_window_counts_from_the_customers_last_message_only(db, cloud, now):
    first = customer(at=now.ago(hours=5))
    customer(at=now.ago(hours=3), body="And another thing")
    draft(first, at=now.ago(hours=1))
    phone_answer("923001234567", at=now.ago(minutes=30))
    customer("923009999999", at=now.ago(minutes=10))  # another chat
    last = window.last_customer_message_at("923001234567")
    assert last == now.at - timedelta(hours=3)
    assert window.closes_at("923001234567") == now.at + timedelta(hours=21)
    assert window.closes_at_for(["923001234567", "923009999999", "923000000000"]) == {
        "923001234567": now.at + timedelta(hours=21),
        "923009999999": now.at + timedelta(hours=23, minutes=50),
    }


def test_the_window_closes_24_hours_after_the_customer_wrote(db, cloud, now):
    customer(at=now.ago(hours=23, minutes=59))
    assert not window.is_closed("923001234567", now.at)
    now.move(minutes=1)
    assert window.is_closed("923001234567", now.at)
    # A chat the customer never wrote in: Cloud would refuse a free-form reply there.
    assert window.is_closed("923005550000", now.at)


def test_the_window_for_many_chats_is_one_query(db, cloud, now, django_assert_num_queries):
    for n in range(20):
        customer(f"9230012{n:05d}", at=now.ago(hours=n))
    with django_assert_num_queries(1):
        closes = window.closes_at_for(f"9230012{n:05d}" for n in range(20))
    assert len(closes) == 20


def test_without_a_window_nothing_is_refused_and_nothing_is_asked(
    db, now, django_assert_num_queries
):
    old = draft(customer(at=now.ago(days=3)), at=now.ago(days=3), body="x" * 5000)
    with django_assert_num_queries(0):
        assert not window.applies()
        assert window.closes_at_for(["923001234567"]) == {}
        assert window.open_guard(now.at) is None
        assert not window.is_closed("923001234567", now.at)
        assert window.refusal_for(old, now.at) == ""
        assert window.too_long("x" * 5000) == ""


# --- The lifecycle ------------------------------------------------------------------


def approve(msg: Message) -> Message:
    return lifecycle.approve(msg.message_id, actor="dana", source=Source.API)


def edit(msg: Message, text: str = "Edited") -> Message:
    return lifecycle.edit_and_approve(msg.message_id, text, actor="dana", source=Source.API)


@pytest.mark.parametrize("verb", [approve, edit])
def test_approve_is_allowed_at_23_h_59_and_refused_at_24_h(db, cloud, now, verb):
    incoming = customer(at=now.ago(hours=23, minutes=59))
    allowed = draft(incoming, at=now.ago(hours=23, minutes=58))
    assert verb(allowed).status == Status.APPROVED

    refused = draft(customer("923002222222", at=now.ago(hours=24)), at=now.ago(hours=23))
    before = audit_count(refused)
    with pytest.raises(MoveRefused) as caught:
        verb(refused)
    assert caught.value.code == Refusal.WINDOW_CLOSED
    assert caught.value.reason == WINDOW_CLOSED_TEXT
    assert WINDOW_CLOSED_TEXT in str(caught.value)
    assert fresh(refused).status == Status.PENDING_APPROVAL
    assert fresh(refused).body == refused.body
    assert audit_count(refused) == before


def test_a_reply_without_a_chat_of_its_own_is_judged_by_the_message_it_answers(db, cloud, now):
    recent = draft(customer(at=now.ago(hours=1)), at=now.ago(minutes=50), recipient="")
    stale = draft(customer("923003333333", at=now.ago(hours=30)), at=now.ago(hours=1), recipient="")
    assert recent.chat == "" and stale.chat == ""
    assert window.refusal_for(recent, now.at) == ""
    assert approve(recent).status == Status.APPROVED
    with pytest.raises(MoveRefused) as caught:
        approve(stale)
    assert caught.value.code == Refusal.WINDOW_CLOSED
    assert window.refusal_for(stale, now.at) == WINDOW_CLOSED_TEXT


def test_our_own_replies_and_phone_answers_do_not_keep_the_window_open(db, cloud, now):
    incoming = customer(at=now.ago(hours=30))
    draft(incoming, at=now.ago(hours=29), body="Earlier answer")
    earlier = Message.objects.get(reply_to=incoming.message_id)
    Message.objects.filter(pk=earlier.pk).update(status=Status.SENT)
    phone_answer("923001234567", at=now.ago(hours=1))
    late = make_reply(incoming=incoming, timestamp=now.ago(minutes=5), id="reply_late")
    with pytest.raises(MoveRefused) as caught:
        approve(late)
    assert caught.value.code == Refusal.WINDOW_CLOSED


def test_only_a_message_with_a_sender_that_is_not_a_reply_opens_the_window(db, cloud, now):
    incoming = customer(at=now.ago(hours=30))
    # A reply that names the customer as its sender (a script may write anything).
    make_reply(
        incoming=incoming,
        id="reply_with_from",
        timestamp=now.ago(hours=1),
        **{"from": "923001234567@c.us"},
    )
    # Something stored for the chat without a sender that is not a phone answer.
    note = {
        "id": "note_1",
        "recipient": "923001234567@c.us",
        "body": "Promo",
        "timestamp": now.ago(hours=1),
    }
    lifecycle.add_message(note, "sent", actor="script", source=Source.API)
    assert Message.objects.filter(chat="923001234567", timestamp__gt=now.at - DAY).count() == 2
    assert window.last_customer_message_at("923001234567") == now.at - timedelta(hours=30)
    assert window.is_closed("923001234567", now.at)
    late = make_reply(incoming=incoming, id="reply_late", timestamp=now.ago(minutes=5))
    with pytest.raises(MoveRefused):
        approve(late)


def test_retry_is_refused_until_the_customer_writes_again(db, cloud, now):
    reply = draft(customer(at=now.ago(hours=2)), at=now.ago(hours=1))
    approve(reply)
    lifecycle.mark_failed(reply.message_id, WINDOW_CLOSED_TEXT, actor="sender", source="worker")
    now.move(hours=23)  # 25 hours since the customer wrote
    with pytest.raises(MoveRefused) as caught:
        lifecycle.retry(reply.message_id, actor="dana", source=Source.WEB)
    assert caught.value.code == Refusal.WINDOW_CLOSED
    assert fresh(reply).status == Status.FAILED
    assert fresh(reply).data["error"] == WINDOW_CLOSED_TEXT

    customer(at=now.ago(minutes=1), body="Are you there?")
    retried = lifecycle.retry(reply.message_id, actor="dana", source=Source.WEB)
    assert retried.status == Status.APPROVED
    assert "error" not in fresh(reply).data


def test_without_a_window_a_three_day_old_draft_is_approved_and_retried(db, now):
    reply = draft(customer(at=now.ago(days=3)), at=now.ago(days=3), body="x" * 5000)
    assert approve(reply).status == Status.APPROVED
    lifecycle.mark_failed(reply.message_id, "boom", actor="sender", source="worker")
    assert lifecycle.retry(reply.message_id, actor="dana", source=Source.WEB).status == (
        Status.APPROVED
    )


def test_a_draft_over_4096_characters_cannot_be_approved_through_cloud(db, cloud, now):
    incoming = customer(at=now.ago(minutes=10))
    longest = draft(incoming, at=now.ago(minutes=9), body="x" * 4096)
    assert approve(longest).status == Status.APPROVED
    too_long = make_reply(incoming=incoming, body="y" * 4097, id="reply_long")
    with pytest.raises(window.TextTooLong) as caught:
        approve(too_long)
    assert isinstance(caught.value, MoveRefused)  # every caller that reports refusals reports it
    assert "4,097 characters" in caught.value.reason and "at most 4,096" in caught.value.reason
    assert fresh(too_long).status == Status.PENDING_APPROVAL


def test_an_edit_over_4096_characters_is_refused_through_cloud_only(db, cloud, now, settings):
    reply = draft(customer(at=now.ago(minutes=10)), at=now.ago(minutes=9))
    with pytest.raises(ValueError, match="at most 4,096"):
        edit(reply, "z" * 4097)
    assert fresh(reply).status == Status.PENDING_APPROVAL
    assert edit(reply, "z" * 4096).body == "z" * 4096
    settings.GATEWAY_KIND = "wwebjs"
    other = draft(customer("923004444444", at=now.ago(minutes=5)), at=now.ago(minutes=4))
    assert edit(other, "z" * 5000).status == Status.APPROVED


def test_automatic_approval_leaves_a_closed_window_draft_pending_and_says_why(db, cloud, now):
    statefile.import_bytes(b'{"human_in_the_loop": false}', actor="t", source=Source.COMMAND)
    assert not rootstate.human_in_the_loop()
    open_one = draft(customer(at=now.ago(hours=1)), at=now.ago(minutes=1))
    assert open_one.status == Status.APPROVED and open_one.status_changed_by == "auto"

    closed = draft(customer("923006666666", at=now.ago(hours=25)), at=now.ago(minutes=1))
    assert closed.status == Status.PENDING_APPROVAL
    assert fresh(closed).status == Status.PENDING_APPROVAL
    event = AuditEvent.objects.filter(message_id=closed.message_id).first()
    assert (event.action, event.actor, event.note) == (
        "auto_approve_refused",
        "auto",
        WINDOW_CLOSED_TEXT,
    )
    assert not AuditEvent.objects.filter(message_id=closed.message_id, action="approve").exists()

    long_one = draft(
        customer("923007777777", at=now.ago(hours=1)), at=now.ago(minutes=1), body="w" * 4097
    )
    assert fresh(long_one).status == Status.PENDING_APPROVAL


def test_a_person_is_still_refused_what_the_automation_leaves_pending(db, cloud, now):
    closed = draft(customer(at=now.ago(hours=25)), at=now.ago(minutes=1))
    with pytest.raises(MoveRefused):
        lifecycle.approve(closed.message_id, actor="dana", source=Source.WEB)


def test_the_admin_action_reports_the_window_as_why_it_skipped(db, client, cloud, now):
    user = User.objects.create_user("fixer", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_message", "change_message", "review_message"]
        )
    )
    client.force_login(user)
    closed = draft(customer(at=now.ago(hours=25)), at=now.ago(hours=2))
    response = client.post(
        reverse("admin:statecore_message_changelist"),
        {"action": "approve", "_selected_action": [closed.pk]},
        follow=True,
    )
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert "Approve: 0 moved, 1 skipped." in texts
    assert any(WINDOW_CLOSED_TEXT in text for text in texts)
    assert fresh(closed).status == Status.PENDING_APPROVAL


# --- The sender's check -------------------------------------------------------------


def test_the_sender_is_told_when_a_reply_can_no_longer_go(db, cloud, now):
    reply = draft(customer(at=now.ago(hours=20)), at=now.ago(hours=19))
    approve(reply)
    reply = fresh(reply)
    assert window.refusal_for(reply, now.at) == ""
    assert window.refusal_for(reply, now.at + timedelta(hours=4)) == WINDOW_CLOSED_TEXT
    Message.objects.filter(pk=reply.pk).update(body="v" * 4097)
    assert "at most 4,096" in window.refusal_for(fresh(reply), now.at)


# --- The queue's cards --------------------------------------------------------------


def test_each_card_shows_how_long_the_customer_waited_and_the_window_left(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=3, minutes=10)), at=now.ago(hours=3))
    card = card_html(rc.get("/queue/"), reply)
    assert re.search(r"Customer waited <time[^>]*>3 h 10 min</time>", card)
    assert re.search(r'class="window-left window-open"[^>]*>window open 20 h 50 min<', card)
    assert "disabled" not in card


def test_under_two_hours_left_the_window_is_orange(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=22, minutes=1)), at=now.ago(hours=22))
    card = card_html(rc.get("/queue/"), reply)
    assert re.search(r'class="window-left window-short"[^>]*>window open 1 h 59 min<', card)
    assert ".window-short { color: var(--warning); }" in _css(rc)


def test_a_closed_window_is_red_and_approve_is_disabled_with_the_reason(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=24)), at=now.ago(hours=23))
    card = card_html(rc.get("/queue/"), reply)
    assert re.search(r'class="window-left window-closed"[^>]*>window closed<', card)
    assert f"<strong>Cannot approve:</strong> {WINDOW_CLOSED_TEXT}." in card
    button = re.search(r'<button type="submit" class="button button-primary"[^>]*>Approve', card)
    assert button and "disabled" in button.group(0)
    assert ".window-closed { color: var(--danger); }" in _css(rc)


def test_a_draft_whose_customer_message_is_not_stored_has_a_closed_window(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=2)), at=now.ago(hours=1))
    Message.objects.filter(message_id=reply.reply_to).delete()
    card = card_html(rc.get("/queue/"), reply)
    assert "No message from the customer stored · " in card
    assert re.search(r'class="window-left window-closed"[^>]*>window closed<', card)
    assert f"<strong>Cannot approve:</strong> {WINDOW_CLOSED_TEXT}." in card


def test_asking_to_confirm_a_stale_draft_still_says_the_window_closed(rc, cloud, now):
    incoming = customer(at=now.ago(hours=26))
    reply = draft(incoming, at=now.ago(hours=25, minutes=50))
    customer(at=now.ago(hours=25), body="Hello?")  # wrote again, but long ago
    response = rc.post(url("approve", reply), **HTMX)
    html = response.content.decode()
    assert "The customer wrote again after this draft." in html
    assert f"<strong>Cannot approve:</strong> {WINDOW_CLOSED_TEXT}." in html
    assert re.search(r"<button[^>]*disabled[^>]*>Approve anyway", html)
    rc.post(url("approve", reply), {"confirm_stale": "1"}, **HTMX)
    assert fresh(reply).status == Status.PENDING_APPROVAL


def _css(client: Client) -> str:
    return b"".join(client.get("/static/css/app.css").streaming_content).decode()


def test_without_a_window_the_card_says_nothing_of_it(rc, now):
    reply = draft(customer(at=now.ago(days=2)), at=now.ago(days=2), body="x" * 5000)
    card = card_html(rc.get("/queue/"), reply)
    assert "window" not in card.lower()
    assert "Cannot approve" not in card and "disabled" not in card


# --- The queue's actions ------------------------------------------------------------


def test_approve_on_a_closed_window_is_refused_on_the_page_with_the_reason(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=23, minutes=59)), at=now.ago(hours=23))
    shown = rc.get("/queue/")
    assert "disabled" not in card_html(shown, reply)  # open when the page was drawn
    now.move(minutes=1)
    response = rc.post(url("approve", reply), **HTMX)
    assert response.status_code == 409
    card = card_html(response, reply)
    assert f"<strong>Not approved:</strong> {WINDOW_CLOSED_TEXT}." in card
    assert "data-pending" in card  # still a live card, not "handled elsewhere"
    assert fresh(reply).status == Status.PENDING_APPROVAL
    # Without JavaScript: the page holding the card, with the same reason.
    page = rc.post(url("approve", reply), {"next": "/queue/"})
    assert page.status_code == 409 and WINDOW_CLOSED_TEXT in page.content.decode()


def test_approve_at_23_h_59_from_the_page_goes_through(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=23, minutes=59)), at=now.ago(hours=23))
    response = rc.post(url("approve", reply), **HTMX)
    assert response.status_code == 200
    assert fresh(reply).status == Status.APPROVED


def test_an_edit_on_a_closed_window_keeps_the_text_and_says_why(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=25)), at=now.ago(hours=23))
    response = rc.post(url("edit", reply), {"text": "My careful new answer"}, **HTMX)
    assert response.status_code == 409
    card = card_html(response, reply)
    assert "My careful new answer</textarea>" in card
    assert f"Not approved: {WINDOW_CLOSED_TEXT}." in card
    assert fresh(reply).status == Status.PENDING_APPROVAL


def test_with_cloud_the_edit_box_says_the_4096_limit_and_holds_to_it(rc, cloud, now):
    reply = draft(customer(at=now.ago(minutes=10)), at=now.ago(minutes=9))
    box = rc.get(url("edit", reply), **HTMX).content.decode()
    assert 'maxlength="4096"' in box
    assert "At most 4,096 characters: the WhatsApp Cloud API sends no more." in box
    response = rc.post(url("edit", reply), {"text": "q" * 4097}, **HTMX)
    assert response.status_code == 422
    assert (
        "The reply is 4,097 characters and the WhatsApp Cloud API sends at most 4,096: "
        "edit it shorter." in response.content.decode()
    )
    assert fresh(reply).status == Status.PENDING_APPROVAL
    assert rc.post(url("edit", reply), {"text": "q" * 4096}, **HTMX).status_code == 200
    assert fresh(reply).status == Status.APPROVED


def test_without_cloud_the_edit_box_keeps_its_own_limit(rc, now):
    reply = draft(customer(at=now.ago(minutes=10)), at=now.ago(minutes=9))
    box = rc.get(url("edit", reply), **HTMX).content.decode()
    assert 'maxlength="65536"' in box and "4,096" not in box
    assert rc.post(url("edit", reply), {"text": "q" * 5000}, **HTMX).status_code == 200


def test_approve_of_a_draft_over_4096_characters_is_disabled_and_refused(rc, cloud, now):
    reply = draft(customer(at=now.ago(minutes=10)), at=now.ago(minutes=9), body="L" * 4097)
    card = card_html(rc.get("/queue/"), reply)
    assert "<strong>Cannot approve:</strong> the reply is 4,097 characters" in card
    response = rc.post(url("approve", reply), **HTMX)
    assert response.status_code == 409
    assert (
        "<strong>Not approved:</strong> the reply is 4,097 characters" in response.content.decode()
    )
    assert fresh(reply).status == Status.PENDING_APPROVAL


def test_bulk_approve_skips_closed_windows_and_names_them(rc, cloud, now):
    open_one = draft(customer(name="Open Olga", at=now.ago(hours=2)), at=now.ago(hours=1))
    closed = draft(
        customer("923008888888", name="Closed Carla", at=now.ago(hours=25)), at=now.ago(hours=1)
    )
    response = rc.post(url("bulk"), {"ids": [open_one.pk, closed.pk], "action": "approve"}, **HTMX)
    html = response.content.decode()
    assert "Approved 1 of 2 selected" in html
    assert f"Not approved, <bdi>Closed Carla</bdi>: {WINDOW_CLOSED_TEXT}." in html
    assert fresh(open_one).status == Status.APPROVED
    assert fresh(closed).status == Status.PENDING_APPROVAL
    # Confirming "customer wrote again" does not let a closed window through.
    rc.post(url("bulk"), {"ids": [closed.pk], "action": "approve", "confirm_stale": "1"})
    assert fresh(closed).status == Status.PENDING_APPROVAL


def test_bulk_approve_without_javascript_names_the_closed_window(rc, cloud, now):
    closed = draft(customer(at=now.ago(hours=25)), at=now.ago(hours=1))
    response = rc.post(url("bulk"), {"ids": [closed.pk], "action": "approve", "next": "/queue/"})
    assert response.status_code == 302
    page = rc.get("/queue/").content.decode()
    assert f"Skipped the reply to Customer: {WINDOW_CLOSED_TEXT}." in page


def test_bulk_names_a_window_that_closed_after_its_card_was_worked_out(rc, cloud, now, monkeypatch):
    reply = draft(customer(at=now.ago(hours=23, minutes=59)), at=now.ago(hours=1))
    # The card thinks the window open (as a page drawn a moment ago); the lifecycle's own
    # check, in the same statement as the move, refuses it.
    monkeypatch.setattr(window, "closes_at_for", lambda chats: {c: now.at + DAY for c in chats})
    now.move(minutes=1)
    response = rc.post(url("bulk"), {"ids": [reply.pk], "action": "approve"}, **HTMX)
    html = response.content.decode()
    assert f"Not approved, <bdi>Customer</bdi>: {WINDOW_CLOSED_TEXT}." in html
    assert "Handled elsewhere" not in html
    assert fresh(reply).status == Status.PENDING_APPROVAL


def test_retry_from_the_history_is_refused_with_the_reason(rc, cloud, now):
    reply = draft(customer(at=now.ago(hours=2)), at=now.ago(hours=1))
    approve(reply)
    lifecycle.mark_failed(reply.message_id, WINDOW_CLOSED_TEXT, actor="sender", source="worker")
    now.move(hours=23)
    response = rc.post(url("retry", reply), **HTMX)
    assert response.status_code == 409
    assert f"Not done: {WINDOW_CLOSED_TEXT}." in response.content.decode()
    assert fresh(reply).status == Status.FAILED
    customer(at=now.ago(seconds=5))
    assert rc.post(url("retry", reply), **HTMX).status_code == 200
    assert fresh(reply).status == Status.APPROVED


# --- Query counts -------------------------------------------------------------------


def count_queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_the_window_costs_the_queue_page_one_query_whatever_the_volume(
    db, settings, monkeypatch, now
):
    client = reviewer_client()
    rootstate.get_root()
    bulk_state(5)
    without = count_queries(client, "/queue/")
    use_cloud(settings)
    small = count_queries(client, "/queue/")
    bulk_state(495)
    large = count_queries(client, "/queue/")
    assert small == large == without + 1
    assert "window open" in client.get("/queue/").content.decode()


def test_an_htmx_approve_with_cloud_runs_no_more_queries(db, cloud, now, django_assert_num_queries):
    client = reviewer_client()
    rootstate.get_root()
    reply = draft(customer(at=now.ago(hours=1)), at=now.ago(minutes=50))
    # The window is a condition of the move's UPDATE; the length is read off the locked
    # row: as many queries as without a window (tests/conftest.py).
    with django_assert_num_queries(APPROVE_QUERIES):
        response = client.post(url("approve", reply), **HTMX)
    assert response.status_code == 200 and fresh(reply).status == Status.APPROVED


# --- The overview -------------------------------------------------------------------


def test_the_overview_counts_replies_lost_to_the_window(db, client, cloud, now):
    client.force_login(make_user("ayesha"))
    for n, (days_ago, error) in enumerate(
        [
            (1, WINDOW_CLOSED_TEXT),
            (2, f"{WINDOW_CLOSED_TEXT} (131047)"),
            (10, WINDOW_CLOSED_TEXT),  # older than 7 days: stored, not in the week
            (1, "outcome unknown: check the phone before retrying"),
        ]
    ):
        reply = draft(customer(f"92300111{n:04d}", at=now.ago(hours=1)), at=now.ago(minutes=50))
        approve(reply)
        lifecycle.mark_failed(reply.message_id, error, actor="sender", source="worker")
        Message.objects.filter(pk=reply.pk).update(
            status_updated_at=now.at - timedelta(days=days_ago)
        )
    sent = draft(customer("923002220000", at=now.ago(hours=1)), at=now.ago(minutes=50))
    Message.objects.filter(pk=sent.pk).update(status=Status.SENT)
    html = client.get("/").content.decode()
    assert 'Lost to the 24-hour window: <strong data-counter="window_week">2</strong>' in html
    assert "(3 such failed replies stored now)" in html


def test_without_a_window_the_overview_does_not_mention_it(db, client, now):
    client.force_login(make_user("ayesha"))
    assert "24-hour window" not in client.get("/").content.decode()


def test_a_scripts_move_message_is_refused_the_same_on_a_closed_window(db, cloud, now):
    from statecore.state_manager import StateManager

    reply = draft(customer(at=now.ago(hours=25)), at=now.ago(hours=24, minutes=30))
    long_draft = draft(
        customer("923007654321", at=now.ago(minutes=5)), at=now.ago(minutes=4), body="z" * 4097
    )
    manager = StateManager()
    with pytest.raises(MoveRefused) as closed:
        manager.move_message(reply.message_id, "pending_approval", "approved")
    with pytest.raises(MoveRefused) as long:
        manager.move_message(long_draft.message_id, "pending_approval", "approved")
    assert (closed.value.code, long.value.code) == (Refusal.WINDOW_CLOSED, Refusal.TOO_LONG)
    assert fresh(reply).status == fresh(long_draft).status == Status.PENDING_APPROVAL
