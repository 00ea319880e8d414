"""The history page: handled replies, their audit trail, Retry and Confirmed sent."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from approvals import history
from statecore import clock, lifecycle
from statecore.models import AuditEvent, Message, Source, Status
from tests.factories import make_incoming, make_reply
from tests.users import make_user

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/history/"}
UNCERTAIN = "outcome unknown: check the phone before retrying"


@pytest.fixture
def rc(db) -> Client:
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    return client


@pytest.fixture
def other(db) -> Client:
    client = Client()
    client.force_login(make_user("sam", reviewer=True))
    return client


def url(name: str, msg: Message | None = None) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk] if msg else [])


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def entry_html(response, msg: Message) -> str:
    match = re.search(
        rf'<article id="entry-{msg.pk}".*?</article>', response.content.decode(), re.S
    )
    assert match, f"no entry for {msg.message_id}"
    return match.group(0)


def failed_reply(error: str = "Connection refused", **extra) -> Message:
    draft = make_reply(**extra)
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    return lifecycle.mark_failed(draft.message_id, error, actor="sender", source=Source.WORKER)


def shown(client: Client, query: str = "") -> list[int]:
    page = client.get(f"/history/?{query}").content.decode()
    return [int(pk) for pk in re.findall(r'<article id="entry-(\d+)"', page)]


def test_history_lists_handled_replies_newest_first(rc):
    pending = make_reply()
    first, second, third = make_reply(), make_reply(), make_reply()
    lifecycle.approve(first.message_id, actor="dana", source=Source.WEB)
    lifecycle.reject(second.message_id, actor="sam", source=Source.WEB, reason="rude")
    Message.objects.filter(pk=first.pk).update(status_updated_at=clock.now() - timedelta(minutes=5))
    failed = failed_reply()
    make_reply(Status.SENT)
    order = shown(rc)
    assert pending.pk not in order and third.pk not in order
    assert order.index(failed.pk) < order.index(second.pk) < order.index(first.pk)
    assert len(order) == 4


# A reviewer's replies listed from the audit's index, or each reply probed as the
# history is walked (a reviewer with more events than REVIEWER_SPARSE).
LISTED_OR_WALKED = pytest.mark.parametrize(
    "sparse", [history.REVIEWER_SPARSE, 0], ids=["listed", "walked"]
)


@LISTED_OR_WALKED
def test_history_filters_by_status_reviewer_and_text(rc, sparse, monkeypatch):
    monkeypatch.setattr(history, "REVIEWER_SPARSE", sparse)
    approved = make_reply(
        incoming=make_incoming(name="Farah", body="invoice please"), body="Here you go"
    )
    rejected = make_reply(body="Nope")
    lifecycle.approve(approved.message_id, actor="dana", source=Source.WEB)
    lifecycle.reject(rejected.message_id, actor="sam", source=Source.WEB)
    assert shown(rc, "status=rejected") == [rejected.pk]
    assert shown(rc, "reviewer=SAM") == [rejected.pk]
    assert shown(rc, "reviewer=dana") == [approved.pk]
    assert shown(rc, "q=farah") == [approved.pk]
    assert shown(rc, "q=nope") == [rejected.pk]
    assert shown(rc, "status=pending_approval") == shown(rc)  # not a history status: ignored


def test_the_audit_trail_shows_draft_edit_decision_and_send_attempts(rc):
    draft = make_reply(incoming=make_incoming(name="Émile", body="¿Tienen envío?"), body="Yes")
    lifecycle.edit_and_approve(draft.message_id, "Yes, to all of Spain", actor="dana", source="web")
    lifecycle.mark_failed(
        draft.message_id,
        UNCERTAIN,
        actor="sender",
        source=Source.WORKER,
        detail={lifecycle.UNCERTAIN_FLAG: True},
    )
    entry = entry_html(rc.get("/history/"), draft)
    assert "Edited and approved</strong> by dana" in entry
    assert "Original draft" in entry and ">Yes</div>" in entry
    assert "Yes, to all of Spain" in entry
    assert "Send failed</strong> by sender" in entry
    assert entry.count(UNCERTAIN) >= 2  # the error line and the trail's note
    assert "¿Tienen envío?" in entry and "Émile" in entry
    assert "Edited and approved by <strong>dana</strong>" in entry
    assert "The outcome is unknown" in entry


def test_one_entry_has_its_own_page_with_the_trail_open(rc):
    reply = failed_reply()
    response = rc.get(url("history-entry", reply))
    assert response.status_code == 200
    assert '<details class="trail" open>' in entry_html(response, reply)
    assert rc.get(reverse("approvals:history-entry", args=[987654])).status_code == 404


def test_retry_sends_a_failed_reply_again(rc):
    reply = failed_reply()
    response = rc.post(url("retry", reply), **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == '{"queue-changed": {}}'
    assert response.content.decode().strip().startswith(f'<article id="entry-{reply.pk}"')
    msg = fresh(reply)
    assert msg.status == Status.APPROVED and "error" not in msg.data
    event = AuditEvent.objects.get(message_id=reply.message_id, action="retry")
    assert (event.actor, event.source) == ("dana", Source.WEB)


def test_retry_without_javascript_redirects_back(rc):
    reply = failed_reply()
    response = rc.post(url("retry", reply), {"next": "/history/?status=failed"})
    assert response.status_code == 302 and response["Location"] == "/history/?status=failed"
    assert "The reply will be sent again." in rc.get("/history/").content.decode()


def test_confirmed_sent_needs_a_note_and_is_audited(rc):
    reply = failed_reply(UNCERTAIN)
    response = rc.post(url("confirm-sent", reply), {"note": " "}, **HTMX)
    assert response.status_code == 422
    assert "Say how you confirmed it was sent." in response.content.decode()
    assert fresh(reply).status == Status.FAILED
    response = rc.post(url("confirm-sent", reply), {"note": "Seen on the phone"}, **HTMX)
    assert response.status_code == 200
    assert fresh(reply).status == Status.SENT
    event = AuditEvent.objects.get(message_id=reply.message_id, action="confirm_sent")
    assert (event.note, event.actor) == ("Seen on the phone", "dana")


def test_the_second_to_resolve_gets_409_naming_the_first(rc, other):
    reply = failed_reply()
    assert rc.post(url("retry", reply), **HTMX).status_code == 200
    for name, data in [("retry", {}), ("confirm-sent", {"note": "seen"})]:
        response = other.post(url(name, reply), data, **HTMX)
        assert response.status_code == 409
        assert re.search(r"Approved by dana \d+ s ago", response.content.decode())
    assert AuditEvent.objects.filter(message_id=reply.message_id, action="retry").count() == 1


def test_resolving_needs_its_own_permission(db):
    reply = failed_reply()
    reviewer_only = make_user("rita")
    reviewer_only.user_permissions.add(
        Permission.objects.get(content_type__app_label="statecore", codename="review_message")
    )
    client = Client()
    client.force_login(reviewer_only)
    page = entry_html(client.get("/history/"), reply)
    assert ">Retry</button>" not in page and "Read-only" in page
    assert client.post(url("retry", reply)).status_code == 403
    assert client.post(url("confirm-sent", reply), {"note": "seen"}).status_code == 403
    assert fresh(reply).status == Status.FAILED


def test_history_needs_a_sign_in_and_csrf(db):
    reply = failed_reply()
    assert Client().get("/history/")["Location"] == "/accounts/login/?next=/history/"
    assert Client().post(url("retry", reply)).status_code == 302
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("dana", reviewer=True))
    assert client.post(url("retry", reply)).status_code == 403
    assert fresh(reply).status == Status.FAILED


def test_unknown_ids_are_404(rc):
    for name in ("retry", "confirm-sent", "reopen"):
        response = rc.post(reverse(f"approvals:{name}", args=[987654]), {"note": "x"}, **HTMX)
        assert response.status_code == 404


def test_untrusted_text_in_the_history_is_text(rc):
    draft = make_reply(
        incoming=make_incoming(name="<img src=x onerror=alert(1)>", body="<script>x()</script>"),
        body="<i>hi</i>",
    )
    lifecycle.reject(draft.message_id, actor="dana", source=Source.WEB, reason="<b>no</b>")
    entry = entry_html(rc.get("/history/"), draft)
    assert "<script>" not in entry and "<img" not in entry and "<i>" not in entry
    assert "<b>" not in entry and "&lt;b&gt;no&lt;/b&gt;" in entry


# --- Pinned concepts (issue 13) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "flag", "warned"),
    [
        ("Timed out after sending", True, True),  # flagged: warned whatever the wording
        (UNCERTAIN, False, False),  # the wording alone is not the flag
        ("Connection refused", False, False),
    ],
)
def test_the_uncertain_warning_follows_the_audit_rows_flag_not_the_wording(rc, error, flag, warned):
    draft = make_reply()
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    detail = {lifecycle.UNCERTAIN_FLAG: True} if flag else {}
    lifecycle.mark_failed(
        draft.message_id, error, actor="sender", source=Source.WORKER, detail=detail
    )
    entry = entry_html(rc.get("/history/"), draft)
    assert ("The outcome is unknown" in entry) is warned


def test_an_earlier_uncertain_failure_does_not_mark_a_later_certain_one(rc):
    draft = make_reply()
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    flag = {lifecycle.UNCERTAIN_FLAG: True}
    lifecycle.mark_failed(draft.message_id, "?", actor="sender", source=Source.WORKER, detail=flag)
    lifecycle.retry(draft.message_id, actor="dana", source=Source.WEB)
    lifecycle.mark_failed(draft.message_id, "refused", actor="sender", source=Source.WORKER)
    assert "The outcome is unknown" not in entry_html(rc.get("/history/"), draft)


def test_a_reviewer_with_few_events_is_listed_and_a_busy_one_walked(db, monkeypatch):
    monkeypatch.setattr(history, "REVIEWER_SPARSE", 2)
    for actor in ("kim", "sam", "sam", "sam"):
        lifecycle.approve(make_reply().message_id, actor=actor, source=Source.WEB)

    def sql(reviewer: str) -> str:
        return str(history.handled_replies({"reviewer": reviewer}).query)

    assert "json_each" in sql("kim") or "unnest" in sql("kim")
    assert "EXISTS" in sql("sam") and "json_each" not in sql("sam")  # 3 events, past 2
    assert history.handled_replies({"reviewer": "sam"}).count() == 3


@LISTED_OR_WALKED
def test_the_reviewer_filter_finds_who_undid_reopened_retried_or_confirmed(rc, sparse, monkeypatch):
    monkeypatch.setattr(history, "REVIEWER_SPARSE", sparse)
    undone, reopened, retried, confirmed, untouched = (make_reply() for _ in range(5))
    lifecycle.approve(undone.message_id, actor="lee", source=Source.WEB)
    lifecycle.undo(undone.message_id, actor="lee", source=Source.WEB)
    lifecycle.reject(undone.message_id, actor="sam", source=Source.WEB)
    lifecycle.reject(reopened.message_id, actor="sam", source=Source.WEB)
    lifecycle.reopen(reopened.message_id, actor="kim", source=Source.WEB)
    lifecycle.approve(reopened.message_id, actor="sam", source=Source.WEB)
    for reply in (retried, confirmed):
        lifecycle.approve(reply.message_id, actor="sam", source=Source.WEB)
        lifecycle.mark_failed(reply.message_id, "x", actor="sender", source=Source.WORKER)
    lifecycle.retry(retried.message_id, actor="ana", source=Source.WEB)
    lifecycle.confirm_sent(confirmed.message_id, actor="bo", source=Source.WEB, note="seen")
    lifecycle.reject(untouched.message_id, actor="sam", source=Source.WEB)
    assert shown(rc, "reviewer=lee") == [undone.pk]
    assert shown(rc, "reviewer=kim") == [reopened.pk]
    assert shown(rc, "reviewer=ana") == [retried.pk]
    assert shown(rc, "reviewer=bo") == [confirmed.pk]
    assert shown(rc, "reviewer=sender") == []  # the worker is nobody's reviewer


def test_a_reply_without_a_name_is_the_same_customer_on_its_card_and_in_the_history(rc):
    from tests.conftest import card_html

    draft = make_reply(incoming=make_incoming(name="", number="923001112223"))
    card = card_html(rc.get(reverse("approvals:queue")), draft)
    lifecycle.reject(draft.message_id, actor="dana", source=Source.WEB)
    entry = entry_html(rc.get("/history/"), draft)
    assert "<bdi>+923001112223</bdi></h2>" in card
    assert "Reply to <bdi>+923001112223</bdi></h2>" in entry
