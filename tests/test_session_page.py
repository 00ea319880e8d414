"""/session/: the verdict and its reasons, the QR the loops recorded, the session actions.

The page only shows what was recorded (by the receiving loop's watch, a check,
a forwarded event): a GET asks the gateway for its live status at most, and
records nothing.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.test import Client

from statecore import clock, session, session_check, session_events, whatsapp
from statecore.models import AuditEvent, GatewayState, Source, Status
from statecore.receiving import Receiver
from statecore.sending import Sender
from statecore.whatsapp import State
from statecore.whatsapp import Status as GatewayStatus
from statecore.whatsapp.wwebjs_events import parse_event
from tests.factories import make_reply
from tests.session_helpers import set_session, use_gateway, valid_session

URL = "/session/"
QR_PANEL = {"HX-Request": "true", "HX-Target": "qr-panel"}
LOOP = {"actor": "receiver", "source": Source.WORKER}
# 2,000 emoji of 4 bytes: 8,000 bytes, far over the 2,953 a QR code (version 40, L) holds.
UNDRAWABLE_QR = "😀" * 2000


@pytest.fixture
def page_setup(db, settings, tmp_path, fake_gateway):
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    return fake_gateway


@pytest.fixture
def reviewer(django_user_model):
    return django_user_model.objects.create_user("rita", password="pw-rita-123456")


@pytest.fixture
def staff(django_user_model):
    """Someone who runs the session: staff with `statecore.manage_session`."""
    user = django_user_model.objects.create_user("sam", password="pw-sam-123456", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_session"))
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    """The page as a person reads it: tags out, white space collapsed."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    return unescape(re.sub(r" ([:.,;])", r"\1", text))


def loop_checks() -> session_check.GatewayCheck:
    """What the receiving loop's watch does each round: ask the gateway, record the answer."""
    with whatsapp.gateway() as gateway:
        return session_check.check(gateway, **LOOP)


def forward(event: dict) -> None:
    """A gateway event, as `POST /gateway/events` applies it."""
    session_events.apply_event(parse_event(json.dumps(event).encode()))


def needs_qr(qr: str) -> GatewayStatus:
    return GatewayStatus(State.NEEDS_QR, "scan the QR", code="hasQR", qr=qr, logged_out=True)


def snapshot() -> tuple:
    """Everything a GET must leave alone: the audit log, the GatewayState row, the session."""
    rows = [model_to_dict(row) for row in GatewayState.objects.all()]
    return AuditEvent.objects.count(), rows, session.current()


def test_the_page_needs_a_sign_in(client, page_setup):
    response = client.get(URL)

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_a_valid_session_shows_the_verdict_each_rule_and_the_account(page_setup, reviewer):
    response = signed_in(reviewer).get(URL)

    assert response.status_code == 200
    page = text_of(response)
    assert "Session valid" in page
    for rule in session.check(session.current()).rules:
        assert f"Pass {rule.name.capitalize()}: {rule.reason}" in page
    assert "Goes stale" in page
    assert "No QR scan is needed" in page
    assert 'class="session-banner"' not in response.content.decode()


def test_an_invalid_session_shows_why_and_the_red_banner(page_setup, reviewer):
    set_session(
        last_validation="2020-01-01T00:00:00", session_valid=False, invalidation_reason="phone lost"
    )

    response = signed_in(reviewer).get(URL)

    page = text_of(response)
    assert "Session not valid" in page
    assert "Fail Session valid: marked invalid: phone lost" in page
    assert "Fail Fresh validation: the last validation is older than 30 minutes" in page
    assert 'class="session-banner"' in response.content.decode()


def test_the_page_says_which_gateway_kind_and_address_are_in_use(page_setup, reviewer):
    page = text_of(signed_in(reviewer).get(URL))

    assert whatsapp.kind() == "wwebjs"
    assert f"wwebjs at {page_setup.url}" in page


