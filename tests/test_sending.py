"""The sender against the stand-in of the scripts' service: each approved reply goes out at most once.

Every answer of GATEWAY.md section 1 to a `/send` goes through the Sender
here, with what it does to the reply: `sent`; `not_sent`/`hold` (released:
still approved, in its place, sent once the session is back); `not_sent`/
`final` (failed at once); `maybe_sent` (failed with OUTCOME_UNKNOWN, never sent
again by itself); a refused connection (retried with the retry_config waits,
then held). The stand-in cannot carry our reply id (no gateway honours an
Idempotency-Key), so sends are counted by the number they went to: each
reply here has its own.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection, transaction

from statecore import clock, lifecycle, loops, rootstate, sending, session, session_check, whatsapp
from statecore.models import (
    AuditEvent,
    Heartbeat,
    Incident,
    LogEntry,
    Message,
    Source,
    StateRoot,
    Status,
)
from statecore.sending import OUTCOME_UNKNOWN, Sender, retry_delays, send_with_retries
from statecore.session_events import apply_event
from statecore.whatsapp import Next, Sent
from statecore.whatsapp.standin_wwebjs import DEFAULT_SEND_FAILURE, NOT_READY_ERROR
from statecore.whatsapp.wwebjs import WwebjsGateway
from statecore.whatsapp.wwebjs_events import parse_event
from tests.factories import make_incoming, make_reply
from tests.session_helpers import REPO, child_env, manage, set_session, use_gateway, valid_session

# Generous: a loaded machine must not turn a slow "ok" into an outcome-unknown timeout.
TIMEOUT = 15.0
SHORT = 0.5  # the send timeout where the gateway hangs: half a second, not thirty
GROUP = "120363041234567890@g.us"
HIDDEN = "24816190603455@lid"
CANNOT_REACH_GROUP = (
    "not sent: this gateway cannot reach a group (it can only send to phone numbers)"
)
CANNOT_REACH_HIDDEN = "not sent: this gateway cannot reach a contact whose number is hidden (@lid)"
HELD_WORDS = f"the gateway says: {NOT_READY_ERROR}"


def _prepare(settings, tmp_path, gateway):
    settings.APPROVAL_GRACE_SECONDS = 0
    # No pacing here: the pacing tests set their own interval.
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    valid_session(settings, tmp_path)
    use_gateway(gateway.url)
    return gateway


@pytest.fixture
def ready(db, settings, tmp_path, fake_gateway):
    """A valid session, the stand-in as api_endpoint, no Undo window, no pacing."""
    return _prepare(settings, tmp_path, fake_gateway)


@pytest.fixture
def ready_tx(transactional_db, settings, tmp_path, fake_gateway):
    """The same, committed for real: other threads and processes see it."""
    return _prepare(settings, tmp_path, fake_gateway)


class Recorder:
    """Stands in for time.sleep (the retry and pacing waits) and collects what the sender says."""

    def __init__(self, *, real: bool = False):
        self.slept: list[float] = []
        self.said: list[str] = []
        self.real = real

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.real:
            time.sleep(seconds)

    def say(self, line: str) -> None:
        self.said.append(line)


class Runaway(AssertionError):
    """A sender that keeps calling /send (a held reply claimed again at once, say)."""


def make_sender(
    recorder: Recorder | None = None, *, timeout: float = TIMEOUT, max_sends: int = 50, **kwargs
) -> Sender:
    """A Sender with the factory's gateway (the state's api_endpoint).

    More than `max_sends` /send calls fail the test instead of looping forever."""
    recorder = recorder or Recorder()
    gateway = whatsapp.gateway(status_timeout=timeout, send_timeout=timeout)
    real_send, calls = gateway.send, []

    def send(address, text, **kw):
        calls.append(address)
        if len(calls) > max_sends:
            raise Runaway(f"more than {max_sends} /send calls from one sender")
        return real_send(address, text, **kw)

    gateway.send = send
    return Sender(gateway, sleep=recorder.sleep, say=recorder.say, **kwargs)


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def log_entries() -> list[dict]:
    return [json.loads(e.raw) for e in LogEntry.objects.order_by("pk")]


def sends_for(gateway, reply: Message) -> list:
    """The /send calls that reached the stand-in for this reply (by its number)."""
    return [call for call in gateway.sends if call.number == reply.recipient]


def held_rows(reply: Message) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(message_id=reply.message_id, action="send_held"))


def nothing_says_outcome_unknown(recorder: Recorder) -> bool:
    words = [OUTCOME_UNKNOWN, "outcome unknown", "check the phone"]
    texts = [*recorder.said, *(e.raw for e in LogEntry.objects.all())]
    for event in AuditEvent.objects.all():
        texts += [event.note, json.dumps(event.detail)]
    texts += [json.dumps(m.data) for m in Message.objects.all()]
    return not any(word in text for word in words for text in texts)


def apply(body: dict) -> None:
    """A gateway event, as POST /gateway/events would apply it."""
    apply_event(parse_event(json.dumps(body).encode()))


def revalidate() -> session_check.GatewayCheck:
    """What the receiving loop does while the session is down: ask /status and record it."""
    with whatsapp.gateway() as gateway:
        return session_check.check(gateway, actor="receiver", source=Source.WORKER)


# --- retry_delays and send_with_retries ------------------------------------------------

EXPONENTIAL = {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True}
CONSTANT = {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": False}


@pytest.mark.parametrize(
    ("config", "delays"),
    [
        ({}, [2.0, 4.0]),
        (None, [2.0, 4.0]),
        (EXPONENTIAL, [2.0, 4.0]),
        (CONSTANT, [2.0, 2.0]),
        ({"max_retries": 5, "retry_delay_seconds": 1.5}, [1.5, 3.0, 6.0, 12.0]),
        ({"max_retries": 1}, []),
    ],
)
def test_retry_delays_follow_the_retry_config(config, delays):
    assert retry_delays(config) == delays


@pytest.mark.parametrize(
    "config",
    [
        {"max_retries": 0},
        {"max_retries": True},
        {"max_retries": "3"},
        {"retry_delay_seconds": -1},
        {"retry_delay_seconds": float("inf")},
        {"exponential_backoff": "yes"},
    ],
)
def test_retry_delays_reject_a_nonsense_config(config):
    with pytest.raises(ValueError, match="retry_config"):
        retry_delays(config)


def _send(fake, sleep, *, timeout: float = TIMEOUT, delays=(2.0, 4.0)):
    with WwebjsGateway(fake.url, status_timeout=timeout, send_timeout=timeout) as gateway:
        return send_with_retries(
            gateway,
            "923001234567",
            "Your order is ready",
            reply_id="r1",
            delays=list(delays),
            sleep=sleep,
        )


def test_send_with_retries_sends_once_without_waiting(fake_gateway):
    sleeps: list[float] = []

    outcome, attempts = _send(fake_gateway, sleeps.append)

    assert (outcome.kind, attempts, sleeps) == (Sent.SENT, 1, [])
    [call] = fake_gateway.delivered()
    assert outcome.message_id == call.message_id


@pytest.mark.parametrize(
    ("mode", "kind", "next_"),
    [
        ("not_ready", Sent.NOT_SENT, Next.HOLD),
        ("send_failed", Sent.MAYBE_SENT, None),
        ("error500", Sent.MAYBE_SENT, None),
        ("hang", Sent.MAYBE_SENT, None),
        ("garbage", Sent.MAYBE_SENT, None),
        ("drop", Sent.MAYBE_SENT, None),
    ],
)
def test_send_with_retries_retries_nothing_but_a_refused_connection(
    fake_gateway, mode, kind, next_
):
    fake_gateway.set_send_mode(mode)
    sleeps: list[float] = []

    outcome, attempts = _send(fake_gateway, sleeps.append, timeout=SHORT)

    assert (outcome.kind, outcome.next, attempts, sleeps) == (kind, next_, 1, [])
    assert len(fake_gateway.sends) == 1


def test_send_with_retries_tries_a_down_gateway_max_retries_times(fake_gateway):
    fake_gateway.set_send_mode("down")
    sleeps: list[float] = []

    outcome, attempts = _send(fake_gateway, sleeps.append)

    assert (outcome.kind, outcome.next, attempts) == (Sent.NOT_SENT, Next.RETRY, 3)
    assert "unreachable" in outcome.error
    assert sleeps == [2.0, 4.0]
    fake_gateway.set_send_mode("ok")
    assert fake_gateway.sends == []


@pytest.mark.parametrize(("back_as", "kind"), [("ok", Sent.SENT), ("error500", Sent.MAYBE_SENT)])
def test_send_with_retries_stops_at_the_first_answer_after_the_gateway_comes_back(
    fake_gateway, back_as, kind
):
    fake_gateway.set_send_mode("down")
    sleeps: list[float] = []

    def wait_then_come_back(seconds: float) -> None:
        sleeps.append(seconds)
        fake_gateway.set_send_mode(back_as)

    outcome, attempts = _send(fake_gateway, wait_then_come_back)

    assert (outcome.kind, attempts, sleeps) == (kind, 2, [2.0])
    assert len(fake_gateway.sends) == 1


# --- One reply, each answer of /send ---------------------------------------------------


def test_ok_is_sent_once_with_the_short_message_id_as_given(ready):
    reply = make_reply(Status.APPROVED, body="Your order is ready ✓")
    recorder = Recorder()

    summary = make_sender(recorder).run_once()

    reply = fresh(reply)
    assert (summary.sent, summary.failed, summary.held) == (1, 0, 0)
    assert reply.status == Status.SENT
    [call] = ready.sends
    assert (call.number, call.message, call.chat_id, call.delivered) == (
        reply.recipient,
        "Your order is ready ✓",
        f"{reply.recipient}@c.us",
        True,
    )
    audit = AuditEvent.objects.get(message_id=reply.message_id, action="mark_sent")
    assert audit.source == Source.WORKER
    # whatsapp-web.js's short id, kept exactly as the service gave it.
    assert call.message_id.startswith("3EB0")
    assert audit.detail["gateway_message_id"] == call.message_id
    assert audit.detail["attempts"] == 1
    [entry] = log_entries()
    assert list(entry) == ["timestamp", "recipient", "message", "status", "message_id", "error"]
    assert (entry["status"], entry["message_id"], entry["error"]) == (
        "success",
        call.message_id,
        None,
    )
    assert (entry["recipient"], entry["message"]) == (reply.recipient, "Your order is ready ✓")
    assert rootstate.statistics()["total_sent"] == 1
    assert recorder.slept == []
    assert f"{reply.message_id}: sent" in recorder.said


def test_not_ready_holds_the_reply_and_it_goes_out_once_when_the_session_is_back(ready):
    reply = make_reply(Status.APPROVED)
    before = fresh(reply)
    ready.go_not_ready()  # /status says isReady false; /send answers 400 "not ready"
    recorder = Recorder()
    sender = make_sender(recorder)

    summary = sender.run_once()

    # Held: nothing went out, the reply waits in its place.
    held = fresh(reply)
    assert (summary.sent, summary.failed, summary.held) == (0, 0, 1)
    assert held.status == Status.APPROVED
    assert (held.claimed_by, held.claimed_at, held.lease_until) == ("", None, None)
    assert held.status_updated_at == before.status_updated_at
    assert held.position == before.position
    assert "error" not in held.data
    [call] = sends_for(ready, reply)
    assert (call.mode, call.delivered) == ("ok", False)
    [row] = held_rows(reply)
    assert (row.from_status, row.to_status) == (Status.APPROVED, Status.APPROVED)
    assert (row.actor, row.source) == (sender.worker, Source.WORKER)
    assert NOT_READY_ERROR in row.note
    assert LogEntry.objects.count() == 0
    # The session is down, in the gateway's words: not a QR, not a logout.
    stored = session.current()
    assert stored["session_valid"] is False
    assert stored["invalidation_reason"] == HELD_WORDS
    assert stored["requires_qr"] is False and stored["authenticated"] is True
    assert rootstate.statistics().get("total_failed", 0) == 0

    # The next poll asks the gateway itself (still not ready), sends nothing and
    # writes no second hold.
    sender.run_once()
    assert len(sends_for(ready, reply)) == 1
    assert len(held_rows(reply)) == 1
    assert "not ready" in [line for line in recorder.said if line.startswith("Not sending")][-1]

    # The lease expiry never fails a released reply, however late it runs.
    assert sending.expire_leases(actor="other", now=clock.now() + timedelta(days=1)) == []
    assert fresh(reply).status == Status.APPROVED

    # The phone is back; the receiving loop's /status watch records it; the reply goes once.
    ready.scan()
    assert revalidate().report.valid
    summary = sender.run_once()
    sender.run_once()

    sent = fresh(reply)
    assert summary.sent == 1 and sent.status == Status.SENT
    assert [c.delivered for c in sends_for(ready, reply)] == [False, True]
    assert [c.number for c in ready.delivered()] == [reply.recipient]
    assert [e["status"] for e in log_entries()] == ["success"]
    assert len(held_rows(reply)) == 1
    assert "Sending again: the session is valid." in recorder.said
    assert nothing_says_outcome_unknown(recorder)


def test_a_sender_running_alone_sends_once_the_gateway_is_ready_again(ready):
    reply = make_reply(Status.APPROVED)
    ready.set_send_mode("not_ready")
    sender = make_sender()
    assert sender.run_once().held == 1
    assert session.check(session.current()).valid is False
    # No receiving loop and no person: the sender asks the gateway itself each poll.
    ready.set_send_mode("ok")
    assert sender.run_once().sent == 1
    assert len(ready.delivered()) == 1
    assert fresh(reply).status == Status.SENT


def test_a_persons_mark_is_not_lifted_by_the_sender(ready):
    reply = make_reply(Status.APPROVED)
    session.mark_invalid("checking the phone", actor="dana", source=Source.WEB, by_person=True)
    sender = make_sender()
    summary = sender.run_once()
    assert summary.sent == 0 and "checking the phone" in summary.paused
    assert ready.calls()["status"] == 0
    assert fresh(reply).status == Status.APPROVED


def test_a_second_hold_with_nothing_in_between_writes_no_second_row(ready):
    reply = make_reply(Status.APPROVED)
    # /status keeps saying ready; only /send answers "not ready".
    ready.set_send_mode("not_ready")
    recorder = Recorder()
    sender = make_sender(recorder)

    sender.run_once()
    assert revalidate().report.valid
    summary = sender.run_once()

    assert summary.held == 1
    assert [c.mode for c in sends_for(ready, reply)] == ["not_ready", "not_ready"]
    assert len(held_rows(reply)) == 1
    assert fresh(reply).status == Status.APPROVED
    assert LogEntry.objects.count() == 0
    assert session.current()["invalidation_reason"] == HELD_WORDS
    assert nothing_says_outcome_unknown(recorder)


def test_a_held_reply_keeps_its_place_and_the_rest_wait_with_it(ready):
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    ready.go_not_ready()
    sender = make_sender()

    summary = sender.run_once()

    # One /send told the sender the session is down: the others were not tried.
    assert summary.held == 1 and len(ready.sends) == 1
    assert ready.sends[0].number == replies[0].recipient
    assert all(fresh(r).status == Status.APPROVED and not fresh(r).claimed_by for r in replies)

    ready.scan()
    revalidate()
    sender.run_once()

    assert [c.number for c in ready.delivered()] == [r.recipient for r in replies]
    assert all(fresh(r).status == Status.SENT for r in replies)


def test_a_reply_without_a_recipient_or_text_fails_without_a_call(ready):
    no_recipient = make_reply(Status.APPROVED)
    no_text = make_reply(Status.APPROVED)
    Message.objects.filter(pk=no_recipient.pk).update(recipient="")
    Message.objects.filter(pk=no_text.pk).update(body="")

    summary = make_sender().run_once()

    assert summary.failed == 2
    assert fresh(no_recipient).status == fresh(no_text).status == Status.FAILED
    assert fresh(no_recipient).data["error"] == "not sent: the reply has no recipient"
    assert fresh(no_text).data["error"] == "not sent: the reply has no text"
    assert ready.calls()["send"] == 0
    assert session.check(session.current()).valid


def test_the_services_missing_fields_answer_is_final(ready):
    with whatsapp.gateway() as gateway:
        outcome = gateway.send("923001234567", "", reply_id="r1")

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert outcome.error == "the gateway refused it: Missing required fields: number and message"
    # It reached the service, which refused it before any send.
    assert ready.calls()["send"] == 1 and ready.sends == []


class BlankingGateway(WwebjsGateway):
    """Posts every reply with an empty text, so the service answers its own 400 Missing fields."""

    def send(self, address, text, *, reply_id=""):
        return super().send(address, "", reply_id=reply_id)


def test_a_missing_fields_answer_through_the_sender_fails_the_reply_at_once(ready):
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()
    sender = Sender(
        BlankingGateway(ready.url, send_timeout=TIMEOUT), sleep=recorder.sleep, say=recorder.say
    )

    summary = sender.run_once()
    sender.run_once()

    reply = fresh(reply)
    assert summary.failed == 1 and reply.status == Status.FAILED
    assert reply.data["error"] == (
        "not sent: the gateway refused it: Missing required fields: number and message"
    )
    assert ready.calls()["send"] == 1 and recorder.slept == []
    assert [e["status"] for e in log_entries()] == ["failed"]
    assert held_rows(reply) == []
    assert session.check(session.current()).valid
    assert nothing_says_outcome_unknown(recorder)


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("send_failed", f"HTTP 400: Failed to send message: {DEFAULT_SEND_FAILURE}"),
        ("error500", "HTTP 500: Internal server error"),
        ("hang", f"did not answer within {SHORT:g} s"),
        ("garbage", "HTTP 200: '<html><body>Gateway says hi</body></html>'"),
        ("drop", "broke off without an answer"),
    ],
)
def test_a_maybe_sent_answer_fails_with_outcome_unknown_and_is_never_sent_again(ready, mode, words):
    ready.set_send_mode(mode)
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()
    sender = make_sender(recorder, timeout=SHORT)

    summary = sender.run_once()
    ready.set_send_mode("ok")
    sender.run_once()  # a later poll leaves it alone
    make_sender(timeout=SHORT).run_once()  # and so does another sender

    reply = fresh(reply)
    assert summary.failed == 1
    assert reply.status == Status.FAILED
    assert reply.data["error"].startswith(OUTCOME_UNKNOWN + " (the gateway ")
    assert words in reply.data["error"]
    # Past the point of no return: the customer may have it. One /send, never a second.
    [call] = sends_for(ready, reply)
    assert call.mode == mode and call.delivered
    assert recorder.slept == []
    assert held_rows(reply) == []
    assert log_entries()[-1]["error"] == reply.data["error"]
    audit = AuditEvent.objects.get(message_id=reply.message_id, action="mark_failed")
    assert audit.detail["outcome_unknown"] is True
    # Not news about the session.
    assert session.check(session.current()).valid


@pytest.mark.parametrize(
    ("config", "delays"),
    [
        (EXPONENTIAL, [2.0, 4.0]),
        (CONSTANT, [2.0, 2.0]),
        ({"max_retries": 1, "retry_delay_seconds": 2, "exponential_backoff": True}, []),
    ],
)
def test_a_gateway_that_is_down_is_retried_with_the_configured_waits_then_held(
    ready, config, delays
):
    rootstate.update_part("retry_config", lambda _: config, actor="t", source="api", action="set")
    reply = make_reply(Status.APPROVED)
    before = fresh(reply)
    recorder = Recorder()
    sender = make_sender(recorder)
    ready.set_send_mode("down")  # connection refused: certainly not sent

    summary = sender.run_once()
    sender.run_once()  # still down: held again, never failed

    held = fresh(reply)
    assert summary.held == 1 and summary.failed == 0
    assert held.status == Status.APPROVED
    assert (held.claimed_by, held.lease_until) == ("", None)
    assert (held.status_updated_at, held.position) == (before.status_updated_at, before.position)
    assert recorder.slept == delays + delays
    [row] = held_rows(reply)
    assert "unreachable" in row.note
    assert LogEntry.objects.count() == 0
    # A refused connection says nothing about WhatsApp: the session is left as it was.
    assert session.check(session.current()).valid

    ready.set_send_mode("ok")
    sender.run_once()

    assert fresh(reply).status == Status.SENT
    assert [c.number for c in ready.delivered()] == [reply.recipient]
    assert nothing_says_outcome_unknown(recorder)


def test_a_gateway_back_during_the_retry_wait_sends_it_after_one_wait(ready):
    reply = make_reply(Status.APPROVED)
    ready.set_send_mode("down")
    slept: list[float] = []

    def wait_while_it_comes_back(seconds: float) -> None:
        slept.append(seconds)
        ready.set_send_mode("ok")

    sender = make_sender()
    sender.sleep = wait_while_it_comes_back
    sender.run_once()

    assert fresh(reply).status == Status.SENT
    assert slept == [2.0]
    assert len(sends_for(ready, reply)) == 1
    assert AuditEvent.objects.get(action="mark_sent").detail["attempts"] == 2


def test_a_person_retrying_an_unknown_outcome_sends_it_again(ready):
    ready.set_send_mode("error500")
    reply = make_reply(Status.APPROVED)
    sender = make_sender()
    sender.run_once()
    ready.set_send_mode("ok")

    lifecycle.retry(reply.message_id, actor="admin", source=Source.WEB, note="not on the phone")
    sender.run_once()

    assert fresh(reply).status == Status.SENT
    assert len(sends_for(ready, reply)) == 2


# --- Addresses this service cannot reach -------------------------------------------------


def _answering(address: str, **reply_extra) -> Message:
    incoming = make_incoming(**{"from": address, "isGroup": address.endswith("@g.us")})
    return make_reply(Status.APPROVED, incoming=incoming, **reply_extra)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        # The old assistant's recipient: the chat's bare digits, the `@...` cut off.
        pytest.param(lambda: _answering(GROUP), CANNOT_REACH_GROUP, id="group-digits"),
        pytest.param(lambda: _answering(HIDDEN), CANNOT_REACH_HIDDEN, id="lid-digits"),
        # A recipient given as the full address.
        pytest.param(
            lambda: _answering(GROUP, recipient=GROUP), CANNOT_REACH_GROUP, id="group-address"
        ),
        pytest.param(
            lambda: make_reply(Status.APPROVED, recipient=HIDDEN),
            CANNOT_REACH_HIDDEN,
            id="lid-address",
        ),
    ],
)
def test_a_reply_this_gateway_cannot_reach_is_refused_before_send(ready, make, error):
    reply = make()
    recorder = Recorder()

    summary = make_sender(recorder).run_once()

    reply = fresh(reply)
    assert summary.failed == 1
    assert reply.status == Status.FAILED
    assert reply.data["error"] == error
    assert ready.calls()["send"] == 0 and ready.sends == []
    assert recorder.slept == []
    assert log_entries()[-1]["error"] == error
    assert nothing_says_outcome_unknown(recorder)


def test_a_reply_to_a_number_goes_out_beside_one_that_cannot(ready):
    group = _answering(GROUP)
    person = make_reply(Status.APPROVED)

    make_sender().run_once()

    assert fresh(group).status == Status.FAILED
    assert fresh(person).status == Status.SENT
    assert [c.number for c in ready.sends] == [person.recipient]


# --- Pacing ----------------------------------------------------------------------------


def _timed(sender: Sender) -> list[float]:
    """When each /send left the sender (monotonic), recorded around the gateway's send."""
    arrivals: list[float] = []
    real_send = sender.gateway.send

    def send(address, text, **kwargs):
        arrivals.append(time.monotonic())
        return real_send(address, text, **kwargs)

    sender.gateway.send = send
    return arrivals


