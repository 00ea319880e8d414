"""A person answering a chat from the phone: the pending draft of that chat then asks
"answered from the phone at 10:42 — approve anyway?", like "customer wrote again"."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from statecore import clock, rootstate, window
from statecore.models import Message, Status
from tests.conftest import CONFIRMED_APPROVE_QUERIES
from tests.test_window import (
    HTMX,
    Clock,
    at_noon,
    card_html,
    customer,
    draft,
    fresh,
    phone_answer,
    reviewer_client,
    url,
    use_cloud,
)

NUMBER = "923001234567"


@pytest.fixture
def now(monkeypatch) -> Clock:
    return at_noon(monkeypatch)


@pytest.fixture
def rc(db) -> Client:
    return reviewer_client()


def answered_draft(now):
    """A draft made at 10:30, answered from the phone at 10:42 (the clock says 12:00)."""
    reply = draft(
        customer(NUMBER, at=now.ago(hours=1, minutes=40)), at=now.ago(hours=1, minutes=30)
    )
    answer = phone_answer(NUMBER, at=now.ago(hours=1, minutes=18), body="Called them instead")
    return reply, answer


def test_a_phone_answer_is_stored_as_part_of_the_conversation(db, now):
    _, answer = answered_draft(now)
    stored = fresh(answer)
    assert (stored.status, stored.chat, stored.sender, stored.reply_to) == (
        Status.SENT,
        NUMBER,
        "",
        "",
    )
    assert stored.data["from_phone"] is True


def test_the_card_of_a_draft_answered_from_the_phone_says_when(rc, now):
    reply, _ = answered_draft(now)
    card = card_html(rc.get("/queue/"), reply)
    assert "is-stale" in card
    assert "Answered from the phone</span> at 10:42, after this draft" in card
    assert "Called them instead" in card
    assert "Customer wrote again" not in card


def test_approving_it_asks_first_like_customer_wrote_again(rc, now):
    reply, _ = answered_draft(now)
    response = rc.post(url("approve", reply), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>Answered from the phone at 10:42</strong> — approve anyway?" in html
    assert "Approve anyway" in html
    assert fresh(reply).status == Status.PENDING_APPROVAL
    response = rc.post(url("approve", reply), {"confirm_stale": "1"}, **HTMX)
    assert response.status_code == 200
    assert fresh(reply).status == Status.APPROVED


def test_an_answer_before_the_draft_or_in_another_chat_asks_nothing(rc, now):
    reply = draft(customer(NUMBER, at=now.ago(hours=2)), at=now.ago(hours=1))
    phone_answer(NUMBER, at=now.ago(hours=1, minutes=30))  # before the draft
    phone_answer("923009999999", at=now.ago(minutes=5))  # another chat
    card = card_html(rc.get("/queue/"), reply)
    assert "Answered from the phone" not in card and "is-stale" not in card
    rc.post(url("approve", reply), **HTMX)
    assert fresh(reply).status == Status.APPROVED


def test_an_answer_between_two_drafts_of_other_chats_marks_only_the_one_it_follows(rc, now):
    older = draft(customer("923002222222", at=now.ago(hours=3)), at=now.ago(hours=3))
    newer = draft(customer(NUMBER, at=now.ago(hours=1)), at=now.ago(minutes=30))
    phone_answer(NUMBER, at=now.ago(hours=2))  # after the older draft, before this chat's
    phone_answer("923002222222", at=now.ago(hours=2, minutes=30))
    page = rc.get("/queue/")
    assert "Answered from the phone" not in card_html(page, newer)
    assert "Answered from the phone</span> at 09:30" in card_html(page, older)


def test_an_answer_on_another_day_says_the_day(rc, now):
    reply = draft(customer(NUMBER, at=now.ago(days=1, hours=3)), at=now.ago(days=1, hours=2))
    phone_answer(NUMBER, at=now.ago(days=1, hours=1, minutes=18))
    assert "Answered from the phone</span> at Mar 9, 10:42" in card_html(rc.get("/queue/"), reply)


def test_the_poll_marks_a_shown_card_when_the_phone_answers(rc, now):
    reply = draft(customer(NUMBER, at=now.ago(hours=2)), at=now.ago(hours=1))
    page = card_html(rc.get("/queue/"), reply)
    assert f'name="shown" value="{reply.pk}-0"' in page
    quiet = rc.get(url("queue-poll"), {"shown": [f"{reply.pk}-0"]}, **HTMX).content.decode()
    assert f"stale-{reply.pk}" not in quiet
    answer = phone_answer(NUMBER, at=now.ago(minutes=1))
    html = rc.get(url("queue-poll"), {"shown": [f"{reply.pk}-0"]}, **HTMX).content.decode()
    assert f'<div id="stale-{reply.pk}" class="stale-slot" hx-swap-oob="true">' in html
    assert f'name="shown" value="{reply.pk}-{answer.pk}"' in html
    assert "Answered from the phone</span> at 11:59" in html
    # Once the page shows it, the poll leaves the card alone.
    again = rc.get(url("queue-poll"), {"shown": [f"{reply.pk}-{answer.pk}"]}, **HTMX)
    assert f"stale-{reply.pk}" not in again.content.decode()


def test_a_new_card_from_the_poll_already_carries_the_phone_answer(rc, now):
    reply, _ = answered_draft(now)
    html = rc.get(url("queue-poll"), **HTMX).content.decode()
    match = re.search(rf'<article id="card-{reply.pk}".*?</article>', html, re.S)
    assert match and "Answered from the phone</span> at 10:42" in match.group(0)


def test_bulk_approve_skips_it_unless_confirmed(rc, now):
    reply, _ = answered_draft(now)
    plain = draft(customer("923002222222", at=now.ago(hours=1)), at=now.ago(minutes=30))
    response = rc.post(url("bulk"), {"ids": [reply.pk, plain.pk], "action": "approve"}, **HTMX)
    html = response.content.decode()
    assert "Approved 1 of 2 selected" in html
    assert "Skipped because someone answered from the phone since the draft" in html
    assert "<bdi>Customer</bdi> (at 10:42)" in html
    assert fresh(reply).status == Status.PENDING_APPROVAL
    rc.post(url("bulk"), {"ids": [reply.pk], "action": "approve", "confirm_stale": "1"}, **HTMX)
    assert fresh(reply).status == Status.APPROVED


def test_a_phone_answer_does_not_reopen_the_window(db, settings, now):
    use_cloud(settings)
    reply = draft(customer(NUMBER, at=now.ago(hours=25)), at=now.ago(hours=24, minutes=30))
    phone_answer(NUMBER, at=now.ago(minutes=10))
    assert window.is_closed(NUMBER, now.at)
    assert window.refusal_for(reply, now.at) == window.WINDOW_CLOSED_TEXT


def test_approving_an_answered_draft_runs_the_same_queries(db, now, django_assert_num_queries):
    client = reviewer_client()
    rootstate.get_root()
    reply, _ = answered_draft(now)
    with django_assert_num_queries(CONFIRMED_APPROVE_QUERIES):
        response = client.post(url("approve", reply), {"confirm_stale": "1"}, **HTMX)
    assert response.status_code == 200 and fresh(reply).status == Status.APPROVED
    assert Message.objects.filter(chat=NUMBER, status=Status.SENT).count() == 1


@pytest.mark.parametrize(
    "kind, words", [("ptt", "voice note"), ("image", "image"), ("madeup", "file")]
)
def test_a_media_message_says_what_the_customer_sent(db, kind, words):
    from approvals.queue import build_cards
    from tests.factories import make_incoming, make_reply

    incoming = make_incoming(body="", type=kind, hasMedia=True)
    card = build_cards([make_reply(incoming=incoming)], now=clock.now())[0]
    assert card.incoming_media == words
    text = make_incoming(body="Hello", type="chat", hasMedia=False)
    assert build_cards([make_reply(incoming=text)], now=clock.now())[0].incoming_media == ""


def test_the_card_of_a_voice_note_says_so_on_the_queue(db):
    from tests.factories import make_incoming, make_reply
    from tests.users import make_user

    make_reply(incoming=make_incoming(body="", type="ptt", hasMedia=True))
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    page = client.get("/queue/").content.decode()
    assert "sent a voice note" in page and "(a voice note, no text" in page