def test_reviewers_see_no_actions_and_get_403_for_them(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Check now" not in client.get(URL).content.decode()
    assert client.post("/session/check/").status_code == 403
    assert client.post("/session/mark-invalid/", {"reason": "x"}).status_code == 403
    assert session.check(session.current()).valid
    assert GatewayState.objects.filter(held_reason="x").count() == 0
    assert page_setup.calls()["status"] == 0


def test_staff_mark_the_session_invalid_with_a_reason(page_setup, staff):
    client = signed_in(staff)

    response = client.post("/session/mark-invalid/", {"reason": "SIM card swapped"}, follow=True)

    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["invalidation_reason"] == "SIM card swapped"
    audit = AuditEvent.objects.get(action="session_invalid")
    assert (audit.actor, audit.source) == ("sam", Source.WEB)
    assert "The session is marked invalid: SIM card swapped" in text_of(response)


def test_a_persons_mark_holds_against_the_loop_and_the_page_says_so_until_check_now(
    page_setup, staff
):
    client = signed_in(staff)
    client.post("/session/mark-invalid/", {"reason": "SIM card swapped"})
    notice = "Marked invalid by a person SIM card swapped (sam)."

    # The loop finds the gateway ready: the person's mark holds, and the page says why.
    loop_checks()
    page = text_of(client.get(URL))
    assert notice in page
    assert "Stays so until someone presses Check now or WhatsApp logs in again." in page
    assert "Session not valid" in page

    # A person's check lifts it.
    page = text_of(client.post("/session/check/", follow=True))
    assert "Checked: the session is valid." in page
    assert "Marked invalid by a person" not in page
    assert session.gateway_state().held_reason == ""


def test_mark_invalid_without_a_reason_is_refused_and_changes_nothing(page_setup, staff):
    before = session.current()

    response = signed_in(staff).post("/session/mark-invalid/", {"reason": "   "})

    assert response.status_code == 422
    assert "This field is required." in text_of(response)
    assert session.current() == before


def test_staff_check_now_asks_the_gateway_and_records_the_answer(page_setup, staff):
    set_session(last_validation="2020-01-01T00:00:00")
    page_setup.set_account(number="923001112233", name="Shop", platform="android")

    response = signed_in(staff).post("/session/check/", follow=True)

    assert page_setup.calls()["status"] == 1
    assert session.check(session.current()).valid
    page = text_of(response)
    assert "Checked: the session is valid." in page
    assert "923001112233" in page


def test_check_now_with_a_qr_showing_says_a_scan_is_needed_and_shows_it(page_setup, staff):
    qr = page_setup.show_qr("2@checked-now,AbCd==")

    page = text_of(signed_in(staff).post("/session/check/", follow=True))

    assert "Checked: Session not valid" in page
    assert "Scan to link WhatsApp" in page
    assert qr in page


def test_check_now_with_the_gateway_down_says_so(page_setup, staff):
    page_setup.set_send_mode("down")

    response = signed_in(staff).post("/session/check/", follow=True)

    assert "The gateway did not answer" in text_of(response)


def test_actions_need_the_csrf_token(page_setup, staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)

    assert client.post("/session/mark-invalid/", {"reason": "x"}).status_code == 403
    assert session.check(session.current()).valid


def test_get_is_not_an_action(page_setup, staff):
    assert signed_in(staff).get("/session/check/").status_code == 405


# --- A GET records nothing -----------------------------------------------------------


def test_a_get_records_nothing_even_while_the_gateway_shows_a_qr(page_setup, staff):
    loop_checks()  # the row exists: the loop has recorded "ready"
    page_setup.show_qr("2@not-recorded-by-a-get")
    before = snapshot()
    asked = page_setup.calls()["status"]
    client = signed_in(staff)

    for response in (
        client.get(URL),
        client.get(URL + "?live=1"),
        client.get(URL, headers=QR_PANEL),
        client.get(URL + "?live=1", headers={"HX-Request": "true", "HX-Target": "gateway-status"}),
    ):
        assert response.status_code == 200
        assert "2@not-recorded-by-a-get" not in response.content.decode()

    assert page_setup.calls()["status"] == asked + 2  # the live status was asked, twice
    assert snapshot() == before
    assert session.check(session.current()).valid


def test_a_get_creates_no_gateway_state_row(page_setup, staff):
    GatewayState.objects.all().delete()
    page_setup.show_qr()

    response = signed_in(staff).get(URL + "?live=1")

    assert response.status_code == 200
    assert "nothing recorded yet" in text_of(response)
    assert GatewayState.objects.count() == 0


# --- The QR code ----------------------------------------------------------------------


def test_the_qr_shown_is_the_one_the_loop_recorded(page_setup, reviewer):
    recorded = page_setup.show_qr("2@recorded-by-the-loop,AbCdEf==")
    assert loop_checks().report.valid is False
    client = signed_in(reviewer)

    html = client.get(URL).content.decode()
    assert re.search(r'<svg viewBox="[0-9 ]+" class="qr-code">', html)
    assert recorded in html
    assert "Scan to link WhatsApp" in html

    # The gateway renews its QR; until the loop records the new one, the page shows the old.
    renewed = page_setup.renew_qr()
    html = client.get(URL).content.decode()
    assert recorded in html
    assert renewed not in html

    loop_checks()
    html = client.get(URL).content.decode()
    assert renewed in html
    assert recorded not in html


def test_a_fresh_qr_is_drawn_as_svg_and_its_text_is_escaped(page_setup, reviewer):
    session.record_status(needs_qr('2@<b>bold</b>"&x'), **LOOP)

    response = signed_in(reviewer).get(URL)

    html = response.content.decode()
    assert re.search(r'<svg viewBox="[0-9 ]+" class="qr-code">', html)
    assert "<b>bold</b>" not in html
    assert "2@&lt;b&gt;bold&lt;/b&gt;&quot;&amp;x" in html
    assert 'hx-trigger="every 3s"' in html


def test_a_qr_that_cannot_be_drawn_is_shown_as_text_with_a_warning(page_setup, reviewer):
    assert len(UNDRAWABLE_QR.encode()) == 8000
    page_setup.show_qr(UNDRAWABLE_QR)
    loop_checks()
    client = signed_in(reviewer)

    for response in (client.get(URL), client.get(URL, headers=QR_PANEL)):
        assert response.status_code == 200
        html = response.content.decode()
        assert "<svg" not in html
        assert UNDRAWABLE_QR in html
        assert "The gateway's QR code is too long to draw here." in text_of(response)
        assert 'hx-trigger="every 3s"' in html  # it keeps following the gateway


def test_the_qr_panel_alone_for_htmx_polling(page_setup, reviewer):
    session.record_status(needs_qr("2@poll-me"), **LOOP)
    client = signed_in(reviewer)

    response = client.get(URL, headers=QR_PANEL)

    html = response.content.decode()
    assert html.strip().startswith('<section id="qr-panel"')
    assert "2@poll-me" in html
    assert "<html" not in html


def test_the_qr_panel_reloads_the_page_once_the_loop_records_the_scan(page_setup, reviewer):
    page_setup.show_qr("2@poll-me")
    loop_checks()
    client = signed_in(reviewer)
    assert "HX-Refresh" not in client.get(URL, headers=QR_PANEL).headers

    page_setup.scan()
    loop_checks()

    response = client.get(URL, headers=QR_PANEL)
    assert response.headers["HX-Refresh"] == "true"
    page = text_of(client.get(URL))
    assert "Session valid" in page
    assert "No QR scan is needed" in page


def test_a_forwarded_qr_event_is_shown_too(page_setup, reviewer):
    forward({"event": "qr", "qr": "2@forwarded"})

    assert "2@forwarded" in signed_in(reviewer).get(URL).content.decode()


def test_a_stale_qr_is_not_drawn_but_the_panel_keeps_waiting(page_setup, reviewer, monkeypatch):
    session.record_status(needs_qr("2@old"), **LOOP)
    later = clock.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)

    html = signed_in(reviewer).get(URL).content.decode()

    assert "<svg" not in html
    assert "2@old" not in html
    assert "A QR scan is needed" in html
    assert 'hx-trigger="every 3s"' in html


