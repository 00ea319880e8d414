"""Undo and reopen: the queue's Undo takes back one's own decision of a moment ago;
anything later, or by someone else, is a deliberate reopen behind its own permission,
offered on the history and in the admin, and what a script's move back to the queue is."""

from __future__ import annotations

import importlib
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from approvals import queue
from statecore import clock, lifecycle, statefile
from statecore.lifecycle import MoveRefused, Refusal
from statecore.models import AuditEvent, Message, Source, Status
from statecore.state_manager import MessageStatus, StateManager
from tests.factories import make_reply
from tests.users import make_user

S = Status
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/history/"}
QUEUE_HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/queue/"}
REOPEN_PERM = "reopen_message"
FOUR_DAYS = timedelta(days=4)

pytestmark = pytest.mark.django_db


def decided(status: str, *, by: str = "dana", ago: timedelta | None = None) -> Message:
    """A reply `by` approved or rejected, `ago` before now (just now when None)."""
    draft = make_reply()
    verb = lifecycle.approve if status == S.APPROVED else lifecycle.reject
    verb(draft.message_id, actor=by, source=Source.WEB)
    if ago is not None:
        Message.objects.filter(pk=draft.pk).update(status_updated_at=clock.now() - ago)
    return Message.objects.get(pk=draft.pk)


def claim(msg: Message, worker: str = "sender-1") -> None:
    # What the sender's guarded claim writes.
    now = clock.now()
    Message.objects.filter(pk=msg.pk).update(
        claimed_by=worker, claimed_at=now, lease_until=now + timedelta(minutes=5)
    )


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def last_event(msg: Message) -> AuditEvent:
    return AuditEvent.objects.filter(message_id=msg.message_id).latest("pk")


def snapshot(msg: Message) -> tuple:
    """Everything a refused move must leave as it was."""
    return statefile.export_bytes(), AuditEvent.objects.count(), fresh(msg).status


def refused(call) -> MoveRefused:
    with pytest.raises(MoveRefused) as caught:
        call()
    return caught.value


def url(name: str, msg: Message) -> str:
    return reverse(f"approvals:{name}", args=[msg.pk])


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def user_with(username: str, *codenames: str, staff: bool = False) -> User:
    user = User.objects.create_user(username, password="x", is_staff=staff)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="statecore", codename__in=codenames)
    )
    return user


# --- The lifecycle: undo ---------------------------------------------------------------


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_undo_by_the_decider_within_the_window_puts_the_reply_back(status):
    msg = decided(status, by="dana")
    moved = lifecycle.undo(msg.message_id, actor="dana", source=Source.WEB)
    assert moved.status == fresh(msg).status == S.PENDING_APPROVAL
    event = last_event(msg)
    assert (event.action, event.from_status, event.to_status) == (
        "undo",
        status,
        "pending_approval",
    )
    assert (event.actor, event.source) == ("dana", Source.WEB)


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_undo_by_someone_else_is_refused_as_not_yours_and_changes_nothing(status):
    msg = decided(status, by="dana")
    before = snapshot(msg)
    refusal = refused(lambda: lifecycle.undo(msg.message_id, actor="sam", source=Source.WEB))
    assert refusal.code == Refusal.NOT_YOURS
    assert refusal.last_actor == "dana"
    assert "only dana can undo it" in str(refusal)
    assert snapshot(msg) == before


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_undo_after_the_window_is_refused_as_too_late_and_changes_nothing(status, settings):
    settings.APPROVAL_GRACE_SECONDS = 10
    msg = decided(status, by="dana", ago=timedelta(seconds=11))
    before = snapshot(msg)
    refusal = refused(lambda: lifecycle.undo(msg.message_id, actor="dana", source=Source.WEB))
    assert refusal.code == Refusal.TOO_LATE
    assert "the 10 s to undo it have passed" in str(refusal)
    assert snapshot(msg) == before


