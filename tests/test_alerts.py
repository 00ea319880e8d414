"""Alerts: one email to the admins per incident, not one per poll."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection

from statecore import alerts, clock, session_events
from statecore.models import Incident, Message, Status
from tests.factories import make_reply
from tests.session_helpers import valid_session


@pytest.fixture
def healthy(db, settings, tmp_path):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SEND_DELAY_ALERT_MINUTES = 10
    valid_session(settings, tmp_path)


def test_nothing_wrong_sends_nothing(healthy):
    assert alerts.check_incidents() == []
    assert mail.outbox == []


def test_an_invalid_session_mails_the_admins_once_per_incident(healthy):
    session_events.apply_event({"event": "disconnected", "reason": "LOGOUT"})

    for _ in range(5):  # five polls
        alerts.check_incidents()

    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert "WhatsApp session not valid" in message.subject
    assert "disconnected: LOGOUT" in message.body
    [incident] = alerts.open_incidents()
    assert incident.kind == alerts.SESSION_INVALID


def test_the_incident_is_resolved_when_the_session_is_valid_and_a_new_one_mails_again(healthy):
    session_events.apply_event({"event": "disconnected", "reason": "LOGOUT"})
    alerts.check_incidents()

    session_events.apply_event({"event": "ready"})
    alerts.check_incidents()

    assert alerts.open_incidents() == []
    assert Incident.objects.get().resolved_at is not None
    assert len(mail.outbox) == 1

    session_events.apply_event({"event": "auth_failure", "message": "bad"})
    alerts.check_incidents()
    alerts.check_incidents()

    assert len(mail.outbox) == 2
    assert "authentication failed: bad" in mail.outbox[1].body
    assert Incident.objects.count() == 2


def test_replies_waiting_too_long_mail_once_and_resolve_when_sent(healthy):
    reply = make_reply(Status.APPROVED)
    Message.objects.filter(pk=reply.pk).update(status_updated_at=clock.now() - timedelta(minutes=9))
    alerts.check_incidents()
    assert mail.outbox == []  # nine minutes: not yet

    later = clock.now() + timedelta(minutes=2)
    alerts.check_incidents(now=later)
    alerts.check_incidents(now=later)

    [message] = mail.outbox
    assert "Replies are not going out" in message.subject
    assert "1 approved reply has waited more than 10 minutes" in message.body

    Message.objects.filter(pk=reply.pk).update(status=Status.SENT)
    alerts.check_incidents(now=later)
    assert alerts.open_incidents() == []
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_two_pollers_at_once_still_send_one_mail(settings, tmp_path):
    settings.ADMINS = [("Ops", "ops@example.com")]
    valid_session(settings, tmp_path)
    session_events.apply_event({"event": "disconnected", "reason": "LOGOUT"})
    start = threading.Barrier(4)

    def poll():
        try:
            start.wait()
            alerts.check_incidents()
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(mail.outbox) == 1
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_mail_that_cannot_be_sent_keeps_the_incident_open_without_a_storm(healthy, settings):
    settings.EMAIL_BACKEND = "tests.test_alerts.BrokenBackend"
    session_events.apply_event({"event": "disconnected", "reason": "LOGOUT"})

    alerts.check_incidents()
    alerts.check_incidents()

    assert BrokenBackend.tries == 1
    assert len(alerts.open_incidents()) == 1


class BrokenBackend:
    tries = 0

    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        BrokenBackend.tries += 1
        raise OSError("SMTP server unreachable")
