"""The queue card actions: approve, edit, reject, undo; two reviewers at once; stale drafts; the query count of an approve."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from statecore import clock, lifecycle, rootstate
from statecore.models import AuditEvent, Message, Source, Status
from tests.conftest import (
    APPROVE_QUERIES,
    CONFIRMED_APPROVE_QUERIES,
    HTMX,
    ago,
    card_html,
    fresh,
    stale_draft,
    url,
)
from tests.factories import make_incoming, make_reply
from tests.users import make_user

# --- Actions ------------------------------------------------------------------------


def test_approve_swaps_the_card_and_tells_the_counters(rc):
    draft = make_reply(body="Fine as it is")
    response = rc.post(url("approve", draft), **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == '{"queue-changed": {}}'
    html = response.content.decode()
    assert html.strip().startswith(f'<article id="card-{draft.pk}"')
    assert "Approved" in html and ">Undo</button>" in html
    assert "<html" not in html
    msg = fresh(draft)
    assert (msg.status, msg.status_changed_by) == (Status.APPROVED, "dana")
    event = AuditEvent.objects.filter(message_id=draft.message_id, action="approve").get()
    assert (event.actor, event.source) == ("dana", Source.WEB)


def test_approve_without_javascript_redirects_to_the_queue_with_an_undo(rc):
    draft = make_reply()
    response = rc.post(url("approve", draft), {"next": "/queue/?kind=direct"})
    assert response.status_code == 302
    assert response["Location"] == f"/queue/?kind=direct&done={draft.pk}"
    page = rc.get(response["Location"]).content.decode()
    assert "Approved the reply to" in page
    assert f'action="/queue/{draft.pk}/undo/"' in page


def test_every_action_works_without_javascript(rc):
    edited, rejected = make_reply(body="Old"), make_reply()
    # Edit: the page with the card's text box, then post/redirect/get.
    page = rc.get(url("edit", edited), {"next": "/queue/"}).content.decode()
    assert "<html" in page and "Save and approve" in page and "Old</textarea>" in page
    response = rc.post(url("edit", edited), {"text": "New", "next": "/queue/"})
    assert response["Location"] == f"/queue/?done={edited.pk}"
    assert fresh(edited).body == "New"
    # Reject: the page asking for a reason, then post/redirect/get.
    assert 'name="reason"' in rc.get(url("reject", rejected)).content.decode()
    response = rc.post(url("reject", rejected), {"reason": "No", "next": "/queue/"})
    assert response["Location"] == f"/queue/?done={rejected.pk}"
    # Undo from the queue's "just handled" strip.
    page = rc.get(response["Location"]).content.decode()
    assert "Rejected the reply to" in page and f'action="/queue/{rejected.pk}/undo/"' in page
    response = rc.post(url("undo", rejected), {"next": "/queue/"})
    assert response["Location"] == "/queue/"
    assert fresh(rejected).status == Status.PENDING_APPROVAL
    assert "is back in the queue" in rc.get("/queue/").content.decode()


def test_the_nav_offers_admin_to_staff_only(db):
    staff, plain = Client(), Client()
    staff.force_login(make_user("boss", reviewer=True, staff=True))
    plain.force_login(make_user("dana", reviewer=True))
    assert 'href="/admin/">Admin</a>' in staff.get("/queue/").content.decode()
    assert 'href="/admin/">Admin</a>' not in plain.get("/queue/").content.decode()


def test_a_foreign_next_is_not_followed(rc):
    draft = make_reply()
    response = rc.post(url("approve", draft), {"next": "https://evil.example/"})
    assert response["Location"].startswith("/queue/?done=")


def test_edit_shows_the_draft_in_a_text_box(rc):
    draft = make_reply(body="Line one\nLine two")
    response = rc.get(url("edit", draft), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(r"<textarea[^>]*name=\"text\"[^>]*>\nLine one\nLine two</textarea>", html)
    assert fresh(draft).status == Status.PENDING_APPROVAL


def test_edit_and_approve_keeps_the_original_in_the_audit(rc):
    draft = make_reply(body="Original draft")
    response = rc.post(url("edit", draft), {"text": "Better reply\r\nwith two lines"}, **HTMX)
    assert response.status_code == 200
    msg = fresh(draft)
    assert (msg.status, msg.body) == (Status.APPROVED, "Better reply\nwith two lines")
    assert msg.data["body"] == "Better reply\nwith two lines"
    event = AuditEvent.objects.get(message_id=draft.message_id, action="approve")
    assert event.detail == {
        "original": "Original draft",
        "edited": "Better reply\nwith two lines",
        "distance": 24,
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "cannot be empty"), ("   \r\n  ", "cannot be empty"), ("x" * 65_537, "at most 65,536")],
)
def test_edit_refuses_an_empty_or_too_long_reply(rc, text, error):
    draft = make_reply(body="Keep me")
    response = rc.post(url("edit", draft), {"text": text}, **HTMX)
    assert response.status_code == 422
    assert error in response.content.decode()
    assert "<textarea" in response.content.decode()
    msg = fresh(draft)
    assert (msg.status, msg.body) == (Status.PENDING_APPROVAL, "Keep me")
    assert not AuditEvent.objects.filter(message_id=draft.message_id, action="approve").exists()


def test_edit_accepts_exactly_the_longest_reply(rc):
    draft = make_reply()
    text = "y" * 65_536
    assert rc.post(url("edit", draft), {"text": text}, **HTMX).status_code == 200
    assert fresh(draft).body == text


def test_edit_errors_without_javascript_show_the_page_with_the_card(rc):
    draft = make_reply()
    response = rc.post(url("edit", draft), {"text": " "})
    assert response.status_code == 422
    page = response.content.decode()
    assert "<html" in page and "cannot be empty" in page and "Back to the queue" in page


def test_reject_asks_for_an_optional_reason_then_rejects(rc):
    draft = make_reply()
    form = rc.get(url("reject", draft), **HTMX).content.decode()
    assert 'name="reason"' in form and ">Reject</button>" in form
    response = rc.post(url("reject", draft), {"reason": "Wrong price"}, **HTMX)
    assert response.status_code == 200
    assert fresh(draft).status == Status.REJECTED
    event = AuditEvent.objects.get(message_id=draft.message_id, action="reject")
    assert (event.note, event.actor) == ("Wrong price", "dana")


def test_reject_without_a_reason(rc):
    draft = make_reply()
    assert rc.post(url("reject", draft), {}, **HTMX).status_code == 200
    assert AuditEvent.objects.get(message_id=draft.message_id, action="reject").note == ""


def test_reject_refuses_an_overlong_reason(rc):
    draft = make_reply()
    response = rc.post(url("reject", draft), {"reason": "r" * 1001}, **HTMX)
    assert response.status_code == 422
    assert fresh(draft).status == Status.PENDING_APPROVAL


@pytest.mark.parametrize("first", ["approve", "reject"])
def test_undo_puts_the_reply_back_in_the_queue(rc, first):
    draft = make_reply()
    rc.post(url(first, draft), **HTMX)
    response = rc.post(url("undo", draft), **HTMX)
    assert response.status_code == 200
    assert ">Approve" in response.content.decode()  # a pending card again
    assert fresh(draft).status == Status.PENDING_APPROVAL
    assert AuditEvent.objects.filter(message_id=draft.message_id, action="undo").count() == 1


def test_undo_is_offered_for_the_grace_period_only(rc, settings):
    settings.APPROVAL_GRACE_SECONDS = 10
    draft = make_reply()
    html = rc.post(url("approve", draft), **HTMX).content.decode()
    assert re.search(r'data-undo-seconds="(9|10)"', html)
    Message.objects.filter(pk=draft.pk).update(
        status_updated_at=clock.now() - timedelta(seconds=11)
    )
    assert ">Undo</button>" not in rc.get(url("card", draft), **HTMX).content.decode()


def test_undo_is_refused_once_claimed_for_sending(rc):
    draft = make_reply()
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    Message.objects.filter(pk=draft.pk).update(claimed_by="sender-1", claimed_at=clock.now())
    response = rc.post(url("undo", draft), **HTMX)
    assert response.status_code == 409
    assert "claimed for sending" in response.content.decode()
    assert fresh(draft).status == Status.APPROVED


# --- Two reviewers at once ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"), [("approve", {}), ("edit", {"text": "Mine"}), ("reject", {"reason": "x"})]
)
def test_the_second_reviewer_gets_409_naming_the_first(rc, other, name, data):
    draft = make_reply()
    assert rc.post(url("approve", draft), **HTMX).status_code == 200
    response = other.post(url(name, draft), data, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert html.strip().startswith(f'<article id="card-{draft.pk}"')
    assert re.search(r"Approved by dana \d+ s ago", html)
    msg = fresh(draft)
    assert (msg.status, msg.status_changed_by) == (Status.APPROVED, "dana")
    assert AuditEvent.objects.filter(message_id=draft.message_id, action="approve").count() == 1


def test_opening_the_editor_of_a_handled_card_says_who_handled_it(rc, other):
    draft = make_reply()
    rc.post(url("reject", draft), {"reason": "no"}, **HTMX)
    response = other.get(url("edit", draft), **HTMX)
    assert response.status_code == 409
    assert "Rejected by dana" in response.content.decode()


# --- Stale drafts ----------------------------------------------------------------------


def test_a_draft_is_stale_when_its_chat_wrote_again(rc):
    draft, again = stale_draft()
    fresh_draft = make_reply(
        incoming=make_incoming(number="923008880000", timestamp=ago(minutes=3)),
        timestamp=ago(minutes=2),
    )
    make_incoming(number="923009990000", body="someone else", timestamp=ago(minutes=1))
    make_incoming(number="923008880000", body="before the draft", timestamp=ago(minutes=4))
    response = rc.get("/queue/")
    card = card_html(response, draft)
    assert "Customer wrote again" in card and "Also: cancel my order!" in card
    assert "Customer wrote again" not in card_html(response, fresh_draft)


def test_approving_a_stale_draft_asks_first(rc):
    draft, _ = stale_draft()
    response = rc.post(url("approve", draft), **HTMX)
    assert response.status_code == 200
    assert "Approve anyway" in response.content.decode()
    assert fresh(draft).status == Status.PENDING_APPROVAL
    response = rc.post(url("approve", draft), {"confirm_stale": "1"}, **HTMX)
    assert response.status_code == 200
    assert fresh(draft).status == Status.APPROVED


# --- Query counts -----------------------------------------------------------------------


@pytest.mark.parametrize("stale", [False, True])
def test_an_htmx_approve_runs_a_fixed_number_of_queries(reviewer, stale, django_assert_num_queries):
    client = Client()
    client.force_login(reviewer)  # a real session: its queries count
    rootstate.get_root()
    draft = stale_draft()[0] if stale else make_reply()
    expected = CONFIRMED_APPROVE_QUERIES if stale else APPROVE_QUERIES
    with django_assert_num_queries(expected):
        response = client.post(
            url("approve", draft), {"confirm_stale": "1"} if stale else {}, **HTMX
        )
    assert response.status_code == 200 and ">Undo</button>" in response.content.decode()
    assert fresh(draft).status == Status.APPROVED


@pytest.mark.parametrize(
    ("verb", "name", "data"),
    [
        ("approve", "approve", {}),
        ("reject", "reject", {}),
        ("undo", "undo", {}),
        ("retry", "retry", {}),
        ("reopen", "reopen", {}),
        ("confirm_sent", "confirm-sent", {"note": "seen on the phone"}),
    ],
)
def test_a_reply_gone_between_reading_it_and_moving_it_is_404(rc, monkeypatch, verb, name, data):
    draft = make_reply()

    def gone(message_id, *args, **kwargs):
        raise lifecycle.MessageNotFound(message_id)

    monkeypatch.setattr(lifecycle, verb, gone)
    assert rc.post(url(name, draft), data, **HTMX).status_code == 404


def _reads_of(row, queries) -> int:
    """SELECTs of the reply's own row: by its key (pages) or by its id (the lifecycle)."""
    by_key = f'"statecore_message"."id" = {row.pk}'
    by_id = f'"statecore_message"."message_id" = \'{row.message_id}\''
    return sum(
        1
        for q in queries
        if q["sql"].lstrip().upper().startswith("SELECT")
        and 'FROM "statecore_message"' in q["sql"]
        and (by_key in q["sql"] or by_id in q["sql"])
    )


@pytest.mark.parametrize(
    ("name", "data", "prepare"),
    [
        ("approve", {"confirm_stale": "1"}, make_reply),
        ("edit", {"text": "Our edited answer"}, make_reply),
        ("reject", {"reason": "wrong price"}, make_reply),
        ("undo", {}, None),
        ("retry", {}, lambda: make_reply(status=Status.FAILED)),
        ("reopen", {"note": "asked again"}, lambda: make_reply(status=Status.REJECTED)),
        ("confirm-sent", {"note": "seen"}, lambda: make_reply(status=Status.FAILED)),
    ],
)
def test_a_web_action_reads_its_reply_once(rc, name, data, prepare):
    if prepare is None:  # an Undo needs the reviewer's own decision of a moment ago
        draft = make_reply()
        rc.post(url("approve", draft), **HTMX)
    else:
        draft = prepare()
    with CaptureQueriesContext(connection) as ctx:
        response = rc.post(url(name, draft), data, **HTMX)
    assert response.status_code == 200, response.content[:300]
    assert _reads_of(draft, ctx.captured_queries) == 1