def test_the_window_ends_at_the_instant_the_sender_may_claim_the_reply(settings, monkeypatch):
    settings.APPROVAL_GRACE_SECONDS = 10
    inside, at_the_end = decided(S.APPROVED), decided(S.APPROVED)
    decided_at = clock.now()
    Message.objects.filter(pk__in=[inside.pk, at_the_end.pk]).update(status_updated_at=decided_at)
    window = timedelta(seconds=10)
    # The sender's claim (sending.claimable) takes a reply decided at or before now - 10 s.
    monkeypatch.setattr(clock, "now", lambda: decided_at + window)
    refusal = refused(lambda: lifecycle.undo(at_the_end.message_id, actor="dana", source="web"))
    assert refusal.code == Refusal.TOO_LATE
    monkeypatch.setattr(clock, "now", lambda: decided_at + window - timedelta(microseconds=1))
    assert (
        lifecycle.undo(inside.message_id, actor="dana", source="web").status == S.PENDING_APPROVAL
    )


def test_undo_of_a_reply_with_no_decision_time_is_too_late():
    msg = decided(S.REJECTED, by="dana")
    Message.objects.filter(pk=msg.pk).update(status_updated_at=None)
    refusal = refused(lambda: lifecycle.undo(msg.message_id, actor="dana", source=Source.WEB))
    assert refusal.code == Refusal.TOO_LATE


def test_undo_of_a_claimed_reply_is_refused_as_claimed_even_for_its_decider_in_time():
    msg = decided(S.APPROVED, by="dana")
    claim(msg)
    before = snapshot(msg)
    refusal = refused(lambda: lifecycle.undo(msg.message_id, actor="dana", source=Source.WEB))
    assert refusal.code == Refusal.CLAIMED
    assert snapshot(msg) == before


def test_undo_is_only_the_move_back_to_the_queue():
    msg = decided(S.APPROVED, by="dana")
    refusal = refused(
        lambda: lifecycle.move(msg.message_id, S.SENT, actor="dana", source="web", as_undo=True)
    )
    assert refusal.code == Refusal.NOT_ALLOWED
    assert fresh(msg).status == S.APPROVED


# --- The lifecycle: reopen ---------------------------------------------------------------


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_reopen_four_days_later_by_anyone_puts_the_reply_back_audited(status):
    msg = decided(status, by="dana", ago=FOUR_DAYS)
    before = clock.now()
    moved = lifecycle.reopen(msg.message_id, actor="sam", source=Source.WEB, note="wrong call")
    row = fresh(msg)
    assert moved.status == row.status == S.PENDING_APPROVAL
    assert row.status_changed_by == "sam" and row.status_updated_at >= before
    event = last_event(msg)
    assert (event.action, event.from_status, event.to_status, event.note) == (
        "reopen",
        status,
        "pending_approval",
        "wrong call",
    )
    assert (event.actor, event.source) == ("sam", Source.WEB)


def test_a_claimed_reply_cannot_be_reopened():
    msg = decided(S.APPROVED, by="dana", ago=FOUR_DAYS)
    claim(msg)
    before = snapshot(msg)
    refusal = refused(lambda: lifecycle.reopen(msg.message_id, actor="sam", source=Source.WEB))
    assert refusal.code == Refusal.CLAIMED
    assert snapshot(msg) == before


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (S.PENDING_APPROVAL, Refusal.NOT_ALLOWED),
        (S.SENT, Refusal.NOT_ALLOWED),
        (S.FAILED, Refusal.NOT_ALLOWED),
        # incoming -> pending_approval is a move (submit), but not a reopen.
        (S.INCOMING, Refusal.WRONG_STATUS),
    ],
)
def test_only_a_decided_reply_can_be_reopened(status, code):
    msg = make_reply(status)
    before = snapshot(msg)
    refusal = refused(lambda: lifecycle.reopen(msg.message_id, actor="sam", source=Source.WEB))
    assert refusal.code == code
    assert snapshot(msg) == before


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_the_generic_move_back_to_the_queue_is_a_reopen_with_no_time_limit(status):
    assert lifecycle.ALLOWED_MOVES[(status, S.PENDING_APPROVAL)] == "reopen"
    msg = decided(status, by="dana", ago=FOUR_DAYS)
    lifecycle.move(msg.message_id, S.PENDING_APPROVAL, actor="fixer", source=Source.ADMIN)
    assert fresh(msg).status == S.PENDING_APPROVAL
    assert (last_event(msg).action, last_event(msg).actor) == ("reopen", "fixer")


