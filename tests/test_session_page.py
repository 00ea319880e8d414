"""/session/: the verdict and its reasons, the QR while a scan is needed, staff-only actions."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from django.core.management import call_command
from django.test import Client

from statecore import clock, session, session_events, session_health
from statecore.gateway import GatewayClient
from statecore.models import AuditEvent, Source, Status
from statecore.sending import Sender
from tests.factories import make_reply
from tests.session_helpers import set_session, use_gateway, valid_session

URL = "/session/"


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
    return django_user_model.objects.create_user("sam", password="pw-sam-123456", is_staff=True)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    """The page as a person reads it: tags out, white space collapsed."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    return unescape(re.sub(r" ([:.,;])", r"\1", text))


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


def test_reviewers_see_no_actions_and_get_403_for_them(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Check now" not in client.get(URL).content.decode()
    assert client.post("/session/check/").status_code == 403
    assert client.post("/session/mark-invalid/", {"reason": "x"}).status_code == 403
    assert session.check(session.current()).valid
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


def test_mark_invalid_without_a_reason_is_refused_and_changes_nothing(page_setup, staff):
    before = session.current()

    response = signed_in(staff).post("/session/mark-invalid/", {"reason": "   "})

    assert response.status_code == 422
    assert "This field is required." in text_of(response)
    assert session.current() == before


def test_staff_check_now_asks_the_gateway_and_records_the_answer(page_setup, staff):
    set_session(last_validation="2020-01-01T00:00:00")
    page_setup.set_info({"number": "923001112233", "name": "Shop", "platform": "android"})

    response = signed_in(staff).post("/session/check/", follow=True)

    assert page_setup.calls()["status"] == 1
    assert session.check(session.current()).valid
    page = text_of(response)
    assert "Checked: the session is valid." in page
    assert "923001112233" in page


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


# --- The QR code ----------------------------------------------------------------------


def test_a_fresh_qr_is_drawn_as_svg_and_its_text_is_escaped(page_setup, reviewer):
    session_events.apply_event({"event": "qr", "qr": '2@<b>bold</b>"&x'})

    response = signed_in(reviewer).get(URL)

    html = response.content.decode()
    assert re.search(r'<svg viewBox="[0-9 ]+" class="qr-code">', html)
    assert "<b>bold</b>" not in html
    assert "2@&lt;b&gt;bold&lt;/b&gt;&quot;&amp;x" in html
    assert 'hx-trigger="every 3s"' in html


def test_the_qr_panel_alone_for_htmx_polling(page_setup, reviewer):
    session_events.apply_event({"event": "qr", "qr": "2@poll-me"})
    client = signed_in(reviewer)

    response = client.get(URL, headers={"HX-Request": "true", "HX-Target": "qr-panel"})

    html = response.content.decode()
    assert html.strip().startswith('<section id="qr-panel"')
    assert "2@poll-me" in html
    assert "<html" not in html


def test_the_qr_panel_reloads_the_page_once_the_session_is_ready(page_setup, reviewer):
    session_events.apply_event({"event": "qr", "qr": "2@poll-me"})
    session_events.apply_event({"event": "ready"})

    response = signed_in(reviewer).get(URL, headers={"HX-Request": "true", "HX-Target": "qr-panel"})

    assert response.headers["HX-Refresh"] == "true"


def test_a_stale_qr_is_not_drawn_but_the_panel_keeps_waiting(page_setup, reviewer, monkeypatch):
    session_events.apply_event({"event": "qr", "qr": "2@old"})
    later = clock.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)

    html = signed_in(reviewer).get(URL).content.decode()

    assert "<svg" not in html
    assert "2@old" not in html
    assert "A QR scan is needed" in html
    assert 'hx-trigger="every 3s"' in html


# --- Live status, heartbeat, events ------------------------------------------------


def _live(client):
    return client.get(
        URL + "?live=1", headers={"HX-Request": "true", "HX-Target": "gateway-status"}
    )


def test_the_live_gateway_status_fragment(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Ready" in text_of(_live(client))
    page_setup.set_status(False)
    assert "Not ready" in text_of(_live(client))
    page_setup.set_send_mode("down")
    response = _live(client)
    assert "No answer" in text_of(response)
    assert "<html" not in response.content.decode()


def test_the_live_status_gives_up_after_its_timeout(page_setup, reviewer, monkeypatch):
    monkeypatch.setattr(session_health, "PAGE_STATUS_TIMEOUT", 0.3)
    page_setup.hang_seconds = 30
    page_setup.set_status("hang")

    assert "did not answer within 0.3 s" in text_of(_live(signed_in(reviewer)))


def test_without_javascript_the_page_asks_the_gateway_on_request(page_setup, reviewer):
    client = signed_in(reviewer)

    assert "Ask the gateway for its live status" in text_of(client.get(URL))
    assert page_setup.calls()["status"] == 0
    assert "WhatsApp is logged in and connected" in text_of(client.get(URL + "?live=1"))


def test_the_sender_heartbeat_and_recent_events_are_shown(page_setup, reviewer, settings):
    settings.APPROVAL_GRACE_SECONDS = 0
    make_reply(Status.APPROVED)
    Sender(GatewayClient(page_setup.url, send_timeout=15)).run_once()
    session_events.apply_event({"event": "change_state", "state": "CONNECTED"})

    page = text_of(signed_in(reviewer).get(URL))

    assert "Replies waiting 0" in page
    assert "State idle" in page
    assert "change_state CONNECTED" in page


def test_without_a_heartbeat_the_page_says_the_sender_never_ran(page_setup, reviewer):
    assert "The sender has never run" in text_of(signed_in(reviewer).get(URL))


def test_the_page_takes_a_bounded_number_of_queries(
    page_setup, reviewer, django_assert_max_num_queries
):
    for n in range(30):
        session_events.apply_event({"event": "change_state", "state": f"S{n}"})
    client = signed_in(reviewer)

    with django_assert_max_num_queries(10):
        client.get(URL)


# --- The page and check_session agree ---------------------------------------------


@pytest.mark.parametrize("ready", [True, False])
def test_check_session_and_the_page_give_the_same_verdict_and_reasons(
    page_setup, reviewer, capsys, ready
):
    set_session(last_validation="2020-01-01T00:00:00")
    page_setup.set_status(ready)

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
