"""POST /gateway/events: the gateway's client events change the session, nothing else gets in."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from statecore import clock, session, session_events
from statecore.models import AuditEvent, GatewayEvent, Source
from statecore.statefile import export_bytes
from statecore.whatsapp.wwebjs_events import parse_event
from tests.session_helpers import set_session, valid_session

TOKEN = "s3cret-gateway-token"
URL = "/gateway/events"
# The session keys whatsapp_state.json has always had: the events add none.
SESSION_KEYS = {
    "authenticated",
    "session_valid",
    "requires_qr",
    "session_path",
    "last_validation",
    "last_authenticated",
    "validation_interval_minutes",
    "invalidation_reason",
    "invalidated_at",
}
# What one event costs at most, the GatewayState row's first write included.
MAX_QUERIES = 20
# 2,000 emoji of 4 bytes: 8,000 bytes, far over the 2,953 a QR code (version 40, L) holds.
UNDRAWABLE_QR = "\U0001f600" * 2000


@pytest.fixture
def token(settings):
    settings.GATEWAY_TOKEN = TOKEN
    return TOKEN


def apply(body: dict):
    """Apply one event the way the endpoint does: parsed from its JSON bytes."""
    return session_events.apply_event(parse_event(json.dumps(body).encode()))


def session_rows():
    return AuditEvent.objects.filter(action__startswith="session")


def post(client, body, *, token=TOKEN, raw=False):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if raw else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", headers=headers)


def test_a_qr_event_asks_for_a_scan_and_keeps_the_qr_on_the_gateway_state_only(
    client, db, token, settings, tmp_path
):
    valid_session(settings, tmp_path)

    response = post(client, {"event": "qr", "qr": "2@AbC,xyz==", "at": "2026-11-25T09:00:00"})

    assert response.status_code == 200
    assert response.json() == {"ok": True, "event": "qr", "session_valid": False}
    stored = session.current()
    assert stored["requires_qr"] is True
    assert stored["session_valid"] is False
    assert stored["authenticated"] is False
    assert "QR" in stored["invalidation_reason"]
    state = session.gateway_state()
    assert (state.state, state.code, state.qr) == ("needs_qr", "qr", "2@AbC,xyz==")
    assert state.qr_seen_at is not None
    qr = session_events.latest_qr()
    assert qr is not None and qr.text == "2@AbC,xyz=="
    # The login code is never in the session, nor in whatsapp_state.json.
    assert set(stored) <= SESSION_KEYS
    assert not any("2@AbC" in str(value) for value in stored.values())
    assert b"2@AbC" not in export_bytes()
    # The page's list of events says a QR came, not what it was.
    [event] = session_events.recent()
    assert (event["event"], event["detail"]) == ("qr", "a QR code to scan")


@pytest.mark.parametrize("kind", ["ready", "authenticated"])
def test_ready_and_authenticated_make_the_session_valid_and_validated_now(
    client, db, token, settings, tmp_path, kind
):
    valid_session(settings, tmp_path)
    set_session(
        authenticated=False,
        session_valid=False,
        requires_qr=True,
        last_validation="2026-01-01T00:00:00",
    )
    before = clock.now()

    response = post(client, {"event": kind})

    assert response.status_code == 200
    assert response.json()["session_valid"] is True
    stored = session.current()
    assert (stored["authenticated"], stored["session_valid"], stored["requires_qr"]) == (
        True,
        True,
        False,
    )
    assert clock.parse_timestamp(stored["last_validation"]) >= before - timedelta(seconds=1)
    assert session.check(stored).valid


def test_a_qr_is_no_longer_shown_once_the_session_is_ready(client, db, token, settings, tmp_path):
    valid_session(settings, tmp_path)
    post(client, {"event": "qr", "qr": "2@first"})
    post(client, {"event": "ready"})

    assert session_events.latest_qr() is None


def test_a_qr_older_than_a_minute_is_not_shown(db, settings, tmp_path):
    valid_session(settings, tmp_path)
    apply({"event": "qr", "qr": "2@old"})

    later = clock.now() + timedelta(seconds=session_events.QR_FRESH_SECONDS + 1)

    assert session_events.latest_qr(now=later) is None
    assert session_events.latest_qr().text == "2@old"


def test_auth_failure_makes_the_session_invalid_with_the_reason(
    client, db, token, settings, tmp_path
):
    valid_session(settings, tmp_path)

    response = post(client, {"event": "auth_failure", "message": "Restore failed"})

    assert response.status_code == 200
    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["authenticated"] is False
    assert stored["requires_qr"] is True
    assert stored["invalidation_reason"] == "authentication failed: Restore failed"
    assert stored["invalidated_at"]
    assert "authentication failed: Restore failed" in session.check(stored).verdict


def test_disconnected_logout_needs_a_scan(client, db, token, settings, tmp_path):
    valid_session(settings, tmp_path)

    post(client, {"event": "disconnected", "reason": "LOGOUT"})

    stored = session.current()
    assert (stored["session_valid"], stored["requires_qr"], stored["authenticated"]) == (
        False,
        True,
        False,
    )
    assert stored["invalidation_reason"] == "disconnected: LOGOUT"


def test_disconnected_for_another_reason_does_not_ask_for_a_scan(
    client, db, token, settings, tmp_path
):
    valid_session(settings, tmp_path)

    post(client, {"event": "disconnected", "reason": "NAVIGATION"})

    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["requires_qr"] is False
    assert stored["authenticated"] is True
    assert stored["invalidation_reason"] == "disconnected: NAVIGATION"


def test_change_state_is_recorded_and_leaves_the_session_alone(
    client, db, token, settings, tmp_path
):
    before = valid_session(settings, tmp_path)

    response = post(client, {"event": "change_state", "state": "CONNECTED"})

    assert response.status_code == 200
    assert session.current() == before
    event = GatewayEvent.objects.get()
    assert event.event == "change_state"
    assert json.loads(event.payload) == {"event": "change_state", "state": "CONNECTED"}


def test_renewed_qr_codes_write_one_audit_row_and_the_newest_is_shown(db, settings, tmp_path):
    valid_session(settings, tmp_path)
    rows = session_rows().count()

    for n in range(5):
        apply({"event": "qr", "qr": f"2@code{n}"})

    assert session_rows().count() == rows + 1
    assert GatewayEvent.objects.count() == 5
    assert session_events.latest_qr().text == "2@code4"
    assert session.gateway_state().repeats == 4
    assert b"2@code" not in export_bytes()


def test_a_repeated_disconnected_writes_no_new_audit_row(client, db, token, settings, tmp_path):
    valid_session(settings, tmp_path)
    rows = session_rows().count()

    post(client, {"event": "disconnected", "reason": "NAVIGATION"})
    began = session.current()["invalidated_at"]
    for _ in range(3):
        post(client, {"event": "disconnected", "reason": "NAVIGATION"})

    assert session_rows().count() == rows + 1
    assert session.current()["invalidated_at"] == began
    assert GatewayEvent.objects.count() == 4
    # Another reason is another verdict: one more row.
    post(client, {"event": "disconnected", "reason": "LOGOUT"})
    assert session_rows().count() == rows + 2


def test_a_repeated_ready_writes_no_new_audit_row(client, db, token, settings, tmp_path):
    valid_session(settings, tmp_path)
    set_session(session_valid=False, invalidation_reason="lost")
    post(client, {"event": "ready"})
    rows = session_rows().count()

    post(client, {"event": "ready"})
    post(client, {"event": "authenticated"})

    assert session_rows().count() == rows
    assert session.check(session.current()).valid


def test_a_persons_mark_holds_until_a_new_login_after_a_qr(client, db, token, settings, tmp_path):
    valid_session(settings, tmp_path)
    session.mark_invalid("wrong phone linked", actor="dana", source=Source.WEB, by_person=True)
    assert session.gateway_state().held_reason == "wrong phone linked"
    # What the gateway says meanwhile, short of a login, leaves the mark as it is; so does
    # `authenticated` alone, which whatsapp-web.js also sends when it restores a saved login.
    post(client, {"event": "change_state", "state": "CONNECTED"})
    post(client, {"event": "disconnected", "reason": "NAVIGATION"})
    post(client, {"event": "authenticated"})
    assert session.check(session.current()).valid is False
    assert session.gateway_state().held_reason == "wrong phone linked"

    post(client, {"event": "qr", "qr": "2@relink"})
    response = post(client, {"event": "authenticated"})

    assert response.json()["session_valid"] is True
    assert session.gateway_state().held_reason == ""
    stored = session.current()
    assert (stored["authenticated"], stored["session_valid"], stored["requires_qr"]) == (
        True,
        True,
        False,
    )
    assert stored["last_authenticated"]
    assert AuditEvent.objects.filter(action="session_status", note="authenticated").exists()


def test_only_the_last_few_hundred_events_are_kept(db):
    for n in range(session_events.KEEP_EVENTS + 5):
        apply({"event": "change_state", "state": f"S{n}"})

    kept = GatewayEvent.objects.order_by("pk")
    assert kept.count() == session_events.KEEP_EVENTS
    assert json.loads(kept.first().payload)["state"] == "S5"


# --- Refusals: a clear 4xx, and nothing changed -------------------------------------


def _snapshot():
    return (session.current(), GatewayEvent.objects.count(), AuditEvent.objects.count())


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, "missing token"),
        ({"Authorization": "Bearer not-the-token"}, "wrong token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing token"),
        ({"Authorization": "Bearer"}, "missing token"),
    ],
)
def test_a_missing_or_wrong_token_is_refused_and_changes_nothing(
    client, db, token, settings, tmp_path, headers, error
):
    valid_session(settings, tmp_path)
    before = _snapshot()

    response = client.post(
        URL,
        data=json.dumps({"event": "disconnected", "reason": "LOGOUT"}),
        content_type="application/json",
        headers=headers,
    )

    assert response.status_code == 401
    assert error in response.json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert _snapshot() == before


def test_without_a_configured_token_the_endpoint_does_not_exist(client, db, settings, tmp_path):
    settings.GATEWAY_TOKEN = ""
    valid_session(settings, tmp_path)
    before = _snapshot()

    response = post(client, {"event": "disconnected", "reason": "LOGOUT"}, token="")
    assert response.status_code == 404
    assert client.get(URL).status_code == 404
    assert _snapshot() == before


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "body: line 1, column 2: Expecting property name"),
        ("", "body: empty"),
        (b"\xff", "body: line 1, column 1: not valid UTF-8"),
        # Refused as the state file refuses them: the place, then the problem.
        ('{"event": "ready", "x": NaN}', "body: x: NaN is not a JSON number"),
        ('{"event": "ready", "event": "qr"}', "body: event: the same key appears twice"),
        ('{"event": "qr", "qr": "2@\\ud800"}', "body: qr: holds a lone surrogate"),
        ('{"event": "qr", "qr": "2@x\\u0000"}', "body: qr: holds a NUL character"),
        ('{"event": "disconnected", "reason": "\\u0000"}', "body: reason: holds a NUL"),
        ("[" * 8000 + "]" * 8000, "body: line 1, column 65: nesting too deep (over 64 levels)"),
        ('{"event": "ready", "x": ' + "[" * 70 + "]" * 70 + "}", "nesting too deep"),
        # 2,000 emoji (8,000 bytes): no QR code holds that much; the page could not draw it.
        (
            json.dumps({"event": "qr", "qr": UNDRAWABLE_QR}, ensure_ascii=False),
            "qr: cannot be drawn",
        ),
        ("[1, 2]", "body: expected a JSON object"),
        ('{"qr": "2@x"}', "event: expected a string"),
        ('{"event": "logout"}', "event: unknown event 'logout'"),
        ('{"event": "qr"}', "qr: missing"),
        ('{"event": "qr", "qr": ""}', "qr: expected a non-empty string"),
        ('{"event": "change_state"}', "state: missing"),
        ('{"event": "disconnected", "reason": 5}', "reason: expected a string"),
        ('{"event": "ready", "at": "yesterday"}', "at: 'yesterday' is not an ISO-8601 time"),
    ],
)
def test_a_bad_event_gets_a_400_naming_the_place_and_changes_nothing(
    client, db, token, settings, tmp_path, body, error
):
    valid_session(settings, tmp_path)
    before = _snapshot()

    response = post(client, body, raw=True)

    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert error in response.json()["error"]
    assert _snapshot() == before


def test_the_endpoint_needs_no_csrf_token_and_no_login(db, token, settings, tmp_path):
    from django.test import Client

    valid_session(settings, tmp_path)
    strict = Client(enforce_csrf_checks=True)

    response = post(strict, {"event": "ready"})

    assert response.status_code == 200


def test_get_is_not_allowed(client, db, token):
    response = client.get(URL, headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 405
    assert GatewayEvent.objects.count() == 0


def test_applying_an_event_takes_a_bounded_number_of_queries(
    db, settings, tmp_path, django_assert_max_num_queries
):
    # Savepoints included (the verbs nest transactions); the same however many
    # events and audit rows are stored before.
    valid_session(settings, tmp_path)
    apply({"event": "change_state", "state": "OPENING"})

    with django_assert_max_num_queries(MAX_QUERIES):
        apply({"event": "disconnected", "reason": "LOGOUT"})
    for n in range(session_events.KEEP_EVENTS + 5):
        apply({"event": "qr", "qr": f"2@many{n}"})
    with django_assert_max_num_queries(MAX_QUERIES):
        apply({"event": "qr", "qr": "2@bounded"})
    with django_assert_max_num_queries(MAX_QUERIES):
        apply({"event": "ready"})
    with django_assert_max_num_queries(MAX_QUERIES):
        apply({"event": "disconnected", "reason": "NAVIGATION"})