def test_the_generic_move_back_keeps_the_claimed_rule():
    msg = decided(S.APPROVED, by="dana", ago=FOUR_DAYS)
    claim(msg)
    refusal = refused(
        lambda: lifecycle.move(msg.message_id, S.PENDING_APPROVAL, actor="x", source="api")
    )
    assert refusal.code == Refusal.CLAIMED


# --- The Python API: a script's move back to the queue ------------------------------------


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_move_message_back_to_the_queue_is_a_reopen_under_the_scripts_name(status):
    msg = decided(status, by="dana", ago=FOUR_DAYS)
    manager = StateManager(actor="assistant")
    assert manager.move_message(msg.message_id, status, MessageStatus.PENDING_APPROVAL) is True
    assert fresh(msg).status == S.PENDING_APPROVAL
    event = last_event(msg)
    assert (event.action, event.actor, event.source) == ("reopen", "assistant", Source.API)


def test_move_message_of_a_claimed_reply_back_to_the_queue_is_false():
    msg = decided(S.APPROVED, by="dana", ago=FOUR_DAYS)
    claim(msg)
    events = AuditEvent.objects.count()
    manager = StateManager(actor="assistant")
    assert manager.move_message(msg.message_id, "approved", "pending_approval") is False
    assert fresh(msg).status == S.APPROVED and AuditEvent.objects.count() == events


# --- What callers show for each refusal ---------------------------------------------------


def test_each_undo_refusal_has_its_own_notice(settings):
    settings.APPROVAL_GRACE_SECONDS = 10
    late = decided(S.REJECTED, by="dana", ago=FOUR_DAYS)
    mine = decided(S.APPROVED, by="dana")
    held = decided(S.APPROVED, by="dana")
    claim(held)
    now = clock.now()
    notices = {
        code: queue.refusal_notice(refused(call), now=now)
        for code, call in [
            (Refusal.TOO_LATE, lambda: lifecycle.undo(late.message_id, actor="dana", source="web")),
            (Refusal.NOT_YOURS, lambda: lifecycle.undo(mine.message_id, actor="sam", source="web")),
            (Refusal.CLAIMED, lambda: lifecycle.undo(held.message_id, actor="dana", source="web")),
        ]
    }
    assert notices[Refusal.TOO_LATE] == (
        "Rejected by dana 4 d ago: too late to undo (the window is 10 s); "
        "it can be put back in the queue from the history"
    )
    assert re.fullmatch(
        r"Approved by dana \d+ s ago: only dana can undo it; "
        r"it can be put back in the queue from the history",
        notices[Refusal.NOT_YOURS],
    )
    assert notices[Refusal.CLAIMED] == (
        "Already claimed for sending: it can no longer be undone or put back in the queue"
    )


# --- The queue's Undo button -------------------------------------------------------------


@pytest.fixture
def dana(db) -> Client:
    return signed_in(make_user("dana", reviewer=True))


@pytest.mark.parametrize("headers", [QUEUE_HTMX, {}], ids=["htmx", "plain"])
def test_the_queue_undo_after_the_window_gets_the_refusal_card(dana, settings, headers):
    settings.APPROVAL_GRACE_SECONDS = 10
    msg = decided(S.REJECTED, by="dana", ago=FOUR_DAYS)
    before = snapshot(msg)
    response = dana.post(url("undo", msg), {"next": "/queue/"}, **headers)
    assert response.status_code == 409
    page = response.content.decode()
    assert f'<article id="card-{msg.pk}"' in page
    assert "Rejected by dana 4 d ago: too late to undo" in page
    assert snapshot(msg) == before


def test_the_queue_undo_of_someone_elses_decision_gets_the_refusal_card(dana):
    msg = decided(S.APPROVED, by="sam")
    before = snapshot(msg)
    response = dana.post(url("undo", msg), **QUEUE_HTMX)
    assert response.status_code == 409
    assert "only sam can undo it" in response.content.decode()
    assert snapshot(msg) == before