def test_two_sends_are_at_least_the_minimum_interval_apart(ready, settings, monkeypatch):
    settings.SEND_MIN_INTERVAL_SECONDS = 0.4
    # The jitter pinned halfway (0.4 * 1.125 = 0.45 s), so the measured gap cannot flake.
    monkeypatch.setattr(sending.random, "uniform", lambda low, high: (low + high) / 2)
    replies = [make_reply(Status.APPROVED) for _ in range(2)]
    recorder = Recorder(real=True)
    sender = make_sender(recorder)
    arrivals = _timed(sender)

    sender.run_once()

    assert [c.number for c in ready.delivered()] == [r.recipient for r in replies]
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.4
    # One pacing wait (before the second send), no retry wait.
    [wait] = recorder.slept
    assert 0 < wait <= 0.45


def test_pacing_waits_the_interval_plus_a_little_jitter_between_sends(ready, settings):
    settings.SEND_MIN_INTERVAL_SECONDS = 10
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    recorder = Recorder()

    make_sender(recorder).run_once()

    assert all(fresh(r).status == Status.SENT for r in replies)
    # None before the first send; before each later one, 10 s less the time the
    # previous one took, plus up to 25 % jitter.
    assert len(recorder.slept) == 2
    assert all(5 < wait <= 12.5 for wait in recorder.slept), recorder.slept


