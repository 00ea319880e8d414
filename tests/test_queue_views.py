"""The reviewer queue's views: the page, every action, bulk, the poll, roles and limits."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from statecore import clock, lifecycle, rootstate
from statecore.models import AuditEvent, Message, Source, Status
from tests.factories import make_incoming, make_reply
from tests.query_data import bulk_state
from tests.users import PASSWORD, make_user

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/queue/"}
# Sign-in (session, user) and permission (2) queries included.
MAX_QUERIES = 9
# An htmx approve: sign-in 2, permission 2, the reply 1, what its card shows 1, the move 6
# (BEGIN, lock-read, compare-and-set, counter, audit row, COMMIT).
APPROVE_QUERIES = 12


@pytest.fixture
def reviewer(db):
    return make_user("dana", reviewer=True)


@pytest.fixture
def rc(reviewer) -> Client:
    """A client signed in as a reviewer."""
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def other(db) -> Client:
    """A second reviewer, the one who comes too late."""
    client = Client()
    client.force_login(make_user("sam", reviewer=True))
    return client


@pytest.fixture
def reader(db) -> Client:
    """Signed in, without the permission to review."""
    client = Client()
    client.force_login(make_user("reader"))
    return client


def ago(**delta) -> str:
    return clock.local_iso(clock.now() - timedelta(**delta))


def url(name: str, msg: Message | None = None) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk] if msg else [])


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def card_html(response, msg: Message) -> str:
    """The card of `msg` in a page."""
    text = response.content.decode()
    match = re.search(rf'<article id="card-{msg.pk}".*?</article>', text, re.S)
    assert match, f"no card for {msg.message_id}"
    return match.group(0)


# --- Sign-in and roles ------------------------------------------------------------------


def test_anonymous_is_sent_to_sign_in(db):
    response = Client().get("/queue/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/queue/"


def test_anonymous_htmx_request_gets_a_full_page_redirect(db):
    draft = make_reply()
    response = Client().post(url("approve", draft), **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")
    assert fresh(draft).status == Status.PENDING_APPROVAL


def test_sign_in_page_signs_a_reviewer_in(reviewer):
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": "dana", "password": PASSWORD, "next": "/queue/"}
    )
    assert response.status_code == 302 and response["Location"] == "/queue/"
    assert client.get("/queue/").status_code == 200


def test_sign_out_is_a_post(rc):
    page = rc.get("/queue/").content.decode()
    assert re.search(r'<form method="post" action="/accounts/logout/">', page)
    assert rc.post("/accounts/logout/").status_code == 302
    assert rc.get("/queue/").status_code == 302


def test_a_user_without_the_permission_sees_the_queue_read_only(reader):
    draft = make_reply(body="Read me")
    response = reader.get("/queue/")
    assert response.status_code == 200
    card = card_html(response, draft)
    assert "Read me" in card
    assert "Read-only" in card
    assert ">Approve" not in card and 'name="ids"' not in card
    assert 'id="bulk-form"' not in response.content.decode()


@pytest.mark.parametrize(
    ("name", "method", "data"),
    [
        ("approve", "post", {}),
        ("edit", "post", {"text": "New text"}),
        ("edit", "get", {}),
        ("reject", "post", {"reason": "no"}),
        ("reject", "get", {}),
        ("undo", "post", {}),
    ],
)
def test_every_action_needs_the_permission(reader, name, method, data):
    draft = make_reply()
    if name == "undo":
        lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    before = fresh(draft)
    response = getattr(reader, method)(url(name, draft), data)
    assert response.status_code == 403
    after = fresh(draft)
    assert (after.status, after.body) == (before.status, before.body)


def test_bulk_needs_the_permission(reader):
    draft = make_reply()
    response = reader.post(url("bulk"), {"ids": [draft.pk], "action": "approve"})
    assert response.status_code == 403
    assert fresh(draft).status == Status.PENDING_APPROVAL


def test_a_post_without_the_csrf_token_is_refused(reviewer):
    draft = make_reply()
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    assert client.post(url("approve", draft)).status_code == 403
    assert client.post(url("bulk"), {"ids": [draft.pk], "action": "reject"}).status_code == 403
    assert fresh(draft).status == Status.PENDING_APPROVAL
    # The same post with the page's token goes through: the refusal was the token.
    client.get("/queue/")
    token = client.cookies["csrftoken"].value
    response = client.post(url("approve", draft), HTTP_X_CSRFTOKEN=token, **HTMX)
    assert response.status_code == 200
    assert fresh(draft).status == Status.APPROVED


def test_the_data_migration_makes_the_reviewers_group_even_without_permissions(db):
    migration = importlib.import_module("approvals.migrations.0001_reviewers_group")
    Group.objects.filter(name="Reviewers").delete()
    Permission.objects.filter(codename__in=["review_message", "resolve_failed"]).delete()

    class Editor:
        connection = connection

    migration.make_group(apps, Editor())
    group = Group.objects.get(name="Reviewers")
    assert sorted(group.permissions.values_list("content_type__app_label", "codename")) == [
        ("statecore", "resolve_failed"),
        ("statecore", "review_message"),
    ]


# --- The page ---------------------------------------------------------------------------


def test_queue_lists_pending_drafts_oldest_first_with_what_they_answer(rc):
    newer = make_reply(
        incoming=make_incoming(name="Bilal", number="923001110000", body="Where is my order?"),
        body="It ships today.",
        timestamp=ago(minutes=2),
    )
    older = make_reply(
        incoming=make_incoming(name="Ayesha", number="923002220000", body="Invoice please"),
        body="Here it is.",
        timestamp=ago(minutes=9),
    )
    make_reply(Status.APPROVED, body="Already approved")
    response = rc.get("/queue/")
    page = response.content.decode()
    assert page.index(f'id="card-{older.pk}"') < page.index(f'id="card-{newer.pk}"')
    assert "Already approved" not in page
    card = card_html(response, older)
    for text in ("Ayesha", "+923002220000", "Direct", "Invoice please", "Here it is.", "9 min"):
        assert text in card
    assert "Draft reply to +923002220000" in card


def test_a_group_message_is_marked_group(rc):
    incoming = make_incoming(
        name="Team", body="hello all", isGroup=True, author="923005550000@c.us"
    )
    draft = make_reply(incoming=incoming)
    card = card_html(rc.get("/queue/"), draft)
    assert ">Group<" in card and "+923005550000 in group" in card


def test_queue_shows_fifty_a_page(rc):
    drafts = [make_reply(timestamp=ago(minutes=60 - i)) for i in range(51)]
    first = rc.get("/queue/").content.decode()
    assert first.count('class="card card-view') == 50
    assert f'id="card-{drafts[50].pk}"' not in first
    assert "Page 1 of 2" in first
    second = rc.get("/queue/?page=2").content.decode()
    assert second.count('class="card card-view') == 1 and f'id="card-{drafts[50].pk}"' in second


def test_filters_by_text_sender_kind_and_waiting_time(rc):
    farah = make_reply(
        incoming=make_incoming(name="Farah", number="923003530829", body="invoice?"),
        body="Sending the invoice",
        timestamp=ago(minutes=30),
    )
    group = make_reply(
        incoming=make_incoming(name="Shop team", body="hours?", isGroup=True),
        body="We open at nine",
        timestamp=ago(minutes=2),
    )

    def shown(query: str) -> set[int]:
        page = rc.get(f"/queue/?{query}").content.decode()
        return {int(pk) for pk in re.findall(r'<article id="card-(\d+)"', page)}

    assert shown("q=invoice") == {farah.pk}  # the draft's text
    assert shown("q=farah") == {farah.pk}  # the sender's name
    assert shown("q=3530829") == {farah.pk}  # the number
    assert shown("q=hours") == {group.pk}  # the incoming message's text
    assert shown("kind=group") == {group.pk}
    assert shown("kind=direct") == {farah.pk}
    assert shown("waited=10") == {farah.pk}
    assert shown("waited=60") == set()
    assert shown("waited=-5") == {farah.pk, group.pk}  # an invalid filter is ignored


def test_header_counts_every_status_and_the_overdue(rc, settings):
    settings.OVERDUE_MINUTES = 15
    make_reply(timestamp=ago(minutes=20))
    make_reply(timestamp=ago(minutes=1))
    make_reply(Status.APPROVED)
    for _ in range(2):
        make_reply(Status.FAILED)
    page = rc.get("/queue/").content.decode()
    counts = re.search(r'<ul id="queue-counts".*?</ul>', page, re.S).group(0)
    found = dict((label, int(n)) for n, label in re.findall(r'count-n">(\d+)</span> (\w+)', counts))
    assert found == {
        "pending": 2,
        "overdue": 1,
        "approved": 1,
        "rejected": 0,
        "sent": 0,
        "failed": 2,
    }


def test_overdue_cards_are_marked(rc, settings):
    settings.OVERDUE_MINUTES = 15
    late = make_reply(timestamp=ago(minutes=16))
    early = make_reply(timestamp=ago(minutes=14))
    response = rc.get("/queue/")
    assert "Overdue" in card_html(response, late) and "is-overdue" in card_html(response, late)
    assert "Overdue" not in card_html(response, early)


def test_untrusted_text_is_shown_as_text(rc):
    incoming = make_incoming(
        name="<img src=x onerror=alert(1)>", body="<script>document.title='pwned'</script>"
    )
    draft = make_reply(incoming=incoming, body="<b>bold?</b>")
    card = card_html(rc.get("/queue/"), draft)
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in card
    assert "&lt;img src=x onerror=alert(1)&gt;" in card
    assert "<script>" not in card and "<img" not in card and "<b>" not in card
    assert 'dir="auto"' in card


def test_long_bodies_are_folded(rc):
    draft = make_reply(body="word " * 400)
    card = card_html(rc.get("/queue/"), draft)
    assert '<details class="more">' in card and "Show more" in card


def test_the_page_has_the_csp_and_the_htmx_setup(rc):
    response = rc.get("/queue/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    page = response.content.decode()
    assert '"allowEval": false' in page and '"includeIndicatorStyles": false' in page
    assert '{"code": "409", "swap": true' in page
    assert 'hx-headers=\'{"X-CSRFToken": "' in page
    assert "/static/js/queue.js" in page and "htmx-2" in page
    assert "<script>" not in page  # no inline script


def test_the_red_banner_shows_while_the_session_is_not_valid(rc, tmp_path, settings):
    settings.WHATSAPP_SESSION_BASE = tmp_path
    rootstate.get_root()
    assert "WhatsApp is not connected" in rc.get("/queue/").content.decode()
    (tmp_path / ".wwebjs_auth").mkdir()
    from statecore import session

    session.record_login(True, actor="test", source=Source.COMMAND)
    assert "WhatsApp is not connected" not in rc.get("/queue/").content.decode()


def test_unknown_ids_are_404(rc):
    for name, method in [
        ("card", "get"),
        ("approve", "post"),
        ("edit", "get"),
        ("edit", "post"),
        ("reject", "post"),
        ("undo", "post"),
    ]:
        response = getattr(rc, method)(reverse(f"approvals:{name}", args=[987654]), **HTMX)
        assert response.status_code == 404, name


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
    assert event.detail == {"original": "Original draft", "edited": "Better reply\nwith two lines"}


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


def stale_draft() -> tuple[Message, Message]:
    incoming = make_incoming(number="923007770000", body="first", timestamp=ago(minutes=10))
    draft = make_reply(incoming=incoming, timestamp=ago(minutes=9))
    again = make_incoming(
        number="923007770000", body="Also: cancel my order!", timestamp=ago(minutes=5)
    )
    return draft, again


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


# --- Bulk --------------------------------------------------------------------------------


def test_bulk_approve_skips_a_stale_draft_unless_confirmed(rc):
    plain = [make_reply() for _ in range(2)]
    stale, _ = stale_draft()
    ids = [m.pk for m in [*plain, stale]]
    response = rc.post(url("bulk"), {"ids": ids, "action": "approve"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == '{"queue-changed": {}}'
    html = response.content.decode()
    assert "Approved 2 of 3 selected" in html and "customer wrote again" in html
    assert html.count('hx-swap-oob="true"') == 2  # the two cards, swapped in place
    assert [fresh(m).status for m in plain] == [Status.APPROVED, Status.APPROVED]
    assert fresh(stale).status == Status.PENDING_APPROVAL
    response = rc.post(url("bulk"), {"ids": [stale.pk], "action": "approve", "confirm_stale": "1"})
    assert response.status_code == 302
    assert fresh(stale).status == Status.APPROVED


def test_bulk_reject_with_a_reason_and_a_card_someone_else_handled(rc):
    mine, theirs = make_reply(), make_reply()
    lifecycle.approve(theirs.message_id, actor="sam", source=Source.WEB)
    response = rc.post(
        url("bulk"),
        {"ids": [mine.pk, theirs.pk, 987654], "action": "reject", "reason": "Spam"},
        **HTMX,
    )
    html = response.content.decode()
    assert "Rejected 1 of 3 selected" in html
    assert "Approved by sam" in html and "1 selected reply no longer exist" in html
    assert fresh(mine).status == Status.REJECTED and fresh(theirs).status == Status.APPROVED
    assert AuditEvent.objects.get(message_id=mine.message_id, action="reject").note == "Spam"


def test_bulk_without_javascript_reports_with_messages(rc):
    draft = make_reply()
    stale, _ = stale_draft()
    response = rc.post(
        url("bulk"), {"ids": [draft.pk, stale.pk], "action": "approve", "next": "/queue/"}
    )
    assert response.status_code == 302 and response["Location"] == "/queue/"
    page = rc.get("/queue/").content.decode()
    assert "Approved 1 reply." in page and "Skipped 1 where the customer wrote again" in page


@pytest.mark.parametrize("data", [{"action": "approve"}, {"ids": ["x"], "action": "approve"}])
def test_bulk_with_nothing_or_garbage_selected_is_refused(rc, data):
    response = rc.post(url("bulk"), data, **HTMX)
    assert response.status_code == 422
    assert "Select at least one reply" in response.content.decode() or "Unknown" in (
        response.content.decode()
    )


# --- The poll ---------------------------------------------------------------------------


def test_poll_removes_handled_cards_adds_new_ones_and_marks_stale(rc):
    handled = make_reply(timestamp=ago(minutes=9))
    kept, _ = stale_draft()
    lifecycle.approve(handled.message_id, actor="sam", source=Source.WEB)
    arrived = make_reply(timestamp=ago(minutes=1))
    response = rc.get(url("queue-poll"), {"shown": [f"{handled.pk}-0", f"{kept.pk}-0"]}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert re.search(
        rf'<div id="card-{handled.pk}" hx-swap-oob="delete"><span>Approved by sam \d+ s ago', html
    )
    assert f'hx-swap-oob="beforeend:#card-list"><article id="card-{arrived.pk}"' in html.replace(
        "\n", ""
    )
    assert f'<div id="stale-{kept.pk}" class="stale-slot" hx-swap-oob="true">' in html
    assert '<ul id="queue-counts" class="counts"' in html and 'hx-swap-oob="true"' in html
    # A card the page already shows (with its newest message) is left alone.
    newest = Message.objects.filter(chat=kept.chat, reply_to="").latest("timestamp").pk
    again = rc.get(url("queue-poll"), {"shown": [f"{kept.pk}-{newest}", f"{arrived.pk}-0"]}, **HTMX)
    assert f"card-{kept.pk}" not in again.content.decode()
    assert f"stale-{kept.pk}" not in again.content.decode()


def test_poll_leaves_a_pending_card_that_moved_to_another_page(rc):
    drafts = [make_reply(timestamp=ago(minutes=60 - i)) for i in range(51)]
    html = rc.get(url("queue-poll"), {"page": "2", "shown": [f"{drafts[0].pk}-0"]}, **HTMX)
    text = html.content.decode()
    assert f'id="card-{drafts[0].pk}"' not in text  # still pending: not removed
    assert f'<article id="card-{drafts[50].pk}"' in text  # page 2's card comes in


def test_poll_says_when_a_shown_card_was_deleted(rc):
    draft = make_reply()
    pk = draft.pk
    Message.objects.filter(pk=pk).delete()
    text = rc.get(url("queue-poll"), {"shown": [f"{pk}-0"]}, **HTMX).content.decode()
    assert f'<div id="card-{pk}" hx-swap-oob="delete"><span>This reply no longer exists.' in text


# --- Query counts -----------------------------------------------------------------------


def count_queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


@pytest.mark.parametrize("path", ["/queue/", "/history/"])
def test_pages_run_the_same_few_queries_for_5_and_500_messages(reviewer, path):
    client = Client()
    client.force_login(reviewer)  # a real session: its queries count
    rootstate.get_root()  # the state's one row, as after any import
    bulk_state(5)
    small = count_queries(client, path)
    bulk_state(495)
    large = count_queries(client, path)
    assert Message.objects.replies().count() == 500
    assert small == large
    assert large <= MAX_QUERIES


@pytest.mark.parametrize("stale", [False, True])
def test_an_htmx_approve_runs_a_fixed_number_of_queries(reviewer, stale, django_assert_num_queries):
    client = Client()
    client.force_login(reviewer)  # a real session: its queries count
    rootstate.get_root()
    draft = stale_draft()[0] if stale else make_reply()
    with django_assert_num_queries(APPROVE_QUERIES):
        response = client.post(
            url("approve", draft), {"confirm_stale": "1"} if stale else {}, **HTMX
        )
    assert response.status_code == 200 and ">Undo</button>" in response.content.decode()
    assert fresh(draft).status == Status.APPROVED
