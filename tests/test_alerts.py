"""Alerts: one email to the admins per incident, not one per poll."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection

from statecore import alerts, clock, lifecycle, session_check, session_events, whatsapp
from statecore.models import AuditEvent, Incident, Message, Source, Status
from statecore.sending import Sender
from statecore.whatsapp.standin_wwebjs import NOT_READY_ERROR
from statecore.whatsapp.wwebjs_events import parse_event
from tests.factories import make_reply
from tests.session_helpers import use_gateway, valid_session


def apply(body: dict) -> None:
    """A gateway event, as POST /gateway/events would apply it."""
    session_events.apply_event(parse_event(json.dumps(body).encode()))


@pytest.fixture
def healthy(db, settings, tmp_path):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SEND_DELAY_ALERT_MINUTES = 10
    valid_session(settings, tmp_path)


def test_nothing_wrong_sends_nothing(healthy):
    assert alerts.check_incidents() == []
    assert mail.outbox == []


def test_an_invalid_session_mails_the_admins_once_per_incident(healthy):
    apply({"event": "disconnected", "reason": "LOGOUT"})

    for _ in range(5):  # five polls
        alerts.check_incidents()

    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert "WhatsApp session not valid" in message.subject
    assert "disconnected: LOGOUT" in message.body
    [incident] = alerts.open_incidents()
    assert incident.kind == alerts.SESSION_INVALID


def test_the_incident_is_resolved_when_the_session_is_valid_and_a_new_one_mails_again(healthy):
    apply({"event": "disconnected", "reason": "LOGOUT"})
    alerts.check_incidents()

    apply({"event": "ready"})
    alerts.check_incidents()

    assert alerts.open_incidents() == []
    assert Incident.objects.get().resolved_at is not None
    assert len(mail.outbox) == 1

    apply({"event": "auth_failure", "message": "bad"})
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


def test_a_reply_held_by_a_gateway_that_is_not_ready_mails_about_the_session_not_the_phone(
    healthy, settings, fake_gateway
):
    settings.APPROVAL_GRACE_SECONDS = 0
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    use_gateway(fake_gateway.url)
    reply = make_reply(Status.APPROVED)
    Message.objects.filter(pk=reply.pk).update(
        status_updated_at=clock.now() - timedelta(minutes=11)
    )
    fake_gateway.go_not_ready()

    with whatsapp.gateway(send_timeout=15) as gateway:
        real_send, sends = gateway.send, []

        def send(address, text, **kwargs):
            sends.append(address)
            assert len(sends) <= 5, "the sender keeps calling /send"
            return real_send(address, text, **kwargs)

        gateway.send = send
        sender = Sender(gateway, sleep=lambda seconds: None)
        sender.run_once()  # the /send is held; the run ends with the incident check
        sender.run_once()

        # One mail per incident: the session, in the gateway's words, and the reply
        # waiting since its approval (a hold keeps that time).
        by_subject = {m.subject.split("] ")[-1]: m.body for m in mail.outbox}
        assert sorted(by_subject) == ["Replies are not going out", "WhatsApp session not valid"]
        assert NOT_READY_ERROR in by_subject["WhatsApp session not valid"]
        assert (
            "1 approved reply has waited more than 10 minutes"
            in by_subject["Replies are not going out"]
        )
        assert not any("phone" in body or "outcome unknown" in body for body in by_subject.values())
        assert AuditEvent.objects.filter(action="mark_failed").count() == 0

        fake_gateway.scan()
        # The receiving loop's /status watch records the session ready again.
        session_check.check(gateway, actor="receiver", source=Source.WORKER)
        sender.run_once()

    assert Message.objects.get(pk=reply.pk).status == Status.SENT
    assert alerts.open_incidents() == []
    assert len(mail.outbox) == 2


@pytest.mark.django_db(transaction=True)
def test_two_pollers_at_once_still_send_one_mail(settings, tmp_path):
    settings.ADMINS = [("Ops", "ops@example.com")]
    valid_session(settings, tmp_path)
    apply({"event": "disconnected", "reason": "LOGOUT"})
    start = threading.Barrier(4)
    errors = []

    def poll():
        try:
            start.wait()
            alerts.check_incidents()
        except Exception as exc:  # a poller that lost the race must not fail
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(mail.outbox) == 1
    assert Incident.objects.filter(resolved_at__isnull=True).count() == 1


def test_a_mail_that_cannot_be_sent_keeps_the_incident_open_without_a_storm(healthy, settings):
    settings.EMAIL_BACKEND = "tests.test_alerts.BrokenBackend"
    apply({"event": "disconnected", "reason": "LOGOUT"})

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


# --- Drafts overdue for a reviewer ------------------------------------------------------


def _drafted(minutes_ago: float) -> Message:
    draft = make_reply()
    Message.objects.filter(pk=draft.pk).update(
        timestamp=clock.now() - timedelta(minutes=minutes_ago)
    )
    return draft


def test_drafts_overdue_longer_than_the_setting_mail_once_and_resolve(healthy, settings):
    settings.ALERT_OVERDUE_MINUTES = 30
    draft = _drafted(29)
    _drafted(5)
    alerts.check_incidents()
    assert mail.outbox == []  # 29 minutes: not yet

    later = clock.now() + timedelta(minutes=2)
    for _ in range(3):  # three polls
        alerts.check_incidents(now=later)
    [message] = mail.outbox
    assert "Drafts are waiting for a reviewer" in message.subject
    assert "1 draft has waited more than 30 minutes for a reviewer" in message.body
    [incident] = alerts.open_incidents()
    assert incident.kind == alerts.DRAFTS_OVERDUE

    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    alerts.check_incidents(now=later)
    assert alerts.open_incidents() == []
    assert Incident.objects.get(kind=alerts.DRAFTS_OVERDUE).resolved_at == later


def test_a_new_overdue_incident_mails_again_and_counts_every_late_draft(healthy, settings):
    settings.ALERT_OVERDUE_MINUTES = 30
    first = _drafted(31)
    alerts.check_incidents()
    lifecycle.reject(first.message_id, actor="dana", source=Source.WEB)
    alerts.check_incidents()
    _drafted(45)
    _drafted(40)
    make_reply()  # fresh
    alerts.check_incidents()
    assert len(mail.outbox) == 2
    assert "2 drafts have waited more than 30 minutes" in mail.outbox[1].body
    assert Incident.objects.filter(kind=alerts.DRAFTS_OVERDUE).count() == 2


def test_decided_and_undated_drafts_are_not_overdue(healthy, settings):
    settings.ALERT_OVERDUE_MINUTES = 30
    make_reply(Status.SENT, timestamp=clock.local_iso(clock.now() - timedelta(hours=3)))
    undated = make_reply()
    Message.objects.filter(pk=undated.pk).update(timestamp=None)
    alerts.check_incidents()
    assert mail.outbox == []
