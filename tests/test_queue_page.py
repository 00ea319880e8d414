"""The queue page: sign-in and roles, what the page shows, and its query count."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from statecore import lifecycle, rootstate
from statecore.models import Message, Source, Status
from tests.conftest import (
    HTMX,
    MAX_QUERIES,
    ago,
    card_html,
    fresh,
    url,
)
from tests.factories import make_incoming, make_reply
from tests.query_data import bulk_state
from tests.users import PASSWORD

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
    orphan = make_reply(body="Its message was deleted", timestamp=ago(minutes=40))
    Message.objects.filter(message_id=orphan.reply_to).delete()
    assert shown("kind=direct") == {farah.pk, orphan.pk}  # nothing says it is a group
    assert shown("kind=group") == {group.pk}
    orphan.delete()
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


# --- One vocabulary for every page (issue 13) ----------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/queue/",
        "/history/",
        "/session/",
        "/state/download/",
        "/state/upload/",
        "/state/upload/confirm/",
    ],
)
def test_every_page_sends_an_ended_htmx_session_to_sign_in_as_a_whole(db, path):
    response = Client().get(path, **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fqueue%2F"
    assert b"<form" not in response.content


def test_the_pager_counts_what_it_is_told_and_counts_itself_otherwise():
    from approvals.paging import CountedPaginator

    told = CountedPaginator(list(range(5)), 2, count=120)
    assert (told.count, told.num_pages) == (120, 60)
    counted = CountedPaginator(list(range(5)), 2)
    assert (counted.count, counted.num_pages) == (5, 3)


def test_the_unfiltered_queue_pager_uses_the_headers_pending_count(rc, monkeypatch):
    from approvals import queue

    for _ in range(3):
        make_reply()
    counts = queue.status_counts

    def inflated(*, now):
        return counts(now=now) | {Status.PENDING_APPROVAL: 777}

    monkeypatch.setattr(queue, "status_counts", inflated)
    monkeypatch.setattr(queue, "PAGE_SIZE", 2)
    page = rc.get("/queue/").content.decode()
    assert "777 waiting" in page  # told, not counted again
    searched = rc.get("/queue/", {"q": "Thanks"}).content.decode()
    assert "Page 1 · 2+ waiting" in searched  # searched: counted, as far as its page


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (None, ""),
        (-5, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3599, "59 min"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d"),
        (90000, "1 d 1 h"),
    ],
)
def test_a_duration_is_said_one_way_on_every_page(seconds, said):
    from approvals import present

    assert present.age(seconds) == said
