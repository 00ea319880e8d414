"""manage.py check_session: asks the gateway, records the answer, exits 0/1/2."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management import call_command

from statecore import rootstate, session, session_events, session_health
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
    gateway.set_info({"number": "923009998877", "name": "Shop", "platform": "android"})

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
    gateway.set_status(False)

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
    # isReady false does not by itself mean a QR scan is needed.
    assert stored["requires_qr"] is False
    assert "QR scan" not in out


def test_an_error_answer_counts_as_not_ready(gateway, capsys):
    gateway.set_status("error500")

    code, out = run(capsys)

    assert code == 1
    assert "answered /status with an error" in session.current()["invalidation_reason"]


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


def test_a_gateway_that_does_not_answer_in_time_counts_as_unreachable(gateway):
    before = session.current()
    gateway.hang_seconds = 30
    gateway.set_status("hang")

    # The check the command runs, with a short timeout instead of GATEWAY.md's 5 s.
    with session_health.gateway_client(status_timeout=0.3) as client:
        result = session_health.check_gateway(client, actor="t", source=Source.COMMAND)

    assert result.exit_code == 2
    assert "did not answer within 0.3 s" in result.error
    assert session.current() == before


def test_info_failing_still_validates_but_says_the_account_was_not_updated(gateway, capsys):
    gateway.set_info("garbage")

    code, out = run(capsys)

    assert code == 0
    assert "/info failed, the account was not updated" in out


def test_it_never_asks_for_a_qr_scan_while_the_stored_session_is_valid(gateway, capsys):
    set_session(requires_qr=True)  # a stale flag the old scripts left behind

    code, out = run(capsys)

    assert code == 0
    assert "QR" not in out
    assert session.current()["requires_qr"] is False


def test_it_says_a_scan_is_needed_when_the_gateway_asked_for_one(gateway, capsys):
    session_events.apply_event({"event": "qr", "qr": "2@scan-me"})
    gateway.set_status(False)

    code, out = run(capsys)

    assert code == 1
    assert "A QR scan is needed" in out
    assert "2@scan-me" not in out


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
    fake_gateway.set_status(False)
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
