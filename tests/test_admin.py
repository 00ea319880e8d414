"""The admin site as staff use it: find, filter, move through the lifecycle, fix by hand."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from statecore import clock, lifecycle, rootstate
from statecore.admin import MessageAdmin
from statecore.models import (
    AuditEvent,
    GatewayEvent,
    GatewayState,
    Heartbeat,
    Incident,
    LogEntry,
    Message,
    Source,
    Status,
)
from tests.factories import make_incoming, make_reply

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:statecore_message_changelist"


def _user(username: str, *, staff: bool = True, superuser: bool = False, perms=()) -> User:
    user = User.objects.create_user(username, password="x", is_staff=staff, is_superuser=superuser)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def staff(client):
    user = _user(
        "fixer",
        perms=[
            "view_message",
            "change_message",
            "review_message",
            "resolve_failed",
            "reopen_message",
            "view_stateroot",
            "change_stateroot",
            "view_auditevent",
        ],
    )
    client.force_login(user)
    return user


@pytest.fixture
def superuser(client):
    user = _user("root", superuser=True)
    client.force_login(user)
    return user


def _texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _ids(response) -> set[str]:
    return {m.message_id for m in response.context["cl"].result_list}


def _action_names(response) -> set[str]:
    form = response.context["action_form"]
    return set() if form is None else {name for name, _ in form.fields["action"].choices}


def _act(client, action: str, *messages: Message):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [m.pk for m in messages]},
        follow=True,
    )


# --- The list -----------------------------------------------------------------


def test_list_shows_each_message_with_an_escaped_preview(client, staff):
    msg = make_incoming(name="Farah", body="<b>bold</b> & <script>alert(1)</script>")
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    html = response.content.decode()
    assert msg.message_id in html
    assert "Farah" in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;" in html
    assert "<script>alert(1)" not in html


def test_search_finds_a_message_by_a_fragment_of_its_text(client, staff):
    wanted = make_incoming(body="Can you send me the invoice for last month?")
    make_incoming(body="Is the shop open today?")
    reply = make_reply(body="Here is your INVOICE, thank you")
    response = client.get(reverse(CHANGELIST), {"q": "invoice"})
    assert _ids(response) == {wanted.message_id, reply.message_id}


@pytest.mark.parametrize("field", ["number", "name", "id"])
def test_search_finds_a_message_by_number_name_or_id(client, staff, field):
    wanted = make_incoming(number="923009998877", name="Gustavo")
    make_incoming(number="923001112233", name="Dana")
    term = {"number": "9998877", "name": "gustavo", "id": wanted.message_id[-8:]}[field]
    assert _ids(client.get(reverse(CHANGELIST), {"q": term})) == {wanted.message_id}


def test_filters_by_status_kind_group_and_date(client, staff):
    pending = make_reply(Status.PENDING_APPROVAL)
    failed = make_reply(Status.FAILED)
    group = make_incoming(number="120363000000", isGroup=True)
    old = make_incoming(
        timestamp=(clock.now() - timedelta(days=40)).replace(tzinfo=None).isoformat()
    )
    url = reverse(CHANGELIST)
    assert _ids(client.get(url, {"status__exact": "failed"})) == {failed.message_id}
    assert _ids(client.get(url, {"kind": "reply"})) == {pending.message_id, failed.message_id}
    assert _ids(client.get(url, {"chat_kind": "group"})) == {group.message_id}
    assert _ids(client.get(url, {"chat_kind": "direct"})) == (
        _ids(client.get(url)) - {group.message_id}
    )
    week_ago = str(clock.now() - timedelta(days=7))
    recent = _ids(client.get(url, {"timestamp__gte": week_ago}))
    assert old.message_id not in recent and pending.message_id in recent


def test_the_list_sorts_by_last_change_both_ways_ties_in_the_same_direction(client, staff):
    # Both directions are the history's index read forwards or backwards (a million rows
    # are never sorted): never-changed messages sort as the oldest, ties by id alike.
    a, b, c, d = (make_incoming() for _ in range(4))
    now = clock.now()
    Message.objects.filter(pk__in=[a.pk, b.pk]).update(status_updated_at=None)
    Message.objects.filter(pk=c.pk).update(status_updated_at=now - timedelta(hours=1))
    Message.objects.filter(pk=d.pk).update(status_updated_at=now - timedelta(hours=2))
    column = 1 + MessageAdmin.list_display.index("last_change")

    def listed(order: str) -> list[str]:
        shown = client.get(reverse(CHANGELIST), {"o": order}).context["cl"].result_list
        return [m.message_id for m in shown]

    oldest_first = [a.message_id, b.message_id, d.message_id, c.message_id]
    assert listed(str(column)) == oldest_first
    assert listed(f"-{column}") == oldest_first[::-1]


def test_the_list_takes_the_same_queries_for_a_few_messages_and_a_full_page(client, staff):
    make_reply()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse(CHANGELIST)).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(30):
        make_reply(Status.FAILED)
    assert queries() == few


def test_a_non_staff_user_is_kept_out(client):
    client.force_login(_user("reviewer", staff=False, perms=["view_message"]))
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_an_anonymous_visitor_is_sent_to_the_login(client):
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302 and "/admin/login/" in response.url


# --- Actions --------------------------------------------------------------------


def test_approve_moves_pending_replies_and_reports_the_skipped_with_why(client, staff):
    pending = make_reply(Status.PENDING_APPROVAL)
    sent = make_reply(Status.SENT)
    response = _act(client, "approve", pending, sent)
    pending.refresh_from_db()
    sent.refresh_from_db()
    assert pending.status == Status.APPROVED and pending.status_changed_by == "fixer"
    assert sent.status == Status.SENT
    texts = _texts(response)
    assert "Approve: 1 moved, 1 skipped." in texts
    assert any(sent.message_id in t and "it is sent" in t for t in texts)
    event = AuditEvent.objects.get(message_id=pending.message_id, action="approve")
    assert (event.actor, event.source) == ("fixer", Source.ADMIN)


def test_reject_moves_a_pending_reply(client, staff):
    pending = make_reply(Status.PENDING_APPROVAL)
    assert "Reject: 1 moved, 0 skipped." in _texts(_act(client, "reject", pending))
    pending.refresh_from_db()
    assert pending.status == Status.REJECTED
    assert AuditEvent.objects.get(message_id=pending.message_id, action="reject").source == "admin"


def test_retry_failed_puts_a_failed_reply_back_and_drops_its_error(client, staff):
    failed = make_reply(Status.FAILED, error="timeout")
    approved = make_reply(Status.APPROVED)
    texts = _texts(_act(client, "retry_failed", failed, approved))
    assert "Retry: 1 moved, 1 skipped." in texts
    failed.refresh_from_db()
    assert failed.status == Status.APPROVED
    assert "error" not in failed.data
    assert AuditEvent.objects.get(message_id=failed.message_id, action="retry").actor == "fixer"


def test_mark_failed_moves_a_stuck_reply_but_not_one_the_sender_holds(client, staff):
    stuck = make_reply(Status.APPROVED)
    held = make_reply(Status.APPROVED)
    now = clock.now()
    Message.objects.filter(pk=stuck.pk).update(
        claimed_by="w1",
        claimed_at=now - timedelta(hours=1),
        lease_until=now - timedelta(minutes=50),
    )
    Message.objects.filter(pk=held.pk).update(
        claimed_by="w1", claimed_at=now, lease_until=now + timedelta(minutes=5)
    )
    texts = _texts(_act(client, "mark_failed", stuck, held))
    assert "Mark failed: 1 moved, 1 skipped." in texts
    assert any(held.message_id in t and "lease has not run out" in t for t in texts)
    stuck.refresh_from_db()
    held.refresh_from_db()
    assert (stuck.status, held.status) == (Status.FAILED, Status.APPROVED)
    assert stuck.data["error"] == "marked failed by fixer in the admin"


def test_confirmed_sent_moves_a_failed_reply_to_sent(client, staff):
    failed = make_reply(Status.FAILED)
    assert "Confirmed sent: 1 moved, 0 skipped." in _texts(_act(client, "confirm_sent", failed))
    failed.refresh_from_db()
    assert failed.status == Status.SENT
    assert AuditEvent.objects.get(message_id=failed.message_id, action="confirm_sent").source == (
        "admin"
    )


@pytest.mark.parametrize(
    ("action", "status", "verb"),
    [
        ("approve", Status.PENDING_APPROVAL, lambda mid, **who: lifecycle.approve(mid, **who)),
        ("reject", Status.PENDING_APPROVAL, lambda mid, **who: lifecycle.reject(mid, **who)),
        ("retry_failed", Status.FAILED, lambda mid, **who: lifecycle.retry(mid, **who)),
        ("confirm_sent", Status.FAILED, lambda mid, **who: lifecycle.confirm_sent(mid, **who)),
        ("mark_failed", Status.APPROVED, lambda mid, **who: lifecycle.mark_failed(mid, "x", **who)),
        ("reopen", Status.REJECTED, lambda mid, **who: lifecycle.reopen(mid, **who)),
        ("reopen", Status.APPROVED, lambda mid, **who: lifecycle.reopen(mid, **who)),
    ],
)
def test_each_action_writes_the_audit_row_the_python_api_writes_but_for_source(
    client, staff, action, status, verb
):
    by_admin = make_reply(status)
    by_api = make_reply(status)
    _act(client, action, by_admin)
    verb(by_api.message_id, actor="fixer", source=Source.API)

    def row(msg):
        event = AuditEvent.objects.filter(message_id=msg.message_id).latest("pk")
        return (event.action, event.from_status, event.to_status, event.actor, sorted(event.detail))

    assert row(by_admin) == row(by_api)
    assert AuditEvent.objects.filter(message_id=by_admin.message_id).latest("pk").source == "admin"


def test_an_action_needs_its_permission(client):
    client.force_login(_user("viewer", perms=["view_message", "change_message"]))
    pending = make_reply(Status.PENDING_APPROVAL)
    response = client.get(reverse(CHANGELIST))
    assert "approve" not in _action_names(response)
    _act(client, "approve", pending)
    pending.refresh_from_db()
    assert pending.status == Status.PENDING_APPROVAL


# --- The change page -----------------------------------------------------------


def _change(client, msg: Message, **data):
    page = client.get(reverse("admin:statecore_message_change", args=[msg.pk]))
    form = page.context["adminform"].form
    posted = {"extra_keys": form["extra_keys"].value(), "seen": form["seen"].value(), **data}
    return client.post(
        reverse("admin:statecore_message_change", args=[msg.pk]), posted, follow=True
    )


def test_the_change_page_links_an_incoming_message_and_its_replies_both_ways(client, staff):
    incoming = make_incoming()
    reply = make_reply(incoming=incoming)
    page = client.get(
        reverse("admin:statecore_message_change", args=[incoming.pk])
    ).content.decode()
    assert reverse("admin:statecore_message_change", args=[reply.pk]) in page
    page = client.get(reverse("admin:statecore_message_change", args=[reply.pk])).content.decode()
    assert reverse("admin:statecore_message_change", args=[incoming.pk]) in page


def test_the_stored_object_is_shown_pretty_printed_and_escaped(client, staff):
    msg = make_incoming(body="<img src=x onerror=alert(1)>")
    page = client.get(reverse("admin:statecore_message_change", args=[msg.pk])).content.decode()
    assert "&quot;body&quot;: &quot;&lt;img src=x onerror=alert(1)&gt;&quot;" in page
    assert "<img src=x" not in page
    assert 'href="/static/css/admin.css"' in page


def test_the_status_cannot_be_changed_by_a_hand_made_post(client, staff):
    msg = make_reply(Status.PENDING_APPROVAL)
    _change(client, msg, status="sent", message_id="other", body="changed", raw='{"id":"x"}')
    fresh = Message.objects.get(pk=msg.pk)
    assert fresh.status == Status.PENDING_APPROVAL
    assert (fresh.message_id, fresh.body, fresh.raw) == (msg.message_id, msg.body, msg.raw)


def test_editing_extra_keys_rewrites_the_object_and_writes_an_audit_event(client, staff):
    msg = make_reply(Status.FAILED, error="timeout", meta={"tries": 1})
    response = _change(client, msg, extra_keys='{"meta": {"tries": 2}, "note": "called back"}')
    assert response.status_code == 200
    fresh = Message.objects.get(pk=msg.pk)
    data = fresh.data
    assert data["meta"] == {"tries": 2} and data["note"] == "called back"
    assert "error" not in data
    assert list(data)[: len(list(msg.data)) - 2] == [
        k for k in msg.data if k not in ("error", "meta")
    ]
    assert (fresh.status, fresh.body) == (Status.FAILED, msg.body)
    event = AuditEvent.objects.get(message_id=msg.message_id, action="admin_edit")
    assert event.actor == "fixer" and event.source == Source.ADMIN
    assert event.detail == {
        "before": {"error": "timeout", "meta": {"tries": 1}},
        "after": {"meta": {"tries": 2}, "note": "called back"},
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"status": "sent"}', "status: kept by the dashboard"),
        ('{"id": "other"}', "id: kept by the dashboard"),
        ('["a"]', "Extra keys must be a JSON object"),
        ('{"a": 1,}', "Extra keys is not valid JSON: line 1, column 9"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": 1, "a": 2}', "a: the same key appears twice"),
        ('{"meta": {"x": "nul\\u0000"}}', "meta.x: holds a NUL character"),
    ],
)
def test_bad_extra_keys_are_refused_naming_the_place(client, staff, text, problem):
    msg = make_reply(Status.PENDING_APPROVAL)
    response = _change(client, msg, extra_keys=text)
    assert problem in response.content.decode()
    assert Message.objects.get(pk=msg.pk).raw == msg.raw
    assert not AuditEvent.objects.filter(action="admin_edit").exists()


def test_an_edit_made_meanwhile_is_not_overwritten(client, staff):
    msg = make_reply(Status.FAILED, error="timeout")
    page = client.get(reverse("admin:statecore_message_change", args=[msg.pk]))
    seen = page.context["adminform"].form["seen"].value()
    lifecycle.retry(msg.message_id, actor="other", source=Source.WEB)  # drops "error"
    lifecycle.mark_failed(msg.message_id, "refused", actor="w", source=Source.WORKER)
    response = client.post(
        reverse("admin:statecore_message_change", args=[msg.pk]),
        {"extra_keys": '{"error": "mine"}', "seen": seen},
        follow=True,
    )
    assert any("changed since you opened it" in t for t in _texts(response))
    assert Message.objects.get(pk=msg.pk).data["error"] == "refused"
    assert not AuditEvent.objects.filter(action="admin_edit").exists()


def test_a_staff_member_who_may_only_view_sees_the_message_without_a_form(client):
    client.force_login(_user("auditor", perms=["view_message", "view_stateroot"]))
    msg = make_reply(Status.FAILED, error="timeout")
    page = client.get(reverse("admin:statecore_message_change", args=[msg.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "&quot;error&quot;: &quot;timeout&quot;" in html
    assert 'name="extra_keys"' not in html and 'name="_save"' not in html
    rootstate.get_root()
    page = client.get(reverse("admin:statecore_stateroot_change", args=[1]))
    assert page.status_code == 200
    assert "&quot;api_endpoint&quot;" in page.content.decode()
    assert 'name="api_endpoint"' not in page.content.decode()


def test_messages_cannot_be_added_or_deleted_in_the_admin(client, superuser):
    msg = make_reply()
    assert client.get(reverse("admin:statecore_message_add")).status_code == 403
    response = client.post(
        reverse("admin:statecore_message_delete", args=[msg.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert Message.objects.filter(pk=msg.pk).exists()


# --- Session and settings ------------------------------------------------------------


def _settings_post(client, **changes):
    url = reverse("admin:statecore_stateroot_change", args=[1])
    form = client.get(url).context["adminform"].form
    data = {
        name: form[name].value()
        for name in ("api_endpoint", "watcher_config", "retry_config", "seen")
    }
    if form["human_in_the_loop"].value():
        data["human_in_the_loop"] = "on"
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    return client.post(url, data, follow=True)


def test_the_settings_list_opens_the_one_row(client, staff):
    response = client.get(reverse("admin:statecore_stateroot_changelist"))
    assert response.status_code == 302
    assert response.url == reverse("admin:statecore_stateroot_change", args=[1])


def test_the_settings_page_shows_the_validity_report(client, staff, sample_state):
    page = client.get(reverse("admin:statecore_stateroot_change", args=[1])).content.decode()
    assert "Session not valid" in page
    assert "fresh validation: FAILED" in page


def test_the_settings_are_shown_as_values_not_as_stored_text(client, staff):
    rootstate.get_root()
    form = (
        client.get(reverse("admin:statecore_stateroot_change", args=[1])).context["adminform"].form
    )
    assert form["api_endpoint"].value() == rootstate.DEFAULT_API_ENDPOINT
    assert form["human_in_the_loop"].value() is True
    assert form["retry_config"].value() == json.dumps(
        rootstate.DEFAULT_RETRY_CONFIG, indent=2, ensure_ascii=False
    )


def test_saving_the_settings_unchanged_writes_nothing(client, staff):
    rootstate.get_root()
    before = StateRootSnapshot.take()
    response = _settings_post(client)
    assert response.redirect_chain, "the form was refused"
    assert any("was changed successfully" in t for t in _texts(response))
    assert StateRootSnapshot.take() == before
    assert not AuditEvent.objects.filter(action="set_config").exists()


def test_a_valid_setting_is_saved_with_an_audit_event(client, staff):
    rootstate.get_root()
    watcher = dict(rootstate.DEFAULT_WATCHER_CONFIG, poll_interval_seconds=30, custom="kept")
    response = _settings_post(
        client,
        api_endpoint="http://gateway:3000/api/whatsapp",
        watcher_config=json.dumps(watcher),
        human_in_the_loop=None,
    )
    assert response.redirect_chain, "the form was refused"
    root = rootstate.get_root()
    assert rootstate.part(root, "api_endpoint") == "http://gateway:3000/api/whatsapp"
    assert rootstate.part(root, "watcher_config") == watcher
    assert rootstate.part(root, "human_in_the_loop") is False
    assert rootstate.part(root, "retry_config") == rootstate.DEFAULT_RETRY_CONFIG
    events = AuditEvent.objects.filter(action="set_config", actor="fixer", source="admin")
    assert {e.detail["key"] for e in events} == {
        "api_endpoint",
        "watcher_config",
        "human_in_the_loop",
    }
    endpoint = events.get(detail__key="api_endpoint")
    assert endpoint.detail["before"] == rootstate.DEFAULT_API_ENDPOINT
    assert endpoint.detail["after"] == "http://gateway:3000/api/whatsapp"


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("api_endpoint", "ftp://example.com/x", "api_endpoint: expected an http(s) URL"),
        ("api_endpoint", "localhost:3000", "api_endpoint: expected an http(s) URL"),
        (
            "watcher_config",
            '{"poll_interval_seconds": 0}',
            "watcher_config.poll_interval_seconds: expected a positive whole number",
        ),
        (
            "watcher_config",
            '{"max_messages_per_poll": 2.5}',
            "watcher_config.max_messages_per_poll: expected a whole number",
        ),
        (
            "retry_config",
            '{"exponential_backoff": "yes"}',
            "retry_config.exponential_backoff: expected true or false",
        ),
        ("retry_config", "[]", "retry_config: expected a JSON object"),
        ("retry_config", "{", "retry_config is not valid JSON"),
    ],
)
def test_an_invalid_setting_is_refused_with_a_message(client, staff, field, value, problem):
    before = StateRootSnapshot.take()
    response = _settings_post(client, **{"api_endpoint": "http://example.com/new", field: value})
    assert problem in response.content.decode()
    assert StateRootSnapshot.take() == before
    assert not AuditEvent.objects.filter(action="set_config").exists()


def test_a_setting_changed_meanwhile_is_not_overwritten(client, staff):
    rootstate.get_root()
    url = reverse("admin:statecore_stateroot_change", args=[1])
    form = client.get(url).context["adminform"].form
    rootstate.update_part(
        "api_endpoint", lambda _: "http://other:1/", actor="x", source="api", action="set_config"
    )
    data = {n: form[n].value() for n in ("watcher_config", "retry_config", "seen")}
    data.update(api_endpoint="http://mine:2/", human_in_the_loop="on")
    response = client.post(url, data, follow=True)
    assert any("api_endpoint was changed since you opened" in t for t in _texts(response))
    assert rootstate.api_endpoint() == "http://other:1/"


def test_the_settings_row_cannot_be_added_or_deleted(client, superuser):
    rootstate.get_root()
    assert client.get(reverse("admin:statecore_stateroot_add")).status_code == 403
    assert client.post(reverse("admin:statecore_stateroot_delete", args=[1])).status_code == 403


class StateRootSnapshot:
    @staticmethod
    def take() -> dict:
        root = rootstate.get_root()
        return {k: getattr(root, k) for k in ("api_endpoint", "watcher_config", "retry_config")}


# --- Records: read-only ---------------------------------------------------------------


def test_audit_events_cannot_be_added_changed_or_deleted_even_by_a_superuser(client, superuser):
    msg = make_reply()
    event = AuditEvent.objects.get(message_id=msg.message_id)
    change = reverse("admin:statecore_auditevent_change", args=[event.pk])
    assert client.get(reverse("admin:statecore_auditevent_add")).status_code == 403
    page = client.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    client.post(change, {"action": "hacked", "actor": "someone"})
    assert (
        client.post(
            reverse("admin:statecore_auditevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    listing = client.get(reverse("admin:statecore_auditevent_changelist"))
    assert "delete_selected" not in _action_names(listing)
    fresh = AuditEvent.objects.get(pk=event.pk)
    assert (fresh.action, fresh.actor) == (event.action, event.actor)


def test_audit_events_filter_by_actor_action_source_and_date_and_search_by_message(
    client, superuser
):
    first = make_reply()
    second = make_reply()
    lifecycle.approve(first.message_id, actor="ayesha", source=Source.WEB)
    url = reverse("admin:statecore_auditevent_changelist")

    def pks(**params):
        return {e.pk for e in client.get(url, params).context["cl"].result_list}

    approve = AuditEvent.objects.get(action="approve")
    assert pks(actor="ayesha") == {approve.pk}
    assert pks(action="approve") == {approve.pk}
    assert pks(source__exact="web") == {approve.pk}
    assert pks(q=second.message_id) == set(
        AuditEvent.objects.filter(message_id=second.message_id).values_list("pk", flat=True)
    )
    tomorrow = str(clock.now() + timedelta(days=1))
    assert pks(created_at__gte=tomorrow) == set()


def test_a_message_and_its_audit_events_link_to_each_other(client, superuser):
    msg = make_reply(Status.FAILED)
    lifecycle.retry(msg.message_id, actor="fixer", source=Source.ADMIN)
    make_reply()  # another message, with events of its own
    page = client.get(reverse("admin:statecore_message_change", args=[msg.pk]))
    assert "retry" in page.content.decode()
    events_url = reverse("admin:statecore_auditevent_changelist")
    response = client.get(events_url, {"message_id": msg.message_id})
    listed = {e.pk for e in response.context["cl"].result_list}
    assert listed == set(
        AuditEvent.objects.filter(message_id=msg.message_id).values_list("pk", flat=True)
    )
    assert len(listed) == 2
    back = client.get(reverse(CHANGELIST), {"message_id": msg.message_id})
    assert _ids(back) == {msg.message_id}


@pytest.mark.parametrize(
    "model",
    [LogEntry, GatewayEvent, GatewayState, Heartbeat, Incident],
)
def test_records_are_read_only(client, superuser, model):
    name = model._meta.model_name
    assert client.get(reverse(f"admin:statecore_{name}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:statecore_{name}_add")).status_code == 403