def test_the_pacing_jitter_is_drawn_each_time_and_added(ready, settings, monkeypatch):
    settings.SEND_MIN_INTERVAL_SECONDS = 10
    drawn: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    monkeypatch.setattr(sending.random, "uniform", highest)
    for _ in range(3):
        make_reply(Status.APPROVED)
    recorder = Recorder()

    make_sender(recorder).run_once()

    assert drawn == [(0, sending.PACING_JITTER)] * 2
    # The most jitter: 12.5 s less the time the previous send took (more than 10 s).
    assert all(10 < wait <= 12.5 for wait in recorder.slept), recorder.slept


def test_pacing_spans_polls_and_holds_a_backlog_to_a_human_pace(ready, settings):
    settings.SEND_MIN_INTERVAL_SECONDS = 10
    first, second = (make_reply(Status.APPROVED) for _ in range(2))
    ready.go_not_ready()
    recorder = Recorder()
    sender = make_sender(recorder)
    sender.run_once()  # the first is held
    ready.scan()
    revalidate()

    sender.run_once()  # the backlog drains

    assert [c.number for c in ready.delivered()] == [first.recipient, second.recipient]
    # A wait before each send after the held one: none in a burst.
    assert len(recorder.slept) == 2
    assert all(wait > 5 for wait in recorder.slept), recorder.slept


