"""The sender killed with SIGKILL at random moments over 100 approved replies,
restarted each time: at most one /send per reply that could have reached
WhatsApp, every reply ends sent or failed with a reason, none lost.

A /send answered "not ready" sent nothing: that reply is held (released, still
approved) and the session recorded down; the test then re-validates the
session as the receiving loop's /status watch does, and the reply goes out
later. The stand-in cannot carry our reply id (no gateway honours an
Idempotency-Key): sends are told apart by the number, one per reply."""

from __future__ import annotations

import random
import subprocess
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings

from statecore import rootstate, sending, session, session_check, whatsapp
from statecore.models import AuditEvent, LogEntry, Message, Source, Status
from statecore.whatsapp.standin_wwebjs import DELIVERING_FAILURES
from tests.factories import make_reply
from tests.reliability.processes import child_env, kill, manage
from tests.session_helpers import use_gateway, valid_session

REPLIES = 100
SEED = 20261125
# Most sends go through; some meet each answer of one /send: "not ready" (held,
# nothing sent), and three that may have reached WhatsApp (failed, never resent).
MODES, WEIGHTS = ("ok", "not_ready", "send_failed", "error500", "drop"), (80, 5, 5, 5, 5)


def _set(key: str, value: dict) -> None:
    rootstate.update_part(key, lambda _old: value, actor="test", source=Source.API, action="set")


def _start_sender(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        manage("send_approved", "--loop", "--send-timeout", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _unclaimed_left() -> bool:
    return Message.objects.filter(status=Status.APPROVED, claimed_at__isnull=True).exists()


def _revalidate_when_down() -> None:
    """The receiving loop's watch: a session a hold marked down is checked with /status."""
    if not session.check(session.current()).valid:
        with whatsapp.gateway() as gateway:
            session_check.check(gateway, actor="receiver", source=Source.WORKER)


def _wait_for_sends(gateway, target: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Until the gateway has seen `target` sends, or there is nothing left to send."""
    deadline = time.monotonic() + timeout
    while len(gateway.sends) < target and time.monotonic() < deadline:
        if proc.poll() is not None or not _unclaimed_left():
            return
        _revalidate_when_down()
        time.sleep(0.005)


@pytest.mark.django_db(transaction=True)
def test_a_sender_killed_at_random_moments_sends_each_reply_at_most_once(
    settings, tmp_path, fake_gateway
):
    rng = random.Random(SEED)
    settings.APPROVAL_GRACE_SECONDS = 0
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    # One attempt per reply, no wait: a short lease (only a refused connection is
    # retried, and none is met here).
    _set("retry_config", {"max_retries": 1, "retry_delay_seconds": 0, "exponential_backoff": False})
    _set("watcher_config", {**rootstate.watcher_config(), "poll_interval_seconds": 1})
    fake_gateway.queue_send_modes(*rng.choices(MODES, WEIGHTS, k=REPLIES))
    replies = {make_reply(Status.APPROVED).message_id for _ in range(REPLIES)}
    env = child_env(
        APPROVAL_GRACE_SECONDS="0",
        SEND_MIN_INTERVAL_SECONDS="0",
        WHATSAPP_SESSION_BASE=str(tmp_path),
        TIME_ZONE=django_settings.TIME_ZONE,
    )

    kills = 0
    while _unclaimed_left():
        assert kills < 60, "the senders make no progress"
        _revalidate_when_down()
        proc = _start_sender(env)
        try:
            # Kill after a random number of sends, at a random point of the next one:
            # before its claim, between claim and /send, during it, before its record.
            _wait_for_sends(fake_gateway, len(fake_gateway.sends) + rng.randint(1, 12), proc)
            time.sleep(rng.uniform(0, 0.03))
        finally:
            kill(proc)
        kills += 1

    # Replies claimed by a killed sender wait for their lease to run out (a minute
    # or more): let that time pass here, as the next sender would find it.
    leases = Message.objects.filter(status=Status.APPROVED).values_list("lease_until", flat=True)
    if leases:
        sending.expire_leases(actor="test", now=max(leases) + timedelta(seconds=1))

    calls: dict[str, list] = {mid: [] for mid in replies}
    reply_of = {m.recipient: m.message_id for m in Message.objects.filter(message_id__in=replies)}
    assert len(reply_of) == REPLIES  # one number per reply
    assert {call.number for call in fake_gateway.sends} <= set(reply_of)
    for call in fake_gateway.sends:
        calls[reply_of[call.number]].append(call)
    # The /send calls that may have reached WhatsApp: all but a "not ready".
    reached = {mid: [c for c in cs if c.mode != "not_ready"] for mid, cs in calls.items()}
    outcome = {m.message_id: m for m in Message.objects.filter(message_id__in=replies)}
    sent = [mid for mid, m in outcome.items() if m.status == Status.SENT]
    failed = [mid for mid, m in outcome.items() if m.status == Status.FAILED]
    held = AuditEvent.objects.filter(action="send_held").values_list("message_id", flat=True)

    assert kills >= 5, f"only {kills} restarts: the sender was hardly interrupted"
    assert max(len(cs) for cs in reached.values()) == 1, [
        (mid, [c.mode for c in cs]) for mid, cs in calls.items() if len(reached[mid]) > 1
    ]
    assert max(sum(c.delivered for c in cs) for cs in calls.values()) == 1
    # Every "not ready" came before the one /send that could reach WhatsApp.
    assert all(
        all(c.mode == "not_ready" for c in cs[: len(cs) - len(reached[mid])])
        for mid, cs in calls.items()
    )
    assert len(outcome) == REPLIES and sorted(sent + failed) == sorted(replies)
    assert all([c.mode for c in reached[mid]] == ["ok"] for mid in sent)
    # A failure is an outcome unknown: a send that may have gone, or a sender that died mid-send.
    for mid in failed:
        error = outcome[mid].data.get("error") or ""
        assert error.startswith(sending.OUTCOME_UNKNOWN), error
        assert "stopped mid-send" in error or reached[mid][0].mode in DELIVERING_FAILURES, (
            error,
            [c.mode for c in calls[mid]],
        )
    # "Not ready" was met and held, at least once, and those replies were not lost.
    assert set(held) and set(held) <= set(replies)
    # Each ending written once, in the audit log, the message_log and the counters.
    endings = AuditEvent.objects.filter(action__in=["mark_sent", "mark_failed"])
    assert sorted(endings.values_list("message_id", flat=True)) == sorted(replies)
    assert LogEntry.objects.count() == REPLIES
    stats = rootstate.statistics()
    assert (stats["total_sent"], stats["total_failed"]) == (len(sent), len(failed))
