"""The repeat rules: the same news again is counted or kept quiet, a change is said or written once.

Pins not found elsewhere (issue 13 item 5). Rules already pinned are not repeated here:
- session verbs: tests/test_session_verbs.py (no row for the same verdict, `repeats`,
  `last_validation` moving on);
- `lifecycle.release`: tests/test_lifecycle.py (`send_held` once per hold);
- alerts: tests/test_alerts.py (one mail per incident, a new one after it cleared).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from statecore import alerts, clock, lifecycle, session, whatsapp
from statecore.models import Incident, Message, Source, Status
from statecore.receiving import Receiver
from statecore.sending import Sender
from statecore.whatsapp import State
from statecore.whatsapp import Status as GatewayStatus
from tests.factories import make_reply
from tests.session_helpers import use_gateway, valid_session

AUTO = {"actor": "receiver", "source": Source.WORKER}
PERSON = {"actor": "dana", "source": Source.WEB}
NOT_READY = GatewayStatus(State.DISCONNECTED, "the gateway reports WhatsApp is not ready")
READY = GatewayStatus(State.READY, "WhatsApp is logged in and connected")


class Said(list):
    """Collects the lines a person reads (a worker's `say`)."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def count(self, words: str) -> int:  # type: ignore[override]
        return sum(words in line for line in self)


@pytest.fixture
def ready(db, settings, tmp_path, fake_gateway):
    """A valid session, the stand-in as api_endpoint, no assistant, admins to mail."""
    settings.ASSISTANT = ""
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.SEND_DELAY_ALERT_MINUTES = 10
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    return fake_gateway


# --- (1) the session verbs: what a repeat counts ---------------------------------------


def test_a_change_of_status_starts_the_repeat_count_again(db):
    for _ in range(3):
        session.record_status(NOT_READY, **AUTO)
    assert session.gateway_state().repeats == 2

    session.record_status(READY, **AUTO)
    assert session.gateway_state().repeats == 0
    session.record_status(READY, **AUTO)
    assert session.gateway_state().repeats == 1


# --- (4) the receiver: each change said once -------------------------------------------


def test_an_unreachable_gateway_is_said_once_per_outage_and_its_return_once(ready):
    ready.go_not_ready()  # not ready: the session is watched every round
    with whatsapp.gateway(status_timeout=5.0) as gateway:
        worker = Receiver(gateway, say=Said())
        worker.run_once()

        ready.set_status_failure("drop")  # the connection closes: no answer at all
        worker.run_once()
        worker.run_once()
        assert worker.say.count("did not answer /status") == 1

        ready.set_status_failure(None)
        worker.run_once()
        worker.run_once()
        assert worker.say.count("The gateway answers again.") == 1

        # The same failure after it answered in between is a new outage: said again.
        ready.set_status_failure("drop")
        worker.run_once()
        worker.run_once()
        assert worker.say.count("did not answer /status") == 2
        assert worker.say.count("The gateway answers again.") == 1


def test_what_the_gateway_says_is_said_once_per_change(ready):
    ready.go_not_ready()
    with whatsapp.gateway(status_timeout=5.0) as gateway:
        worker = Receiver(gateway, say=Said())
        worker.run_once()
        worker.run_once()
        assert worker.say.count("The gateway says:") == 1

        ready.scan()
        worker.run_once()
        worker.run_once()  # ready, but the first ready round is watched too
        assert worker.say.count("The gateway says:") == 2
        assert worker.say.count("Session valid") == 1


def test_a_pull_that_works_again_is_said_once(ready):
    with whatsapp.gateway(status_timeout=5.0) as gateway:
        worker = Receiver(gateway, say=Said())
        ready.set_messages_failure("error500")
        worker.run_once()
        worker.run_once()
        assert worker.say.count("Could not pull") == 1

        ready.set_messages_failure(None)
        worker.run_once()
        worker.run_once()
        assert worker.say.count("Customers' messages are pulled again.") == 1

        ready.set_messages_failure("error500")
        worker.run_once()
        assert worker.say.count("Could not pull") == 2


# --- (5) the sender: each pause said once ----------------------------------------------


def test_the_sender_says_each_pause_once_and_each_resume_once(ready):
    with whatsapp.gateway(status_timeout=5.0, send_timeout=5.0) as gateway:
        sender = Sender(gateway, say=Said(), sleep=lambda seconds: None)
        sender.run_once()
        assert sender.say.count("Sending again") == 0  # never paused: nothing to say

        # A person's mark: the sender pauses without asking the gateway.
        session.mark_invalid("checking the phone", by_person=True, **PERSON)
        sender.run_once()
        sender.run_once()
        assert sender.say.count("Not sending: ") == 1

        session.record_status(READY, by_person=True, **PERSON)
        sender.run_once()
        sender.run_once()
        assert sender.say.count("Sending again: the session is valid.") == 1

        # The same reason after a resume is a new pause: said again.
        session.mark_invalid("checking the phone", by_person=True, **PERSON)
        sender.run_once()
        assert sender.say.count("Not sending: ") == 2
        assert "checking the phone" in [line for line in sender.say if "Not sending" in line][-1]


# --- The send-delay alert for an approved reply without an approval time ---------------
#
# An import can leave `status_updated_at` NULL. The sender takes such a reply at
# once (no Undo window to wait out), so one still approved at the next check is
# treated as late at once: it opens the incident without waiting
# SEND_DELAY_ALERT_MINUTES, and the mail names no "oldest approved at" time.


def _undated_reply() -> Message:
    # Stored as approved straight away, as an import stores it: no approval time.
    reply = make_reply(Status.APPROVED)
    Message.objects.filter(pk=reply.pk).update(status_updated_at=None)
    return reply


def test_an_undated_approved_reply_opens_the_delay_incident_at_once_and_mails_once(ready):
    reply = _undated_reply()

    alerts.check_incidents()
    alerts.check_incidents()

    [message] = mail.outbox
    assert "Replies are not going out" in message.subject
    assert "1 approved reply has waited more than 10 minutes to be sent." in message.body
    assert "oldest approved at" not in message.body
    [incident] = alerts.open_incidents()
    assert incident.kind == alerts.SEND_DELAY

    Message.objects.filter(pk=reply.pk).update(status=Status.SENT)
    alerts.check_incidents()
    assert alerts.open_incidents() == []
    assert len(mail.outbox) == 1


def test_undated_and_late_dated_replies_count_together_and_the_dated_one_names_the_time(ready):
    _undated_reply()
    dated = make_reply(Status.APPROVED)
    approved_at = clock.now() - timedelta(minutes=30)
    Message.objects.filter(pk=dated.pk).update(status_updated_at=approved_at)

    alerts.check_incidents()

    [message] = mail.outbox
    assert "2 approved replies have waited more than 10 minutes" in message.body
    assert f"the oldest approved at {clock.local_iso(approved_at)}" in message.body
    assert Incident.objects.get().kind == alerts.SEND_DELAY


def test_a_reply_approved_just_now_opens_no_delay_incident(ready):
    reply = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(reply.message_id, **PERSON)
    alerts.check_incidents()
    assert mail.outbox == []
    assert alerts.open_incidents() == []