def test_no_pacing_wait_when_the_minimum_interval_is_zero(ready, settings):
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    recorder = Recorder()

    make_sender(recorder).run_once()

    assert all(fresh(r).status == Status.SENT for r in replies)
    assert recorder.slept == []


# --- Claims, order, the Undo window, leases ------------------------------------------


def test_replies_go_out_in_approval_order(ready):
    replies = [make_reply(Status.PENDING_APPROVAL) for _ in range(4)]
    for reply in reversed(replies):  # approved last-to-first
        lifecycle.approve(reply.message_id, actor="r", source=Source.WEB)

    make_sender().run_once()

    assert [c.number for c in ready.sends] == [r.recipient for r in reversed(replies)]


def test_a_reply_inside_the_undo_window_is_not_claimed(ready, settings):
    settings.APPROVAL_GRACE_SECONDS = 10
    old = make_reply(Status.APPROVED)
    Message.objects.filter(pk=old.pk).update(status_updated_at=clock.now() - timedelta(seconds=11))
    young = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(young.message_id, actor="r", source=Source.WEB)

    make_sender().run_once()

    assert fresh(old).status == Status.SENT
    assert fresh(young).status == Status.APPROVED
    assert fresh(young).claimed_at is None
    # ...so the reviewer's Undo still works.
    lifecycle.undo(young.message_id, actor="r", source=Source.WEB)