# --- What the gateway last said; customers' messages -----------------------------------


def test_what_the_gateway_last_said_is_shown(page_setup, reviewer):
    page_setup.go_not_ready()
    loop_checks()

    page = text_of(signed_in(reviewer).get(URL))

    assert (
        "Last said the gateway reports WhatsApp is not ready (isReady false) (isReady=false)"
        in (page)
    )
    assert "never fetched: start manage.py receive_messages --loop" in page


def test_a_full_buffer_on_the_gateway_shows_the_inbound_gap_warning(page_setup, reviewer):
    for n in range(100):
        page_setup.add_customer_message(f"message {n}", sender=f"92300{n:07}@c.us")
    with whatsapp.gateway() as gateway:
        summary = Receiver(gateway).run_once()
    assert summary.gap

    response = signed_in(reviewer).get(URL)

    html = response.content.decode()
    assert re.search(r'<p class="warning" role="alert"><span dir="auto">The gateway', html)
    page = text_of(response)
    assert summary.gap in page
    assert "last fetched" in page


def test_without_a_full_buffer_there_is_no_gap_warning(page_setup, reviewer):
    page_setup.add_customer_message("hello")
    with whatsapp.gateway() as gateway:
        Receiver(gateway).run_once()

    page = text_of(signed_in(reviewer).get(URL))

    assert "last fetched" in page
    assert "may have been lost" not in page


