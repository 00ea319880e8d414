"""manage.py check_session: asks the gateway, records the answer, exits 0/1/2."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.core.management import call_command

from statecore import clock, rootstate, session, session_check, session_events, whatsapp
from statecore.models import AuditEvent, Source
from tests.session_helpers import REPO, child_env, manage, set_session, use_gateway, valid_session


@pytest.fixture
def gateway(db, settings, tmp_path, fake_gateway):
    valid_session(settings, tmp_path)
    set_session(last_validation="2020-01-01T00:00:00")  # stale: only a check makes it valid
    use_gateway(fake_gateway.url)
    return fake_gateway


def run(capsys) -> tuple[int, str]:
    try:
        call_command("check_session")
    except SystemExit as exc:
        return exc.code, capsys.readouterr().out
    return 0, capsys.readouterr().out


def test_a_ready_gateway_makes_the_session_valid_and_exits_0(gateway, capsys):
    gateway.set_account(number="923009998877", name="Shop", platform="android")

    code, out = run(capsys)

    assert code == 0
    assert "Session valid" in out
    assert "[pass] fresh validation" in out
    assert "Account: Shop (923009998877, android)" in out
    assert "QR" not in out
    assert session.check(session.current()).valid
    account = rootstate.part(rootstate.get_root(), "account_info")
    assert (account["number"], account["name"], account["platform"]) == (
        "923009998877",
        "Shop",
        "android",
    )
    assert account["last_updated"]


def test_a_not_ready_gateway_makes_the_session_invalid_and_exits_1(gateway, capsys):
    gateway.go_not_ready()

    code, out = run(capsys)

    assert code == 1
    stored = session.current()
    assert stored["session_valid"] is False
    assert (
        stored["invalidation_reason"] == "the gateway reports WhatsApp is not ready (isReady false)"
    )
    assert stored["invalidated_at"]
    assert "Session not valid" in out
    assert "[FAIL] session valid: marked invalid: the gateway reports WhatsApp is not ready" in out
    # isReady false without a QR does not mean a QR scan is needed.
    assert stored["requires_qr"] is False
    assert stored["authenticated"] is True
    assert "scan is needed" not in out.lower()
    assert session.gateway_state().state == "disconnected"


@pytest.mark.parametrize("failure", ["error500", "garbage"])
def test_an_error_answer_counts_as_not_ready(gateway, capsys, failure):
    gateway.set_status_failure(failure)

    code, out = run(capsys)

    assert code == 1
    assert "answered /status with an error" in session.current()["invalidation_reason"]
    assert "scan is needed" not in out.lower()


def test_an_unreachable_gateway_exits_2_and_leaves_the_session_alone(gateway, capsys):
    before = session.current()
    audits = AuditEvent.objects.count()
    gateway.set_send_mode("down")

    code, out = run(capsys)

    assert code == 2
    assert "no answer" in out
    assert "Session not valid" in out  # the stored verdict, printed as it is
    assert session.current() == before
    assert AuditEvent.objects.count() == audits


@pytest.mark.parametrize("failure", ["hang", "drop"])
def test_a_gateway_that_does_not_answer_counts_as_unreachable(gateway, failure):
    before = session.current()
    audits = AuditEvent.objects.count()
    gateway.hang_seconds = 30
    gateway.set_status_failure(failure)

    # The check the command runs, with a short timeout instead of GATEWAY.md's 5 s.
    with whatsapp.gateway(status_timeout=0.3) as client:
        result = session_check.check(client, actor="t", source=Source.COMMAND)

    assert (result.exit_code, result.reachable, result.status) == (2, False, None)
    assert "did not answer" in result.error
    assert session.current() == before
    assert AuditEvent.objects.count() == audits


@pytest.mark.parametrize("failure", ["error500", "garbage", "drop"])
def test_info_failing_still_validates_but_says_the_account_was_not_updated(
    gateway, capsys, failure
):
    before = rootstate.part(rootstate.get_root(), "account_info")
    gateway.set_info_failure(failure)

    code, out = run(capsys)

    assert code == 0
    assert "the account was not updated" in out
    assert "Account:" not in out
    assert rootstate.part(rootstate.get_root(), "account_info") == before


def test_it_never_asks_for_a_qr_scan_while_the_stored_session_is_valid(gateway, capsys):
    set_session(requires_qr=True)  # a stale flag the old scripts left behind

    code, out = run(capsys)

    assert code == 0
    assert "QR" not in out
    assert session.current()["requires_qr"] is False


def test_it_says_a_scan_is_needed_when_the_gateway_shows_a_qr(gateway, capsys):
    gateway.show_qr("2@scan-me,noise,identity,secret")

    code, out = run(capsys)

    assert code == 1
    assert "A QR scan is needed" in out
    assert "2@scan-me" not in out  # the login code is for /session/, not a terminal log
    stored = session.current()
    assert (stored["requires_qr"], stored["authenticated"]) == (True, False)
    assert session.gateway_state().qr == "2@scan-me,noise,identity,secret"


def test_a_qr_the_gateway_still_shows_a_minute_later_is_still_asked_for(
    gateway, capsys, monkeypatch
):
    gateway.show_qr()
    assert "A QR scan is needed" in run(capsys)[1]
    later = clock.now() + timedelta(seconds=session_events.QR_FRESH_SECONDS + 5)
    monkeypatch.setattr(clock, "now", lambda: later)

    code, out = run(capsys)

    assert code == 1
    assert "A QR scan is needed" in out
    assert session_events.latest_qr() is not None


def test_a_qr_that_went_away_without_a_scan_is_no_longer_asked_for(gateway, capsys):
    gateway.show_qr()
    assert "A QR scan is needed" in run(capsys)[1]
    gateway.go_not_ready()  # the QR is gone, WhatsApp is not ready either

    code, out = run(capsys)

    assert code == 1
    assert "scan is needed" not in out.lower()
    assert session.gateway_state().qr == ""


def test_after_the_qr_is_scanned_it_exits_0_as_a_new_login(gateway, capsys):
    gateway.show_qr()
    assert run(capsys)[0] == 1
    gateway.scan()

    code, out = run(capsys)

    assert code == 0
    assert "scan is needed" not in out.lower()
    stored = session.current()
    assert stored["requires_qr"] is False and stored["last_authenticated"]
    assert session.gateway_state().qr == ""


def test_a_persons_mark_is_not_lifted_by_check_session(gateway, capsys):
    session.mark_invalid(
        "the wrong phone is linked", actor="dana", source=Source.WEB, by_person=True
    )
    session_rows = AuditEvent.objects.filter(action__startswith="session")
    rows = session_rows.count()

    code, out = run(capsys)

    assert code == 1
    assert "WhatsApp ready" in out  # the gateway says so ...
    assert "Marked invalid by dana: the wrong phone is linked" in out  # ... the mark stands
    assert "stays so until someone presses Check now" in out
    assert "[FAIL] session valid: marked invalid: the wrong phone is linked" in out
    assert session.current()["invalidation_reason"] == "the wrong phone is linked"
    assert session.gateway_state().held_reason == "the wrong phone is linked"
    assert session_rows.count() == rows  # nothing changed, so nothing to audit


def test_a_persons_check_lifts_a_persons_mark(gateway, capsys):
    session.mark_invalid(
        "the wrong phone is linked", actor="dana", source=Source.WEB, by_person=True
    )
    assert run(capsys)[0] == 1

    with whatsapp.gateway(status_timeout=2) as client:
        result = session_check.check(client, actor="dana", source=Source.WEB, by_person=True)

    assert (result.exit_code, result.ready) == (0, True)
    assert session.gateway_state().held_reason == ""
    assert session.check(session.current()).valid
    code, out = run(capsys)
    assert code == 0
    assert "Marked invalid" not in out


def test_a_missing_session_folder_fails_its_rule_even_when_the_gateway_is_ready(
    gateway, capsys, settings, tmp_path
):
    settings.WHATSAPP_SESSION_BASE = tmp_path / "elsewhere"

    code, out = run(capsys)

    assert code == 1
    assert "[FAIL] session folder" in out


@pytest.mark.django_db(transaction=True)
def test_the_exit_code_reaches_the_shell(settings, tmp_path, fake_gateway):
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    env = child_env(tmp_path)

    ok = subprocess.run(manage("check_session"), cwd=REPO, env=env, capture_output=True, text=True)
    fake_gateway.show_qr()
    invalid = subprocess.run(
        manage("check_session"), cwd=REPO, env=env, capture_output=True, text=True
    )
    fake_gateway.set_send_mode("down")
    down = subprocess.run(
        manage("check_session"), cwd=REPO, env=env, capture_output=True, text=True
    )

    assert (ok.returncode, invalid.returncode, down.returncode) == (0, 1, 2), (
        ok.stdout + invalid.stdout + down.stdout + down.stderr
    )
    assert "Session valid" in ok.stdout
    assert "A QR scan is needed" in invalid.stdout
    assert "no answer" in down.stdout
