"""Errors are logged, not mailed per request (settings.LOGGING, statecore/errormail.py):
with DEBUG off a 500's traceback goes to stderr; error mail is off unless ERROR_MAIL=1,
and then one mail per distinct error an hour."""

from __future__ import annotations

import io
import logging

import pytest
from django.test import Client, override_settings
from django.urls import path

from statecore import errormail

ADMINS = [("Ana", "ana@example.com")]


class Boom(Exception):
    pass


def boom(request):
    raise Boom("the database said no")


def other_boom(request):
    raise KeyError("another fault")


urlpatterns = [path("boom/", boom), path("other-boom/", other_boom)]


@pytest.fixture(autouse=True)
def _here(settings):
    settings.ROOT_URLCONF = __name__
    settings.ADMINS = ADMINS
    errormail.forget()
    yield
    errormail.forget()


@pytest.fixture
def stderr():
    """What the configured stderr handler writes, caught for the test."""
    [handler] = [h for h in logging.getLogger().handlers if h.get_name() == "stderr"]
    caught = io.StringIO()
    before = handler.setStream(caught)
    yield caught
    handler.setStream(before)


def fail(url: str = "/boom/"):
    response = Client(raise_request_exception=False).get(url)
    assert response.status_code == 500
    return response


def test_a_500_writes_its_traceback_to_stderr(db, stderr, caplog):
    with caplog.at_level(logging.ERROR, logger="django.request"):
        fail()
    text = stderr.getvalue()
    assert "ERROR django.request: Internal Server Error: /boom/" in text
    assert "Traceback (most recent call last):" in text
    assert "tests.test_logging.Boom: the database said no" in text
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info[0] is Boom


def test_a_500_mails_nobody_by_default_even_with_admins(db, mailoutbox):
    for _ in range(3):
        fail()
    assert mailoutbox == []


@override_settings(ERROR_MAIL=True)
def test_with_error_mail_on_ten_identical_errors_send_one_mail(db, mailoutbox):
    for _ in range(10):
        fail()
    [mail] = mailoutbox
    assert mail.to == ["ana@example.com"]
    assert "Internal Server Error: /boom/" in mail.subject
    assert "the database said no" in mail.body


@override_settings(ERROR_MAIL=True)
def test_with_error_mail_on_each_distinct_error_is_mailed_once(db, mailoutbox):
    for _ in range(3):
        fail("/boom/")
        fail("/other-boom/")
    assert sorted(m.subject.rsplit(" ", 1)[-1] for m in mailoutbox) == ["/boom/", "/other-boom/"]


@override_settings(ERROR_MAIL=True)
def test_the_same_error_is_mailed_again_after_an_hour(db, mailoutbox, monkeypatch):
    started = errormail.time.monotonic()
    fail()
    monkeypatch.setattr(errormail.time, "monotonic", lambda: started + 3599)
    fail()
    assert len(mailoutbox) == 1
    monkeypatch.setattr(errormail.time, "monotonic", lambda: started + 3601)
    fail()
    assert len(mailoutbox) == 2


@override_settings(ERROR_MAIL=True, DEBUG=True)
def test_no_error_mail_with_debug(db, mailoutbox):
    fail()
    assert mailoutbox == []


def test_warnings_from_anywhere_and_statecore_at_its_level_reach_stderr(stderr):
    logging.getLogger("somelibrary").warning("a library warns")
    logging.getLogger("somelibrary").info("a library chats")
    logging.getLogger("django.db").info("django chats")
    logging.getLogger("statecore.sending").info("sent one")
    text = stderr.getvalue()
    assert "WARNING somelibrary: a library warns" in text
    assert "INFO statecore.sending: sent one" in text
    assert "chats" not in text