# --- The history: Put back in the queue -----------------------------------------------------


def entry_html(response, msg: Message) -> str:
    match = re.search(
        rf'<article id="entry-{msg.pk}".*?</article>', response.content.decode(), re.S
    )
    assert match, f"no entry for {msg.message_id}"
    return match.group(0)


BUTTON = ">Put back in the queue</button>"


def test_reviewers_may_reopen_through_the_group():
    group = Group.objects.get(name="Reviewers")
    assert group.permissions.filter(codename=REOPEN_PERM).exists()
    assert make_user("rev", reviewer=True).has_perm(f"statecore.{REOPEN_PERM}")


def test_the_data_migration_gives_reviewers_the_permission_on_a_fresh_database():
    migration = importlib.import_module("approvals.migrations.0002_reviewers_reopen")
    Permission.objects.filter(codename=REOPEN_PERM).delete()

    class Editor:
        connection = connection

    migration.give(apps, Editor())
    codenames = Group.objects.get(name="Reviewers").permissions.values_list("codename", flat=True)
    assert REOPEN_PERM in set(codenames)
    migration.take_back(apps, Editor())
    assert not Group.objects.get(name="Reviewers").permissions.filter(codename=REOPEN_PERM)


def test_the_history_offers_reopen_on_decided_unclaimed_replies_only(dana):
    rejected = decided(S.REJECTED, ago=FOUR_DAYS)
    approved = decided(S.APPROVED, ago=FOUR_DAYS)
    held = decided(S.APPROVED, ago=FOUR_DAYS)
    claim(held)
    sent, failed = make_reply(S.SENT), make_reply(S.FAILED)
    page = dana.get("/history/")
    for msg in (rejected, approved):
        entry = entry_html(page, msg)
        assert BUTTON in entry
        assert f'method="post" action="{url("reopen", msg)}"' in entry
        assert 'name="csrfmiddlewaretoken"' in entry and 'name="note"' in entry
    for msg in (held, sent, failed):
        assert BUTTON not in entry_html(page, msg)


