"""One verb, one audit row: the page, the admin, and the Python API write exactly what the
core verb writes given the same inputs, but for `source` (and the time).

No management command changes a message, the settings or the counters, so none appears
here. Each interface acts on its own message made the same way; the row compared is the
whole audit row but its id, message id, source and time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import reverse

from statecore import clock, lifecycle, rootstate, settings_store
from statecore.models import AuditEvent, Message, Source, Status
from statecore.state_manager import StateManager
from tests.factories import make_reply

pytestmark = pytest.mark.django_db

ACTOR = "dana"
CHANGELIST = "admin:statecore_message_changelist"
S = Status


@pytest.fixture
def web() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(ACTOR, password="a-long-test-password-1"))
    return client


@pytest.fixture
def api() -> StateManager:
    return StateManager(actor=ACTOR)


def row(event: AuditEvent) -> dict:
    """The audit row as the parity compares it."""
    fields = model_to_dict(event)
    for name in ("id", "message_id", "source", "created_at"):
        fields.pop(name)
    return fields


def last_row(msg: Message, action: str) -> dict:
    return row(AuditEvent.objects.filter(message_id=msg.message_id, action=action).first())


def reference(status: str, verb: Callable[[str], object], action: str) -> dict:
    """The row the core verb itself writes for a message made in `status`."""
    msg = make_reply(status)
    verb(msg.message_id)
    return last_row(msg, action)


def admin_act(client: Client, action: str, msg: Message) -> None:
    response = client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [msg.pk]}, follow=True
    )
    assert response.status_code == 200


def page_post(client: Client, name: str, msg: Message, data: dict | None = None) -> None:
    response = client.post(reverse(f"approvals:{name}", args=[msg.pk]), data or {})
    assert response.status_code in (200, 302), response.content[:500]


def web_kw() -> dict:
    return {"actor": ACTOR, "source": Source.WEB}


def test_approve_writes_the_same_row_from_the_page_the_admin_and_the_api(web, api):
    expected = reference(
        S.PENDING_APPROVAL, lambda mid: lifecycle.approve(mid, **web_kw()), "approve"
    )
    on_page, in_admin, by_api = (make_reply(S.PENDING_APPROVAL) for _ in range(3))
    page_post(web, "approve", on_page)
    admin_act(web, "approve", in_admin)
    assert api.move_message(by_api.message_id, S.PENDING_APPROVAL, S.APPROVED)
    assert expected["to_status"] == S.APPROVED
    for msg in (on_page, in_admin, by_api):
        assert last_row(msg, "approve") == expected


def test_edit_writes_the_same_row_from_the_page_as_the_core(web):
    text = "Your order ships on Monday."
    expected = reference(
        S.PENDING_APPROVAL,
        lambda mid: lifecycle.edit_and_approve(mid, text, **web_kw()),
        "approve",
    )
    on_page = make_reply(S.PENDING_APPROVAL)
    page_post(web, "edit", on_page, {"text": text})
    assert expected["detail"]["edited"] == text
    assert last_row(on_page, "approve") == expected


def test_reject_writes_the_same_row_from_the_page_the_admin_and_the_api(web, api):
    expected = reference(
        S.PENDING_APPROVAL, lambda mid: lifecycle.reject(mid, **web_kw()), "reject"
    )
    on_page, in_admin, by_api = (make_reply(S.PENDING_APPROVAL) for _ in range(3))
    page_post(web, "reject", on_page, {"reason": ""})
    admin_act(web, "reject", in_admin)
    assert api.move_message(by_api.message_id, S.PENDING_APPROVAL, S.REJECTED)
    for msg in (on_page, in_admin, by_api):
        assert last_row(msg, "reject") == expected


def test_a_rejection_reason_is_the_same_row_from_the_page_as_the_core(web):
    reason = "we do not ship there"
    expected = reference(
        S.PENDING_APPROVAL, lambda mid: lifecycle.reject(mid, reason=reason, **web_kw()), "reject"
    )
    on_page = make_reply(S.PENDING_APPROVAL)
    page_post(web, "reject", on_page, {"reason": reason})
    assert last_row(on_page, "reject") == expected


def _decided_by_actor() -> Message:
    msg = make_reply(S.PENDING_APPROVAL)
    lifecycle.approve(msg.message_id, **web_kw())
    return msg


def test_undo_writes_the_same_row_from_the_page_as_the_core(web):
    core = _decided_by_actor()
    lifecycle.undo(core.message_id, **web_kw())
    on_page = _decided_by_actor()
    page_post(web, "undo", on_page)
    assert last_row(on_page, "undo") == last_row(core, "undo")


def test_reopen_writes_the_same_row_from_the_page_the_admin_and_the_api(web, api):
    expected = reference(S.REJECTED, lambda mid: lifecycle.reopen(mid, **web_kw()), "reopen")
    on_page, in_admin, by_api = (make_reply(S.REJECTED) for _ in range(3))
    page_post(web, "reopen", on_page, {"note": ""})
    admin_act(web, "reopen", in_admin)
    assert api.move_message(by_api.message_id, S.REJECTED, S.PENDING_APPROVAL)
    for msg in (on_page, in_admin, by_api):
        assert last_row(msg, "reopen") == expected


def test_retry_writes_the_same_row_from_the_page_the_admin_and_the_api(web, api):
    expected = reference(S.FAILED, lambda mid: lifecycle.retry(mid, **web_kw()), "retry")
    on_page, in_admin, by_api = (make_reply(S.FAILED) for _ in range(3))
    page_post(web, "retry", on_page)
    admin_act(web, "retry_failed", in_admin)
    assert api.move_message(by_api.message_id, S.FAILED, S.APPROVED)
    for msg in (on_page, in_admin, by_api):
        assert last_row(msg, "retry") == expected


def test_confirm_sent_writes_the_same_row_from_the_admin_and_the_api(web, api):
    expected = reference(
        S.FAILED, lambda mid: lifecycle.confirm_sent(mid, **web_kw()), "confirm_sent"
    )
    in_admin, by_api = make_reply(S.FAILED), make_reply(S.FAILED)
    admin_act(web, "confirm_sent", in_admin)
    assert api.move_message(by_api.message_id, S.FAILED, S.SENT)
    for msg in (in_admin, by_api):
        assert last_row(msg, "confirm_sent") == expected


def test_confirm_sent_with_a_note_writes_the_same_row_from_the_page_as_the_core(web):
    note = "seen in the chat on the phone"
    expected = reference(
        S.FAILED, lambda mid: lifecycle.confirm_sent(mid, note=note, **web_kw()), "confirm_sent"
    )
    on_page = make_reply(S.FAILED)
    page_post(web, "confirm-sent", on_page, {"note": note})
    assert last_row(on_page, "confirm_sent") == expected


def test_mark_failed_writes_the_same_row_from_the_admin_as_the_core(web):
    error = f"marked failed by {ACTOR} in the admin"
    expected = reference(
        S.APPROVED,
        lambda mid: lifecycle.mark_failed(mid, error, unless_leased=True, **web_kw()),
        "mark_failed",
    )
    in_admin = make_reply(S.APPROVED)
    admin_act(web, "mark_failed", in_admin)
    assert last_row(in_admin, "mark_failed") == expected


def test_edit_extra_keys_writes_the_same_row_from_the_admin_as_the_core(web):
    extra = {"note_for_staff": "VIP"}
    core = make_reply(S.PENDING_APPROVAL)
    lifecycle.edit_extra_keys(core.message_id, extra, seen={}, **web_kw())
    in_admin = make_reply(S.PENDING_APPROVAL)
    url = reverse("admin:statecore_message_change", args=[in_admin.pk])
    web.post(url, {"extra_keys": '{"note_for_staff": "VIP"}', "seen": "{}"}, follow=True)
    action = lifecycle.EDIT_EXTRA_KEYS
    assert last_row(in_admin, action) == last_row(core, action)
    assert last_row(core, action)["detail"] == {"before": {}, "after": extra}


def test_add_writes_the_same_row_from_the_api_as_the_core(api):
    def data(n: int) -> dict:
        return {"id": f"m{n}", "from": "923001234567@c.us", "body": "Hi", "timestamp": stamp}

    stamp = clock.local_iso()

    lifecycle.add_message(data(1), S.INCOMING, **web_kw())
    api.add_message(data(2), "incoming")
    assert row(AuditEvent.objects.get(message_id="m2")) == row(
        AuditEvent.objects.get(message_id="m1")
    )


def _setting_rows(source: str) -> list[dict]:
    rows = AuditEvent.objects.filter(action=settings_store.SET_CONFIG, source=source)
    return [row(e) for e in rows]


def test_update_settings_writes_the_same_row_from_the_admin_and_the_api(web, api):
    rootstate.get_root()
    url = reverse("admin:statecore_stateroot_change", args=[1])
    form = web.get(url).context["adminform"].form
    data = {n: form[n].value() for n in ("watcher_config", "retry_config", "seen")}
    web.post(url, {**data, "api_endpoint": "http://gateway:3000/api", "human_in_the_loop": "on"})
    # Back as it was (another action's row), so the API changes the same before to the same after.
    rootstate.update_part(
        "api_endpoint", lambda _: rootstate.DEFAULT_API_ENDPOINT, actor="x", source="x", action="x"
    )
    api.set_config("api_endpoint", "http://gateway:3000/api")
    from_admin = _setting_rows(Source.ADMIN)
    assert len(from_admin) == 1
    assert from_admin[0]["detail"] == {
        "key": "api_endpoint",
        "before": rootstate.DEFAULT_API_ENDPOINT,
        "after": "http://gateway:3000/api",
    }
    assert _setting_rows(Source.API) == from_admin


def test_reset_counters_writes_the_same_row_from_the_api_as_the_core(api):
    # Nothing counted in between: both see the same statistics before (zeros, no times).
    settings_store.reset_counters(**web_kw())
    api.reset_statistics()
    core, by_api = AuditEvent.objects.filter(action=settings_store.RESET_COUNTERS).order_by("pk")
    assert core.source == Source.WEB and by_api.source == Source.API
    assert row(by_api) == row(core)


def test_the_rows_compared_differ_when_a_caller_adds_its_own_note(web):
    """The comparison itself can fail: a reject with a reason is not a reject without."""
    plain = reference(S.PENDING_APPROVAL, lambda mid: lifecycle.reject(mid, **web_kw()), "reject")
    noted = reference(
        S.PENDING_APPROVAL,
        lambda mid: lifecycle.reject(mid, reason="rejected in the admin", **web_kw()),
        "reject",
    )
    assert plain != noted