def test_a_reply_undone_and_approved_again_after_it_was_picked_keeps_its_new_undo_window(
    ready, settings
):
    settings.APPROVAL_GRACE_SECONDS = 10
    reply = make_reply(Status.APPROVED)
    Message.objects.filter(pk=reply.pk).update(
        status_updated_at=clock.now() - timedelta(seconds=11)
    )
    picked = list(sending.claimable(clock.now()).values_list("pk", flat=True))
    assert picked == [reply.pk]
    # Between the pick and the claim, the reviewer puts it back and approves again.
    lifecycle.reopen(reply.message_id, actor="r", source=Source.WEB)
    lifecycle.approve(reply.message_id, actor="r", source=Source.WEB)

    # The guarded claim of the row picked before is what must refuse it.
    assert sending._guarded_claim(picked[0], "worker-a", clock.now(), 60) is False
    assert fresh(reply).claimed_at is None
    lifecycle.undo(reply.message_id, actor="r", source=Source.WEB)


def test_the_claim_writes_a_lease_longer_than_the_longest_send(ready):
    reply = make_reply(Status.APPROVED)
    lease = sending.lease_seconds(sending.retry_delays(rootstate.retry_config()), 30.0)

    claimed = sending.claim_next("worker-a", lease=lease)

    assert claimed.pk == reply.pk
    assert claimed.claimed_by == "worker-a"
    assert claimed.lease_until - claimed.claimed_at == timedelta(seconds=lease)
    # All attempts timing out in every phase, plus every wait.
    assert lease > 3 * 3 * 30.0 + 2 + 4
    assert sending.claim_next("worker-b", lease=lease) is None
    with pytest.raises(lifecycle.MoveRefused) as refused:
        lifecycle.undo(reply.message_id, actor="r", source=Source.WEB)
    assert refused.value.code == lifecycle.Refusal.CLAIMED


