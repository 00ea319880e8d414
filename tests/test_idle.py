"""The idle timeout (statecore/idle.py): a person's action keeps a session alive, the
pages' background polls do not, and a poll after the timeout is sent to sign in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings

from statecore import clock, idle
from tests.users import make_user

QUEUE_POLL = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/queue/"}
QR_POLL = {
    "HTTP_HX_REQUEST": "true",
    "HTTP_HX_TARGET": "qr-panel",
    "HTTP_HX_TRIGGER": "qr-panel",
    "HTTP_HX_CURRENT_URL": "http://testserver/session/",
}


class Time:
    """clock.now(), moved by hand."""

    def __init__(self):
        self.now = clock.now()

    def __call__(self):
        return self.now

    def pass_(self, **delta):
        self.now += timedelta(**delta)


@pytest.fixture
def time(monkeypatch):
    fake = Time()
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def rc(db, time) -> Client:
    client = Client()
    client.force_login(make_user("dana", reviewer=True))
    return client


def signed_in(client: Client) -> bool:
    return client.get("/queue/").status_code == 200


def poll_queue(client: Client):
    return client.get("/queue/poll/", **QUEUE_POLL)


def poll_qr(client: Client):
    return client.get("/session/", **QR_POLL)


def test_a_persons_requests_keep_the_session_alive(rc, time):
    for _ in range(3):
        time.pass_(hours=7, minutes=50)
        assert rc.get("/history/").status_code == 200
    time.pass_(hours=7, minutes=50)
    assert signed_in(rc)  # 31 hours after signing in


def test_only_polls_for_eight_hours_sign_the_session_out(rc, time):
    for _ in range(16):  # every half hour, both pages' polls: 8 hours
        time.pass_(minutes=30)
        assert poll_queue(rc).status_code == 200
        assert "HX-Redirect" not in poll_qr(rc)
    time.pass_(minutes=1)
    assert not signed_in(rc)


def test_a_queue_poll_after_the_timeout_is_sent_to_sign_in(rc, time):
    time.pass_(hours=8, minutes=1)
    response = poll_queue(rc)
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fqueue%2F"
    assert "_auth_user_id" not in rc.session


def test_a_qr_panel_poll_after_the_timeout_is_sent_to_sign_in(rc, time):
    time.pass_(hours=8, minutes=1)
    response = poll_qr(rc)
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fsession%2F"


def test_a_page_after_the_timeout_goes_to_sign_in_and_says_why(rc, time):
    time.pass_(hours=8, minutes=1)
    response = rc.get("/queue/", follow=True)
    assert response.redirect_chain == [("/accounts/login/?next=/queue/", 302)]
    assert "You were signed out after 8 hours without activity." in response.content.decode()


def test_the_session_page_itself_is_a_persons_action(rc, time):
    time.pass_(hours=7)
    assert rc.get("/session/").status_code == 200  # the page, not its panel's refresh
    time.pass_(hours=7)
    assert "HX-Redirect" not in poll_qr(rc)


@override_settings(SESSION_IDLE_TIMEOUT_MINUTES=30)
def test_the_timeout_is_a_setting(rc, time):
    time.pass_(minutes=29)
    assert signed_in(rc)
    time.pass_(minutes=31)
    assert not signed_in(rc)


def test_the_stamp_moves_a_minute_at_a_time(rc, time):
    stamp = rc.session[idle.LAST_ACTIVITY]
    time.pass_(seconds=30)
    assert signed_in(rc) and rc.session[idle.LAST_ACTIVITY] == stamp  # no session write
    time.pass_(seconds=31)
    assert signed_in(rc) and rc.session[idle.LAST_ACTIVITY] == stamp + 61


def test_a_session_from_before_the_timeout_starts_counting_at_its_next_poll(rc, time):
    session = rc.session
    del session[idle.LAST_ACTIVITY]
    session.save()
    time.pass_(days=3)
    assert poll_queue(rc).status_code == 200
    time.pass_(hours=8, minutes=1)
    assert "HX-Redirect" in poll_queue(rc)