def test_reopen_from_the_history_puts_the_reply_back_audited(dana):
    msg = decided(S.REJECTED, by="sam", ago=FOUR_DAYS)
    response = dana.post(url("reopen", msg), {"note": "the customer asked again"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Trigger-After-Settle"] == '{"queue-changed": {}}'
    assert response.content.decode().strip().startswith(f'<article id="entry-{msg.pk}"')
    assert fresh(msg).status == S.PENDING_APPROVAL
    event = last_event(msg)
    assert (event.action, event.actor, event.source, event.note) == (
        "reopen",
        "dana",
        Source.WEB,
        "the customer asked again",
    )


def test_reopen_without_javascript_redirects_back(dana):
    msg = decided(S.APPROVED, ago=FOUR_DAYS)
    response = dana.post(url("reopen", msg), {"next": "/history/?status=approved"})
    assert response.status_code == 302 and response["Location"] == "/history/?status=approved"
    assert fresh(msg).status == S.PENDING_APPROVAL
    assert "The reply is back in the queue." in dana.get("/history/").content.decode()


def test_reopen_needs_its_own_permission(db):
    msg = decided(S.REJECTED, ago=FOUR_DAYS)
    reviewer = user_with("rita", "review_message", "resolve_failed")
    client = signed_in(reviewer)
    assert BUTTON not in entry_html(client.get("/history/"), msg)
    before = snapshot(msg)
    assert client.post(url("reopen", msg)).status_code == 403
    assert client.post(url("reopen", msg), **HTMX).status_code == 403
    assert snapshot(msg) == before
    reviewer.user_permissions.add(Permission.objects.get(codename=REOPEN_PERM))
    client = signed_in(User.objects.get(pk=reviewer.pk))
    assert client.post(url("reopen", msg)).status_code == 302
    assert fresh(msg).status == S.PENDING_APPROVAL


def test_reopen_is_a_post_with_csrf(db):
    msg = decided(S.REJECTED, ago=FOUR_DAYS)
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("dana", reviewer=True))
    assert client.get(url("reopen", msg)).status_code == 405
    assert client.post(url("reopen", msg)).status_code == 403
    assert Client().post(url("reopen", msg)).status_code == 302  # to sign in
    assert fresh(msg).status == S.REJECTED


def test_reopen_of_a_claimed_reply_says_so_and_changes_nothing(dana):
    msg = decided(S.APPROVED, ago=FOUR_DAYS)
    claim(msg)
    before = snapshot(msg)
    for headers in (HTMX, {}):
        response = dana.post(url("reopen", msg), **headers)
        assert response.status_code == 409
        assert "Already claimed for sending" in entry_html(response, msg)
    assert snapshot(msg) == before


def test_reopen_refuses_an_overlong_note_and_unknown_ids(dana):
    msg = decided(S.REJECTED, ago=FOUR_DAYS)
    response = dana.post(url("reopen", msg), {"note": "n" * 1001}, **HTMX)
    assert response.status_code == 422
    assert 'aria-invalid="true"' in entry_html(response, msg)
    assert fresh(msg).status == S.REJECTED
    assert dana.post(reverse("approvals:reopen", args=[987654]), **HTMX).status_code == 404


# --- The admin action -------------------------------------------------------------------------

CHANGELIST = "admin:statecore_message_changelist"


def admin_act(client: Client, *messages: Message):
    return client.post(
        reverse(CHANGELIST),
        {"action": "reopen", "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_admin_action_reopens_and_reports_each_refusal(db):
    client = signed_in(
        user_with("fixer", "view_message", "change_message", REOPEN_PERM, staff=True)
    )
    rejected = decided(S.REJECTED, ago=FOUR_DAYS)
    approved = decided(S.APPROVED, ago=FOUR_DAYS)
    held = decided(S.APPROVED, ago=FOUR_DAYS)
    claim(held)
    sent = make_reply(S.SENT)
    response = admin_act(client, rejected, approved, held, sent)
    said = texts(response)
    assert "Reopen: 2 moved, 2 skipped." in said
    assert any(held.message_id in t and "claimed for sending" in t for t in said)
    assert any(sent.message_id in t and "it is sent" in t for t in said)
    assert [fresh(m).status for m in (rejected, approved, held, sent)] == [
        S.PENDING_APPROVAL,
        S.PENDING_APPROVAL,
        S.APPROVED,
        S.SENT,
    ]
    event = last_event(rejected)
    assert (event.action, event.actor, event.source) == ("reopen", "fixer", Source.ADMIN)


def test_the_admin_action_needs_its_permission(db):
    client = signed_in(
        user_with("viewer", "view_message", "change_message", "review_message", staff=True)
    )
    msg = decided(S.REJECTED, ago=FOUR_DAYS)
    form = client.get(reverse(CHANGELIST)).context["action_form"]
    assert "reopen" not in {name for name, _ in form.fields["action"].choices}
    before = snapshot(msg)
    admin_act(client, msg)
    assert snapshot(msg) == before


# --- Parity: the history page, the admin action and the Python API write the same row --------


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_reopen_writes_the_same_audit_row_everywhere_but_for_who_where_and_when(status):
    perms = ("view_message", "change_message", REOPEN_PERM)
    by_page, by_admin, by_api = (decided(status, ago=FOUR_DAYS) for _ in range(3))
    signed_in(make_user("dana", reviewer=True)).post(url("reopen", by_page), {"next": "/history/"})
    admin_act(signed_in(user_with("fixer", *perms, staff=True)), by_admin)
    assert StateManager(actor="assistant").move_message(
        by_api.message_id, status, "pending_approval"
    )

    def row(msg: Message) -> dict:
        event = last_event(msg)
        fields = {f.attname: getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields}
        for key in ("id", "message_id", "source", "actor", "created_at"):
            fields.pop(key)
        return fields

    assert row(by_page) == row(by_admin) == row(by_api)
    assert row(by_page)["action"] == "reopen"
    who = [(last_event(m).actor, last_event(m).source) for m in (by_page, by_admin, by_api)]
    assert who == [("dana", Source.WEB), ("fixer", Source.ADMIN), ("assistant", Source.API)]