def test_only_the_claim_holder_records_an_outcome(ready):
    reply = make_reply(Status.APPROVED)
    sending.claim_next("worker-a", lease=60)

    for record in (
        lambda: lifecycle.mark_sent(
            reply.message_id, actor="b", source=Source.WORKER, worker="worker-b"
        ),
        lambda: lifecycle.release(
            reply.message_id, "held", actor="b", source=Source.WORKER, worker="worker-b"
        ),
    ):
        with pytest.raises(lifecycle.MoveRefused) as refused:
            record()
        assert refused.value.code == lifecycle.Refusal.NOT_CLAIM_HOLDER
    assert fresh(reply).claimed_by == "worker-a"


def test_a_claim_takes_a_bounded_number_of_queries(ready, django_assert_max_num_queries):
    for _ in range(5):
        make_reply(Status.APPROVED)

    # A select, the guarded UPDATE, a fetch (+ a savepoint pair on PostgreSQL).
    with django_assert_max_num_queries(5):
        assert sending.claim_next("worker-a", lease=60) is not None


def test_sending_one_reply_takes_a_bounded_number_of_queries(ready, django_assert_max_num_queries):
    reply = make_reply(Status.APPROVED)
    sender = make_sender()
    claimed = sending.claim_next(sender.worker, lease=60)

    with django_assert_max_num_queries(14):
        sending.send_claimed(claimed, sender.gateway, worker=sender.worker, delays=[])
    assert fresh(reply).status == Status.SENT


def test_a_live_lease_is_left_alone_and_an_expired_one_is_failed(ready, monkeypatch):
    live = make_reply(Status.APPROVED)
    dead = make_reply(Status.APPROVED)
    sending.claim_next("worker-live", lease=3600)
    sending.claim_next("worker-dead", lease=60)
    later = clock.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)

    summary = make_sender().run_once()

    assert summary.expired == [dead.message_id]
    dead = fresh(dead)
    assert dead.status == Status.FAILED
    assert dead.data["error"].startswith(OUTCOME_UNKNOWN)
    assert "worker-dead" in dead.data["error"]
    assert fresh(live).status == Status.APPROVED
    assert fresh(live).claimed_by == "worker-live"
    assert ready.sends == []
    assert log_entries()[-1]["error"] == dead.data["error"]


# --- The session gate --------------------------------------------------------------


def test_a_stale_session_with_a_healthy_gateway_is_revalidated_once_and_sending_goes_on(ready):
    set_session(
        last_validation=(clock.now() - timedelta(minutes=31)).replace(tzinfo=None).isoformat()
    )
    assert not session.check(session.current()).valid
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    sender = make_sender()

    sender.run_once()
    sender.run_once()

    assert ready.calls()["status"] == 1
    assert all(fresh(r).status == Status.SENT for r in replies)
    assert session.check(session.current()).valid
    # The same verdict again (valid) is a repeat: `last_validation` moves on, no audit row.
    assert AuditEvent.objects.filter(action__startswith="session").count() == 0


def test_a_stale_session_with_a_not_ready_gateway_stops_the_sending(ready):
    set_session(last_validation="2020-01-01T00:00:00")
    ready.go_not_ready()
    reply = make_reply(Status.APPROVED)

    summary = make_sender().run_once()

    assert fresh(reply).status == Status.APPROVED
    assert ready.sends == []
    assert "not ready" in summary.paused
    assert session.current()["session_valid"] is False
    assert session.current()["requires_qr"] is False  # not ready is not "scan a QR"


def test_a_stale_session_with_a_qr_showing_stops_the_sending_and_asks_for_a_scan(ready):
    set_session(last_validation="2020-01-01T00:00:00")
    ready.show_qr()
    reply = make_reply(Status.APPROVED)

    summary = make_sender().run_once()

    assert fresh(reply).status == Status.APPROVED and ready.sends == []
    assert "scan the QR" in summary.paused
    assert session.current()["requires_qr"] is True


def test_a_stale_session_with_the_gateway_down_waits_and_changes_nothing(ready):
    before = set_session(last_validation="2020-01-01T00:00:00")
    ready.set_send_mode("down")
    reply = make_reply(Status.APPROVED)

    summary = make_sender().run_once()

    assert "the gateway did not answer" in summary.paused
    assert fresh(reply).status == Status.APPROVED
    assert fresh(reply).claimed_at is None
    assert session.current() == before


def _verdicts(monkeypatch) -> list:
    """Every session verdict computed (session.check), wherever it is asked for."""
    calls, real = [], session.check

    def counting(data, **kwargs):
        calls.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(session, "check", counting)
    return calls