# --- Live status, heartbeat, events ------------------------------------------------


def _live(client):
    return client.get(
        URL + "?live=1", headers={"HX-Request": "true", "HX-Target": "gateway-status"}
    )


def test_the_live_gateway_status_fragment(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Ready" in text_of(_live(client))
    page_setup.go_not_ready()
    assert "Not ready the gateway reports WhatsApp is not ready" in text_of(_live(client))
    page_setup.set_send_mode("down")
    response = _live(client)
    assert "No answer" in text_of(response)
    assert "<html" not in response.content.decode()


def test_the_live_status_gives_up_after_its_timeout(page_setup, reviewer, monkeypatch):
    monkeypatch.setattr(session_check, "PAGE_STATUS_TIMEOUT", 0.3)
    page_setup.hang_seconds = 30
    page_setup.set_status_failure("hang")

    started = time.monotonic()
    page = text_of(_live(signed_in(reviewer)))

    assert time.monotonic() - started < 5
    assert "No answer" in page
    assert "did not answer" in page


def test_without_javascript_the_page_asks_the_gateway_on_request(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Ask the gateway for its live status" in text_of(client.get(URL))
    assert page_setup.calls()["status"] == 0
    assert "WhatsApp is logged in and connected" in text_of(client.get(URL + "?live=1"))


def test_the_sender_heartbeat_and_recent_events_are_shown(page_setup, reviewer, settings):
    settings.APPROVAL_GRACE_SECONDS = 0
    make_reply(Status.APPROVED)
    with whatsapp.gateway(send_timeout=15) as gateway:
        Sender(gateway).run_once()
    forward({"event": "change_state", "state": "CONNECTED"})

    page = text_of(signed_in(reviewer).get(URL))

    assert len(page_setup.delivered()) == 1
    assert "Replies waiting 0" in page
    assert "State idle" in page
    assert "change_state CONNECTED" in page


def test_without_a_heartbeat_the_page_says_the_sender_never_ran(page_setup, reviewer):
    assert "The sender has never run" in text_of(signed_in(reviewer).get(URL))


def test_the_page_takes_a_bounded_number_of_queries(
    page_setup, reviewer, django_assert_max_num_queries
):
    for n in range(30):
        forward({"event": "change_state", "state": f"S{n}"})
    page_setup.show_qr()
    loop_checks()
    client = signed_in(reviewer)

    with django_assert_max_num_queries(10):
        response = client.get(URL)
    assert "Scan to link WhatsApp" in text_of(response)


# --- The page and check_session agree ---------------------------------------------


@pytest.mark.parametrize("ready", [True, False])
def test_check_session_and_the_page_give_the_same_verdict_and_reasons(
    page_setup, reviewer, capsys, ready
):
    set_session(last_validation="2020-01-01T00:00:00")
    if not ready:
        page_setup.go_not_ready()

    try:
        call_command("check_session")
    except SystemExit:
        pass
    out = capsys.readouterr().out

    response = signed_in(reviewer).get(URL)
    page = text_of(response)
    report = session.check(session.current())
    assert report.verdict in out
    assert report.verdict in page
    for rule in report.rules:
        assert rule.reason in out
        assert rule.reason in page
    assert report.valid is ready
    assert ('class="verdict verdict-ok"' in response.content.decode()) is ready
