"""Session validity (the four rules of STATE_FORMAT.md, each with its reason) and
the audited changes to the stored session."""

from __future__ import annotations

from datetime import timedelta

import pytest

from statecore import clock, rootstate, session, statefile
from statecore.models import AuditEvent, Source

NOW = clock.parse_timestamp("2026-11-24T09:00:00")


@pytest.fixture
def base(settings, tmp_path):
    """WHATSAPP_SESSION_BASE in a temporary folder that holds the session folder."""
    settings.WHATSAPP_SESSION_BASE = tmp_path
    (tmp_path / ".wwebjs_auth").mkdir()
    return tmp_path


def good(**changes) -> dict:
    data = {
        "authenticated": True,
        "session_valid": True,
        "requires_qr": False,
        "last_validation": "2026-11-24T08:50:00",
        "validation_interval_minutes": 30,
        "session_path": ".wwebjs_auth",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def rule(report: session.SessionReport, name: str) -> session.Rule:
    return next(r for r in report.rules if r.name == name)


def test_a_session_passing_all_four_rules_is_valid(base):
    report = session.check(good(), now=NOW)
    assert report.valid and report.verdict == "Session valid"
    assert [(r.name, r.passed) for r in report.rules] == [
        ("authenticated", True),
        ("session valid", True),
        ("fresh validation", True),
        ("session folder", True),
    ]
    assert rule(report, "fresh validation").reason == (
        "validated at 2026-11-24T08:50:00, fresh for 30 minutes"
    )
    assert rule(report, "session folder").reason == f"{base / '.wwebjs_auth'} exists"
    assert report.last_validation == clock.parse_timestamp("2026-11-24T08:50:00")
    assert report.stale_at == clock.parse_timestamp("2026-11-24T09:20:00")


@pytest.mark.parametrize("value", [False, None, "true", 1])
def test_not_authenticated_fails_the_first_rule(base, value):
    report = session.check(good(authenticated=value), now=NOW)
    assert not report.valid
    assert rule(report, "authenticated") == session.Rule(
        "authenticated", False, "the account has not logged in (authenticated is not true)"
    )
    assert report.verdict == (
        "Session not valid: the account has not logged in (authenticated is not true)"
    )


def test_a_session_marked_invalid_fails_with_the_reason_given(base):
    report = session.check(good(session_valid=False, invalidation_reason="LOGOUT"), now=NOW)
    assert rule(report, "session valid") == session.Rule(
        "session valid", False, "marked invalid: LOGOUT"
    )
    report = session.check(good(session_valid=None), now=NOW)
    assert rule(report, "session valid").reason == "the stored login is marked as not working"


def test_a_session_never_validated_fails(base):
    report = session.check(good(last_validation=None), now=NOW)
    assert rule(report, "fresh validation") == session.Rule(
        "fresh validation", False, "the session was never validated"
    )
    assert report.stale_at is None


def test_a_validation_older_than_the_interval_fails(base):
    report = session.check(good(last_validation="2026-11-24T08:29:59"), now=NOW)
    assert rule(report, "fresh validation") == session.Rule(
        "fresh validation",
        False,
        "the last validation is older than 30 minutes (2026-11-24T08:29:59)",
    )
    # Exactly at the interval it is stale already.
    assert not session.check(good(last_validation="2026-11-24T08:30:00"), now=NOW).valid
    assert session.check(good(last_validation="2026-11-24T08:30:01"), now=NOW).valid


def test_the_interval_comes_from_the_session(base):
    old = good(last_validation="2026-11-24T08:15:00")
    assert not session.check(old, now=NOW).valid
    assert session.check({**old, "validation_interval_minutes": 60}, now=NOW).valid
    # A nonsensical interval falls back to the default 30 minutes.
    assert not session.check({**old, "validation_interval_minutes": 0}, now=NOW).valid


def test_an_epoch_number_validation_time_is_read(base):
    epoch = NOW.timestamp() - 60
    assert session.check(good(last_validation=epoch), now=NOW).valid


def test_an_unreadable_validation_time_fails_saying_so(base):
    report = session.check(good(last_validation="yesterday"), now=NOW)
    assert rule(report, "fresh validation") == session.Rule(
        "fresh validation", False, "the last validation time 'yesterday' cannot be read"
    )


def test_a_missing_session_folder_fails_naming_where_it_looked(base):
    report = session.check(good(session_path="elsewhere"), now=NOW)
    assert rule(report, "session folder") == session.Rule(
        "session folder", False, f"the session folder {base / 'elsewhere'} does not exist"
    )


def test_the_session_folder_defaults_to_wwebjs_auth_and_may_be_absolute(base, tmp_path):
    assert session.check(good(session_path=None), now=NOW).valid
    absolute = tmp_path / "abs" / "auth"
    absolute.mkdir(parents=True)
    assert session.check(good(session_path=str(absolute)), now=NOW).valid
    (base / "a-file").write_text("not a folder")
    assert not session.check(good(session_path="a-file"), now=NOW).valid


def test_the_verdict_names_every_failed_rule(base):
    report = session.check({}, now=NOW)
    assert [r.passed for r in report.rules] == [False, False, False, True]
    assert report.verdict == (
        "Session not valid: the account has not logged in (authenticated is not true); "
        "the stored login is marked as not working; the session was never validated"
    )


# --- Changes to the stored session ----------------------------------------------------


def test_record_login_sets_the_flags_and_replaces_the_account(db):
    statefile.import_bytes(
        b'{"session": {"x": 1, "requires_qr": true}, "account_info": {"number": "1", "old": 2}}',
        actor="t",
        source=Source.COMMAND,
    )
    before = clock.local_iso()
    stored = session.record_login(
        True, {"number": "923001234567", "name": "Shop"}, actor="watcher", source=Source.API
    )
    assert stored == session.current()
    assert (stored["x"], stored["authenticated"], stored["session_valid"]) == (1, True, True)
    assert stored["requires_qr"] is False
    assert stored["last_validation"] == stored["last_authenticated"] >= before
    account = rootstate.part(rootstate.get_root(), "account_info")
    assert account == {
        "number": "923001234567",
        "name": "Shop",
        "last_updated": stored["last_validation"],
    }
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", "actor"))[1:]
    assert actions == [("session_status", "watcher"), ("account_info", "watcher")]


def test_record_logout_keeps_the_last_login_time(db):
    session.record_login(True, actor="w", source=Source.API)
    first = session.current()["last_authenticated"]
    stored = session.record_login(False, actor="w", source=Source.API)
    assert (stored["authenticated"], stored["session_valid"], stored["requires_qr"]) == (
        False,
        False,
        True,
    )
    assert stored["last_authenticated"] == first


def test_record_login_refuses_an_account_an_import_would_refuse(db):
    exported = statefile.export_bytes()
    with pytest.raises(ValueError, match="account_info.number: expected a string or null"):
        session.record_login(True, {"number": 923001234567}, actor="w", source=Source.API)
    assert statefile.export_bytes() == exported


def test_mark_invalid_keeps_the_reason_and_time(db):
    statefile.import_bytes(
        b'{"session": {"authenticated": true, "z": [1]}}', actor="t", source="command"
    )
    stored = session.mark_invalid("LOGOUT", actor="watcher", source=Source.API)
    assert stored == {
        "authenticated": True,
        "z": [1],
        "session_valid": False,
        "requires_qr": True,
        "invalidation_reason": "LOGOUT",
        "invalidated_at": stored["invalidated_at"],
    }
    assert clock.now() - clock.parse_timestamp(stored["invalidated_at"]) < timedelta(minutes=1)
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.note, event.actor) == ("session_invalid", "LOGOUT", "watcher")
    assert event.detail["before"] == {"authenticated": True, "z": [1]}