@pytest.mark.parametrize(
    ("gateway_is", "verdicts"),
    [
        # Valid: judged once, before the first claim (no reply: no per-send look).
        ("valid", 1),
        # Stale, the gateway answers: once before asking, once of what it said.
        ("ready", 2),
        ("not ready", 2),
        # Stale, the gateway silent: nothing was recorded, the first verdict stands.
        ("down", 1),
    ],
)
def test_a_sender_poll_judges_the_session_once_per_thing_it_learns(
    ready, monkeypatch, gateway_is, verdicts
):
    if gateway_is == "valid":
        assert session.check(session.current()).valid  # as the fixture leaves it
    else:
        set_session(last_validation="2020-01-01T00:00:00")
    if gateway_is == "not ready":
        ready.go_not_ready()
    elif gateway_is == "down":
        ready.set_send_mode("down")
    sender = make_sender()
    calls = _verdicts(monkeypatch)

    sender.run_once()

    assert len(calls) == verdicts


def test_an_invalid_session_sends_nothing_says_so_once_and_all_goes_out_after_ready(ready):
    ready.show_qr()
    apply({"event": "disconnected", "reason": "LOGOUT"})
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    recorder = Recorder()
    sender = make_sender(recorder)

    sender.run_once()
    sender.run_once()

    assert ready.sends == []
    assert all(fresh(r).status == Status.APPROVED for r in replies)
    paused = [line for line in recorder.said if line.startswith("Not sending")]
    assert len(paused) == 1
    # The sender asked the gateway itself: WhatsApp is logged out, a QR waits.
    assert "scan the QR" in paused[0]
    assert Heartbeat.objects.get(name="sender").detail["state"] == "paused"

    ready.scan()
    apply({"event": "ready"})
    sender.run_once()

    assert [c.number for c in ready.sends] == [r.recipient for r in replies]
    assert all(fresh(r).status == Status.SENT for r in replies)
    assert "Sending again: the session is valid." in recorder.said


def test_the_heartbeat_says_what_waits_and_when_the_last_reply_went(ready, settings):
    settings.APPROVAL_GRACE_SECONDS = 3600
    old = make_reply(Status.APPROVED)
    Message.objects.filter(pk=old.pk).update(status_updated_at=clock.now() - timedelta(hours=2))
    young = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(young.message_id, actor="r", source=Source.WEB)
    sender = make_sender()

    sender.run_once()

    assert fresh(old).status == Status.SENT
    beat = Heartbeat.objects.get(name="sender")
    assert beat.detail["state"] == "idle"
    assert beat.detail["worker"] == sender.worker
    assert beat.detail["waiting"] == 1  # the young one, inside its Undo window
    assert beat.detail["last_sent"] == rootstate.statistics()["last_message_sent"]
    assert beat.detail["last_sent"] is not None
    assert clock.now() - beat.beat_at < timedelta(seconds=30)


# --- Several workers, a worker that dies mid-send, the loop ----------------------------


