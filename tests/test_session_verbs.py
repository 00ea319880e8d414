"""The session verbs: one place writes the session, with one rule for repeats and the hold rule.

- A change of verdict writes one audit row; the same verdict again writes none
  (a validation still moves `last_validation` on; the repeat is counted on GatewayState).
- A person's "mark invalid" holds until a person checks again or a new login:
  an automatic "ready" does not lift it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from statecore import clock, session, session_events
from statecore.models import AuditEvent, Source
from statecore.whatsapp import State, Status
from tests.session_helpers import valid_session

READY = Status(State.READY, "WhatsApp is logged in and connected", code="isReady")
NOT_READY = Status(State.DISCONNECTED, "the gateway reports WhatsApp is not ready", code="x")
QR = Status(State.NEEDS_QR, "scan the QR", code="hasQR", qr="2@first", logged_out=True)
AUTO = {"actor": "receiver", "source": Source.WORKER}
PERSON = {"actor": "dana", "source": Source.WEB}


def session_rows():
    return AuditEvent.objects.filter(action__startswith="session")


@pytest.fixture
def valid(db, settings, tmp_path):
    valid_session(settings, tmp_path)
    return session.current()


def test_a_change_of_verdict_writes_one_audit_row(valid):
    before = session_rows().count()
    session.record_status(NOT_READY, **AUTO)
    assert session_rows().count() == before + 1
    assert session.check(session.current()).valid is False


def test_the_same_not_valid_verdict_again_writes_no_row_and_keeps_when_it_began(valid):
    session.record_status(NOT_READY, **AUTO)
    first = session.current()
    rows = session_rows().count()
    for _ in range(5):
        session.record_status(NOT_READY, **AUTO)
    assert session_rows().count() == rows
    assert session.current()["invalidated_at"] == first["invalidated_at"]
    assert session.gateway_state().repeats == 5


def test_a_repeated_ready_writes_no_row_but_moves_the_validation_on(valid, monkeypatch):
    session.record_status(READY, **AUTO)
    rows = session_rows().count()
    later = clock.now() + timedelta(minutes=20)
    monkeypatch.setattr(clock, "now", lambda: later)
    session.record_status(READY, **AUTO)
    assert session_rows().count() == rows
    assert clock.parse_timestamp(session.current()["last_validation"]) == later


def test_a_different_reason_is_a_new_verdict(valid):
    session.record_status(NOT_READY, **AUTO)
    rows = session_rows().count()
    session.record_status(Status(State.DISCONNECTED, "another reason"), **AUTO)
    assert session_rows().count() == rows + 1
    assert session.current()["invalidation_reason"] == "another reason"


def test_the_same_account_again_writes_no_row(valid):
    account = {"number": "923001234567", "name": "Shop", "platform": "android"}
    session.record_status(READY, account=account, **AUTO)
    rows = AuditEvent.objects.filter(action="account_info").count()
    session.record_status(READY, account=account, **AUTO)
    assert AuditEvent.objects.filter(action="account_info").count() == rows
    session.record_status(READY, account={**account, "name": "Shop 2"}, **AUTO)
    assert AuditEvent.objects.filter(action="account_info").count() == rows + 1


def test_a_qr_asks_for_a_scan_and_is_kept_on_the_gateway_state_not_the_session(valid):
    session.record_status(QR, **AUTO)
    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["requires_qr"] is True
    assert stored["authenticated"] is False
    assert "2@first" not in str(stored)
    assert session_events.latest_qr().text == "2@first"


def test_a_renewed_qr_is_followed_without_a_new_audit_row(valid):
    session.record_status(QR, **AUTO)
    rows = session_rows().count()
    session.record_status(
        Status(State.NEEDS_QR, QR.reason, code="hasQR", qr="2@second", logged_out=True), **AUTO
    )
    assert session_rows().count() == rows
    assert session_events.latest_qr().text == "2@second"


def test_ready_after_a_qr_is_a_new_login_and_the_qr_goes(valid):
    session.record_status(QR, **AUTO)
    session.record_status(READY, **AUTO)
    stored = session.current()
    assert session.check(stored).valid
    assert stored["last_authenticated"] == stored["last_validation"]
    assert session_events.latest_qr() is None
    assert AuditEvent.objects.filter(action="session_status", note="authenticated").exists()


def test_ready_without_a_qr_before_is_a_validation_not_a_login(valid):
    before = session.current()["last_authenticated"] if "last_authenticated" in valid else None
    session.record_status(NOT_READY, **AUTO)
    session.record_status(READY, **AUTO)
    assert session.check(session.current()).valid
    assert session.current().get("last_authenticated") == before


def test_a_persons_mark_holds_against_an_automatic_ready(valid):
    session.mark_invalid("checking the phone", by_person=True, **PERSON)
    session.record_status(READY, **AUTO)
    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["invalidation_reason"] == "checking the phone"
    # What the gateway said is still recorded, for the page.
    assert session.gateway_state().state == State.READY


def test_a_persons_check_lifts_the_hold(valid):
    session.mark_invalid("checking the phone", by_person=True, **PERSON)
    session.record_status(READY, by_person=True, **PERSON)
    assert session.check(session.current()).valid
    assert session.gateway_state().held_reason == ""


def test_a_new_login_lifts_the_hold(valid):
    session.mark_invalid("checking the phone", by_person=True, **PERSON)
    session.record_status(QR, **AUTO)
    session.record_status(READY, **AUTO)  # the QR was scanned: a login
    assert session.check(session.current()).valid
    assert session.gateway_state().held_reason == ""


def test_a_scripts_mark_does_not_hold(valid):
    session.mark_invalid("the watcher saw an error", actor="watcher", source=Source.API)
    session.record_status(READY, **AUTO)
    assert session.check(session.current()).valid


def test_a_scripts_login_lifts_the_hold(valid):
    session.mark_invalid("checking the phone", by_person=True, **PERSON)
    session.record_login(True, actor="watcher", source=Source.API)
    assert session.check(session.current()).valid


def test_not_valid_needs_a_reason(valid):
    with pytest.raises(ValueError, match="reason"):
        session.not_valid("  ", **AUTO)
    assert session.check(session.current()).valid


def test_a_pairing_code_stays_while_the_gateway_still_waits_for_a_login(db):
    asked = Status(State.NEEDS_PAIRING, "type the code on the phone", pairing_code="ABCD-EFGH")
    session.record_status(asked, actor="dana", source=Source.WEB)
    # WAHA's status still says SCAN_QR_CODE, with no code of its own.
    waiting = Status(State.NEEDS_QR, "scan the QR", code="SCAN_QR_CODE", logged_out=True)
    session.record_status(waiting, actor="receiver", source=Source.WORKER)
    assert session.gateway_state().pairing_code == "ABCD-EFGH"
    session.record_status(Status(State.READY, "connected"), actor="receiver", source=Source.WORKER)
    assert session.gateway_state().pairing_code == ""
