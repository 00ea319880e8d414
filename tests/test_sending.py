"""The sender against a real HTTP fake gateway: each approved reply goes out at most once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from statecore import clock, lifecycle, rootstate, sending, session, session_events
from statecore.gateway import GatewayClient
from statecore.models import AuditEvent, Heartbeat, LogEntry, Message, Source, StateRoot, Status
from statecore.sending import OUTCOME_UNKNOWN, Sender
from tests.factories import make_reply
from tests.session_helpers import REPO, child_env, manage, set_session, use_gateway, valid_session

# Generous: a loaded machine must not turn a slow "ok" into an outcome-unknown timeout.
TIMEOUT = 15.0
SHORT = 0.5  # the send timeout where the gateway hangs: half a second, not thirty


def _prepare(settings, tmp_path, gateway):
    settings.APPROVAL_GRACE_SECONDS = 0
    valid_session(settings, tmp_path)
    use_gateway(gateway.url)
    return gateway


@pytest.fixture
def ready(db, settings, tmp_path, fake_gateway):
    """A valid session, the fake gateway as api_endpoint, no Undo window."""
    return _prepare(settings, tmp_path, fake_gateway)


@pytest.fixture
def ready_tx(transactional_db, settings, tmp_path, fake_gateway):
    """The same, committed for real: other threads and processes see it."""
    return _prepare(settings, tmp_path, fake_gateway)


class Recorder:
    """Stands in for time.sleep (the retry waits) and collects what the sender says."""

    def __init__(self):
        self.slept: list[float] = []
        self.said: list[str] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def say(self, line: str) -> None:
        self.said.append(line)


def make_sender(
    url: str, recorder: Recorder | None = None, *, timeout: float = TIMEOUT, **kwargs
) -> Sender:
    recorder = recorder or Recorder()
    client = GatewayClient(url, status_timeout=timeout, send_timeout=timeout)
    return Sender(client, sleep=recorder.sleep, say=recorder.say, **kwargs)


def fresh(msg: Message) -> Message:
    return Message.objects.get(pk=msg.pk)


def log_entries() -> list[dict]:
    return [json.loads(e.raw) for e in LogEntry.objects.order_by("pk")]


# --- One reply, each thing the gateway can do ----------------------------------------


def test_an_approved_reply_is_sent_and_recorded(ready):
    reply = make_reply(Status.APPROVED, body="Your order is ready ✓")

    summary = make_sender(ready.url).run_once()

    reply = fresh(reply)
    assert summary.sent == 1
    assert reply.status == Status.SENT
    [call] = ready.sends
    assert (call.number, call.message, call.idempotency_key) == (
        reply.recipient,
        "Your order is ready ✓",
        reply.message_id,
    )
    audit = AuditEvent.objects.get(message_id=reply.message_id, action="mark_sent")
    assert audit.source == Source.WORKER
    assert audit.detail["gateway_message_id"].startswith(f"true_{reply.recipient}@c.us_")
    [entry] = log_entries()
    assert list(entry) == ["timestamp", "recipient", "message", "status", "message_id", "error"]
    assert entry["status"] == "success"
    assert entry["message_id"] == audit.detail["gateway_message_id"]
    assert (entry["recipient"], entry["message"], entry["error"]) == (
        reply.recipient,
        "Your order is ready ✓",
        None,
    )
    assert rootstate.statistics()["total_sent"] == 1


@pytest.mark.parametrize(
    ("config", "delays"),
    [
        ({"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True}, [2.0, 4.0]),
        ({"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": False}, [2.0, 2.0]),
        ({"max_retries": 1, "retry_delay_seconds": 2, "exponential_backoff": True}, []),
    ],
)
def test_success_false_is_retried_with_the_configured_delays_then_failed(ready, config, delays):
    rootstate.update_part("retry_config", lambda _: config, actor="t", source="api", action="set")
    ready.refuse_error = "Phone not connected"
    ready.set_send_mode("refuse")
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()

    make_sender(ready.url, recorder).run_once()

    reply = fresh(reply)
    attempts = config["max_retries"]
    assert reply.status == Status.FAILED
    error = reply.data["error"]
    assert error.startswith(f"not sent after {attempts} attempt")
    assert "refused: Phone not connected" in error
    assert OUTCOME_UNKNOWN not in error
    assert ready.send_counts()[reply.message_id] == attempts
    assert recorder.slept == delays
    assert log_entries()[-1]["status"] == "failed"
    assert log_entries()[-1]["error"] == error


def test_a_refusal_then_success_ends_sent_after_one_wait(ready):
    ready.queue_send_modes("refuse", "ok")
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()

    make_sender(ready.url, recorder).run_once()

    assert fresh(reply).status == Status.SENT
    assert ready.send_counts()[reply.message_id] == 2
    assert recorder.slept == [2.0]


def test_a_gateway_that_is_down_is_retried_then_failed_with_nothing_sent(ready):
    reply = make_reply(Status.APPROVED)
    sender = make_sender(ready.url)
    # Valid now, so no /status is needed before the first send.
    ready.set_send_mode("down")
    recorder = Recorder()
    sender.sleep = recorder.sleep

    sender.run_once()

    reply = fresh(reply)
    assert reply.status == Status.FAILED
    assert reply.data["error"].startswith("not sent after 3 attempts: Gateway ")
    assert "unreachable" in reply.data["error"]
    assert recorder.slept == [2.0, 4.0]
    ready.set_send_mode("ok")
    assert ready.send_counts()[reply.message_id] == 0


@pytest.mark.parametrize("mode", ["error500", "hang", "garbage", "drop"])
def test_an_unknown_outcome_is_failed_after_one_call_and_never_sent_again(ready, mode):
    ready.set_send_mode(mode)
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()
    sender = make_sender(ready.url, recorder, timeout=SHORT)

    sender.run_once()
    ready.set_send_mode("ok")
    sender.run_once()  # a later poll leaves it alone

    reply = fresh(reply)
    assert reply.status == Status.FAILED
    assert reply.data["error"].startswith(OUTCOME_UNKNOWN + " (Gateway ")
    assert ready.send_counts()[reply.message_id] == 1
    assert recorder.slept == []
    assert log_entries()[-1]["error"] == reply.data["error"]


def test_a_person_retrying_an_unknown_outcome_sends_it_again(ready):
    ready.set_send_mode("error500")
    reply = make_reply(Status.APPROVED)
    sender = make_sender(ready.url)
    sender.run_once()
    ready.set_send_mode("ok")

    lifecycle.retry(reply.message_id, actor="admin", source=Source.WEB, note="not on the phone")
    sender.run_once()

    assert fresh(reply).status == Status.SENT
    assert ready.send_counts()[reply.message_id] == 2


def test_a_reply_without_a_recipient_fails_without_a_call(ready):
    reply = make_reply(Status.APPROVED)
    Message.objects.filter(pk=reply.pk).update(recipient="")

    make_sender(ready.url).run_once()

    reply = fresh(reply)
    assert reply.status == Status.FAILED
    assert reply.data["error"] == "not sent: the reply has no recipient"
    assert ready.sends == []


# --- Claims, order, the Undo window, leases ------------------------------------------


def test_replies_go_out_in_approval_order(ready):
    replies = [make_reply(Status.PENDING_APPROVAL) for _ in range(4)]
    for reply in reversed(replies):  # approved last-to-first
        lifecycle.approve(reply.message_id, actor="r", source=Source.WEB)

    make_sender(ready.url).run_once()

    assert [c.idempotency_key for c in ready.sends] == [r.message_id for r in reversed(replies)]


def test_a_reply_inside_the_undo_window_is_not_claimed(ready, settings):
    settings.APPROVAL_GRACE_SECONDS = 10
    old = make_reply(Status.APPROVED)
    Message.objects.filter(pk=old.pk).update(status_updated_at=clock.now() - timedelta(seconds=11))
    young = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(young.message_id, actor="r", source=Source.WEB)

    make_sender(ready.url).run_once()

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
    # Between the pick and the claim, the reviewer undoes and approves again.
    lifecycle.undo(reply.message_id, actor="r", source=Source.WEB)
    lifecycle.approve(reply.message_id, actor="r", source=Source.WEB)

    # The guarded claim of the row picked before is what must refuse it.
    assert sending._guarded_claim(picked[0], "worker-a", clock.now(), 60) is False
    assert fresh(reply).claimed_at is None
    lifecycle.undo(reply.message_id, actor="r", source=Source.WEB)


def test_the_claim_writes_a_lease_longer_than_the_longest_send(ready):
    reply = make_reply(Status.APPROVED)
    config = rootstate.retry_config()
    lease = sending.lease_seconds(config, 30.0)

    claimed = sending.claim_next("worker-a", lease=lease)

    assert claimed.pk == reply.pk
    assert claimed.claimed_by == "worker-a"
    assert claimed.lease_until - claimed.claimed_at == timedelta(seconds=lease)
    # All attempts timing out in every phase, plus every wait.
    assert lease > 3 * 3 * 30.0 + 2 + 4
    assert sending.claim_next("worker-b", lease=lease) is None
    with pytest.raises(lifecycle.MoveRefused, match="claimed for sending"):
        lifecycle.undo(reply.message_id, actor="r", source=Source.WEB)


def test_only_the_claim_holder_records_an_outcome(ready):
    reply = make_reply(Status.APPROVED)
    sending.claim_next("worker-a", lease=60)

    with pytest.raises(lifecycle.MoveRefused, match="not claimed by worker-b"):
        lifecycle.mark_sent(reply.message_id, actor="b", source=Source.WORKER, worker="worker-b")


def test_a_claim_takes_a_bounded_number_of_queries(ready, django_assert_max_num_queries):
    for _ in range(5):
        make_reply(Status.APPROVED)

    # A select, the guarded UPDATE, a fetch (+ a savepoint pair on PostgreSQL).
    with django_assert_max_num_queries(5):
        assert sending.claim_next("worker-a", lease=60) is not None


def test_sending_one_reply_takes_a_bounded_number_of_queries(ready, django_assert_max_num_queries):
    reply = make_reply(Status.APPROVED)
    sender = make_sender(ready.url)
    claimed = sending.claim_next(sender.worker, lease=60)

    with django_assert_max_num_queries(14):
        sending.send_claimed(
            claimed, sender.client, worker=sender.worker, retry_config=rootstate.retry_config()
        )
    assert fresh(reply).status == Status.SENT


def test_a_live_lease_is_left_alone_and_an_expired_one_is_failed(ready, monkeypatch):
    live = make_reply(Status.APPROVED)
    dead = make_reply(Status.APPROVED)
    sending.claim_next("worker-live", lease=3600)
    sending.claim_next("worker-dead", lease=60)
    later = clock.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)

    summary = make_sender(ready.url).run_once()

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
    sender = make_sender(ready.url)

    sender.run_once()
    sender.run_once()

    assert ready.calls()["status"] == 1
    assert all(fresh(r).status == Status.SENT for r in replies)
    assert session.check(session.current()).valid
    assert AuditEvent.objects.filter(action="session_validated").count() == 1


def test_a_stale_session_with_a_not_ready_gateway_stops_the_sending(ready):
    set_session(last_validation="2020-01-01T00:00:00")
    ready.set_status(False)
    reply = make_reply(Status.APPROVED)
    recorder = Recorder()

    summary = make_sender(ready.url, recorder).run_once()

    assert fresh(reply).status == Status.APPROVED
    assert ready.sends == []
    assert "not ready" in summary.paused
    assert session.current()["session_valid"] is False
    assert session.current()["requires_qr"] is False  # not ready is not "scan a QR"


def test_a_stale_session_with_the_gateway_down_waits_and_changes_nothing(ready):
    before = set_session(last_validation="2020-01-01T00:00:00")
    ready.set_send_mode("down")
    reply = make_reply(Status.APPROVED)

    summary = make_sender(ready.url).run_once()

    assert "the gateway did not answer" in summary.paused
    assert fresh(reply).status == Status.APPROVED
    assert fresh(reply).claimed_at is None
    assert session.current() == before


def test_an_invalid_session_sends_nothing_says_so_once_and_all_goes_out_after_ready(ready):
    session_events.apply_event({"event": "disconnected", "reason": "LOGOUT"})
    replies = [make_reply(Status.APPROVED) for _ in range(3)]
    recorder = Recorder()
    sender = make_sender(ready.url, recorder)

    sender.run_once()
    sender.run_once()

    assert ready.sends == []
    assert all(fresh(r).status == Status.APPROVED for r in replies)
    paused = [line for line in recorder.said if line.startswith("Not sending")]
    assert len(paused) == 1
    assert "disconnected: LOGOUT" in paused[0]
    assert Heartbeat.objects.get(name="sender").detail["state"] == "paused"

    session_events.apply_event({"event": "ready"})
    sender.run_once()

    assert [c.idempotency_key for c in ready.sends] == [r.message_id for r in replies]
    assert all(fresh(r).status == Status.SENT for r in replies)
    assert "Sending again: the session is valid." in recorder.said
    assert ready.calls()["status"] == 0


def test_the_heartbeat_says_what_waits_and_when_the_last_reply_went(ready, settings):
    settings.APPROVAL_GRACE_SECONDS = 3600
    old = make_reply(Status.APPROVED)
    Message.objects.filter(pk=old.pk).update(status_updated_at=clock.now() - timedelta(hours=2))
    young = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(young.message_id, actor="r", source=Source.WEB)
    sender = make_sender(ready.url)

    sender.run_once()

    assert fresh(old).status == Status.SENT
    beat = Heartbeat.objects.get(name="sender")
    assert beat.detail["state"] == "idle"
    assert beat.detail["worker"] == sender.worker
    assert beat.detail["waiting"] == 1  # the young one, inside its Undo window
    assert beat.detail["last_sent"] == rootstate.statistics()["last_message_sent"]
    assert beat.detail["last_sent"] is not None
    assert clock.now() - beat.beat_at < timedelta(seconds=30)


# --- Several workers, and a worker that dies mid-send ------------------------------


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
            sender = make_sender(ready_tx.url, worker=name)
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

    counts = ready_tx.send_counts()
    assert sorted(counts) == sorted(r.message_id for r in replies)
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
    env = child_env(tmp_path, APPROVAL_GRACE_SECONDS="0")
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

    counts = ready_tx.send_counts()
    assert sorted(counts) == sorted(r.message_id for r in replies)
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
        env=child_env(tmp_path, APPROVAL_GRACE_SECONDS="0"),
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
    make_sender(ready_tx.url).run_once()
    assert fresh(reply).status == Status.APPROVED

    after_lease = claimed.lease_until + timedelta(seconds=1)
    monkeypatch.setattr(clock, "now", lambda: after_lease)
    summary = make_sender(ready_tx.url).run_once()

    failed = fresh(reply)
    assert summary.expired == [reply.message_id]
    assert failed.status == Status.FAILED
    assert failed.data["error"].startswith(OUTCOME_UNKNOWN)
    assert claimed.claimed_by in failed.data["error"]
    assert ready_tx.send_counts()[reply.message_id] == 1
    assert log_entries()[-1]["status"] == "failed"


# --- The command -----------------------------------------------------------------------


def test_send_approved_once_prints_the_outcome(ready, capsys):
    make_reply(Status.APPROVED)

    call_command("send_approved", "--send-timeout", "2")

    out = capsys.readouterr().out
    assert ": sent" in out
    assert "1 sent, 0 failed" in out


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

    summary = make_sender(ready.url).run_once()

    assert summary.paused.startswith("retry_config is not usable: retry_config.max_retries")
    assert fresh(reply).status == Status.APPROVED
    assert ready.sends == []