def _approved_replies(count: int) -> list[Message]:
    with transaction.atomic():  # they all become visible at once
        return [make_reply(Status.APPROVED) for _ in range(count)]


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_worker_threads_racing_over_200_replies_send_each_exactly_once(ready_tx):
    replies = _approved_replies(200)
    start = threading.Barrier(2)
    summaries: dict[str, sending.RunSummary] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            sender = make_sender(worker=name, max_sends=250)
            start.wait()
            summaries[name] = sender.run_once()
        except BaseException as exc:
            errors.append(exc)
            raise
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("worker-a", "worker-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a worker did not finish in 5 minutes"
    assert errors == []

    counts = Counter(call.number for call in ready_tx.sends)
    assert sorted(counts) == sorted(r.recipient for r in replies)
    assert set(counts.values()) == {1}
    assert Message.objects.filter(status=Status.SENT).count() == 200
    assert summaries["worker-a"].sent + summaries["worker-b"].sent == 200
    # Both really took part: the race was run, not one worker alone.
    assert summaries["worker-a"].sent > 0 and summaries["worker-b"].sent > 0
    assert LogEntry.objects.filter(outcome="success").count() == 200


def test_two_sender_processes_looping_over_200_replies_send_each_exactly_once(ready_tx, tmp_path):
    rootstate.update_part(
        "watcher_config",
        lambda old: {**old, "poll_interval_seconds": 1},
        actor="t",
        source="api",
        action="set",
    )
    env = child_env(tmp_path, APPROVAL_GRACE_SECONDS="0", SEND_MIN_INTERVAL_SECONDS="0")
    children = [
        subprocess.Popen(
            manage("send_approved", "--loop"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:  # both are up and polling before the replies appear
            assert child.stdout.readline().startswith("Sender sender@")
        replies = _approved_replies(200)
        _wait_for(lambda: Message.objects.filter(status=Status.SENT).count() == 200, "200 sent")
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        outputs = [child.communicate(timeout=60)[0] for child in children]

    counts = Counter(call.number for call in ready_tx.sends)
    assert sorted(counts) == sorted(r.recipient for r in replies)
    assert set(counts.values()) == {1}
    assert [child.returncode for child in children] == [0, 0]
    assert all("Sender stopped." in out for out in outputs)


def test_a_worker_killed_mid_send_leaves_an_outcome_unknown_failure_after_its_lease(
    ready_tx, tmp_path, monkeypatch
):
    reply = _approved_replies(1)[0]
    ready_tx.hang_seconds = 60
    ready_tx.set_send_mode("hang")
    child = subprocess.Popen(
        manage("send_approved"),
        cwd=REPO,
        env=child_env(tmp_path, APPROVAL_GRACE_SECONDS="0", SEND_MIN_INTERVAL_SECONDS="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # The request has reached the gateway; the worker waits for its answer.
        _wait_for(lambda: len(ready_tx.sends) == 1, "the /send to arrive")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    ready_tx.set_send_mode("ok")
    claimed = fresh(reply)
    assert claimed.status == Status.APPROVED
    assert claimed.claimed_by.startswith("sender@")

    # While the lease runs, another worker neither sends it nor fails it.
    make_sender().run_once()
    assert fresh(reply).status == Status.APPROVED

    after_lease = claimed.lease_until + timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: after_lease)
    summary = make_sender().run_once()

    failed = fresh(reply)
    assert summary.expired == [reply.message_id]
    assert failed.status == Status.FAILED
    assert failed.data["error"].startswith(OUTCOME_UNKNOWN)
    assert claimed.claimed_by in failed.data["error"]
    assert len(sends_for(ready_tx, reply)) == 1
    assert log_entries()[-1]["status"] == "failed"


def test_the_loop_sender_lives_through_a_failed_round_and_a_failed_interval_read(
    ready_tx, monkeypatch, caplog
):
    reply = _approved_replies(1)[0]
    monkeypatch.setattr(loops, "FALLBACK_INTERVAL_SECONDS", 0.01)
    rounds = {"claims": 0, "intervals": 0}

    def interval() -> float:
        rounds["intervals"] += 1
        if rounds["intervals"] == 2:
            raise OperationalError("could not read watcher_config: the database went away")
        return 0.01

    real_claim = sending.claim_next

    def claim_next(worker, **kwargs):
        rounds["claims"] += 1
        if rounds["claims"] == 1:
            # The database connection goes under the round, mid-way.
            connection.ensure_connection()
            connection.connection.close()
        return real_claim(worker, **kwargs)

    monkeypatch.setattr(loops, "poll_interval", interval)
    monkeypatch.setattr(sending, "claim_next", claim_next)
    sender = make_sender()

    def run() -> None:
        try:
            sender.run_forever()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="sender-loop")
    with caplog.at_level(logging.ERROR, logger="statecore.loops"):
        thread.start()
        try:
            _wait_for(
                lambda: fresh(reply).status == Status.SENT and rounds["intervals"] >= 4,
                "the reply sent and a few rounds after it",
                timeout=30,
            )
        finally:
            sender.stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive(), "the loop did not stop when asked"

    failed = [r for r in caplog.records if "sender: this round failed" in r.getMessage()]
    assert len(failed) == 1
    assert sum("could not read the poll interval" in r.getMessage() for r in caplog.records) == 1
    assert [c.number for c in ready_tx.sends] == [reply.recipient]
    assert Heartbeat.objects.get(name="sender").detail["state"] == "stopped"


# --- The command -----------------------------------------------------------------------


def test_send_approved_once_prints_the_outcome(ready, capsys):
    make_reply(Status.APPROVED)

    call_command("send_approved", "--send-timeout", "2")

    out = capsys.readouterr().out
    assert f"using the wwebjs gateway at {ready.url}" in out
    assert ": sent" in out
    assert "1 sent, 0 failed, 0 waiting for the gateway" in out


def test_send_approved_once_says_a_held_reply_waits(ready, capsys):
    make_reply(Status.APPROVED)
    ready.go_not_ready()

    call_command("send_approved", "--send-timeout", "2")

    out = capsys.readouterr().out
    assert "0 sent, 0 failed, 1 waiting for the gateway" in out
    assert NOT_READY_ERROR in out
    assert "outcome unknown" not in out


def test_send_approved_refuses_a_nonsense_timeout_and_retry_config(ready):
    with pytest.raises(CommandError, match="--send-timeout"):
        call_command("send_approved", "--send-timeout", "0")
    # Written behind the validation's back (by hand in the database, say).
    StateRoot.objects.filter(pk=1).update(retry_config='{"max_retries": 0}')
    with pytest.raises(CommandError, match="max_retries"):
        call_command("send_approved")


def test_a_broken_retry_config_pauses_the_sender_instead_of_guessing(ready):
    reply = make_reply(Status.APPROVED)
    StateRoot.objects.filter(pk=1).update(retry_config='{"max_retries": true}')

    summary = make_sender().run_once()

    assert summary.paused.startswith("retry_config is not usable: retry_config.max_retries")
    assert fresh(reply).status == Status.APPROVED
    assert ready.sends == []


def test_a_wrong_gateway_address_pauses_sending_mails_once_and_fails_nothing(
    ready, mailoutbox, settings
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    replies = [make_reply(Status.APPROVED) for _ in range(2)]
    # The stand-in answers, but has no /send under this prefix: Express's own 404.
    use_gateway(ready.url.replace("/api/whatsapp", "/api/wrong"))
    sender = make_sender()
    first, second = sender.run_once(), sender.run_once()
    assert first.held == 1 and second.held == 1 and first.failed == second.failed == 0
    assert "no /send at this address" in first.paused
    assert all(fresh(r).status == Status.APPROVED and not fresh(r).claimed_by for r in replies)
    config_mails = [m for m in mailoutbox if "settings" in m.subject]
    assert len(config_mails) == 1 and "/api/wrong" in config_mails[0].body
    assert ready.delivered() == []

    use_gateway(ready.url)
    assert make_sender().run_once().sent == 2
    assert not Incident.objects.filter(kind="gateway_config", resolved_at__isnull=True).exists()


def test_a_run_reads_and_checks_retry_config_once_however_many_replies(ready, monkeypatch):
    for _ in range(3):
        make_reply(Status.APPROVED)
    calls = []
    real = sending.retry_delays
    monkeypatch.setattr(
        sending, "retry_delays", lambda config: calls.append(config) or real(config)
    )
    assert make_sender().run_once().sent == 3
    assert len(calls) == 1
