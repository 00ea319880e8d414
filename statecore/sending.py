"""The sender: approved replies out through the gateway, each at most once.

One reply at a time: claim it (a guarded UPDATE that also writes the lease),
send it outside any transaction, then record the outcome through the
lifecycle with `worker=`, so only the claim holder can record one. Several
senders may run at once; the guarded UPDATE's row count decides who got a
reply (on PostgreSQL, `SKIP LOCKED` first keeps them off each other's rows).

What a send's outcome (GATEWAY.md's common model) means here:
- `sent`: recorded sent, with the gateway's message id.
- `not_sent`/`hold` (the session is down), `config` (our address is wrong) and a
  `retry` that ran out of attempts: nothing went out, so the claim is released
  (`lifecycle.release`) and the reply keeps its place; it goes out when the
  gateway can take it. A hold also records the session as down.
- `not_sent`/`final`: this reply can never go: `failed` at once.
- `maybe_sent`: never sent again by itself: `failed` with OUTCOME_UNKNOWN, and a
  person checks the phone. So is a reply whose sender died mid-send (its lease
  ran out with nothing recorded).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from . import (
    alerts,
    clock,
    lifecycle,
    loops,
    reconcile,
    rootstate,
    session,
    session_check,
    window,
)
from .models import Heartbeat, LogEntry, Message, Source, StateRoot, Status
from .session import SessionReport
from .statefile.columns import dumps_compact, reply_address
from .whatsapp import Gateway, Next, SendOutcome, Sent

log = logging.getLogger(__name__)

OUTCOME_UNKNOWN = "outcome unknown: check the phone before retrying"
# Covers what is not the send itself: a claim, a record, SQLite's busy wait (20 s).
LEASE_MARGIN_SECONDS = 60
# The sender's heartbeat: written at every round's start and end (and at most every
# BEAT_EVERY_SECONDS between sends); the session page and the overview read it.
HEARTBEAT_NAME = "sender"
BEAT_EVERY_SECONDS = 5.0
# A sender silent for this many rounds is not running: a round ends with a beat, and
# twelve leave room for a slow send (the gateway's 30 s timeout) inside one (60 s at
# the default 5 s poll interval).
STOPPED_AFTER_ROUNDS = 12
DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY_SECONDS = 2
DEFAULT_EXPONENTIAL_BACKOFF = True
# Pacing: up to this share of SEND_MIN_INTERVAL_SECONDS is added at random.
PACING_JITTER = 0.25


def silent_after() -> timedelta:
    """How long the sender may stay silent before it counts as stopped: STOPPED_AFTER_ROUNDS
    of its rounds (`watcher_config.poll_interval_seconds`, at least BEAT_EVERY_SECONDS)."""
    return timedelta(seconds=STOPPED_AFTER_ROUNDS * max(loops.poll_interval(), BEAT_EVERY_SECONDS))


def sender_stopped(beat: Heartbeat | None, now: datetime) -> bool:
    """Whether the sender is not running: it never beat, or it is silent past `silent_after`."""
    return beat is None or now - beat.beat_at > silent_after()


def new_worker_id() -> str:
    """Unique per process start: a restarted worker never passes for its dead self."""
    return f"sender@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_delays(retry_config: Mapping[str, Any] | None) -> list[float]:
    """The waits in seconds before retries 1, 2, ... of a send that certainly did not go.

    `max_retries` counts attempts in all, so there are `max_retries - 1` waits:
    `retry_delay_seconds * 2**k` before retry k+1 with `exponential_backoff`,
    `retry_delay_seconds` each time without. Missing keys default to 3, 2 and
    True. Raises ValueError on a nonsense value."""
    config = retry_config or {}
    attempts = config.get("max_retries", DEFAULT_MAX_RETRIES)
    delay = config.get("retry_delay_seconds", DEFAULT_RETRY_DELAY_SECONDS)
    exponential = config.get("exponential_backoff", DEFAULT_EXPONENTIAL_BACKOFF)
    # bool is an int in Python; "max_retries: true" is a typo, not 1.
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"retry_config.max_retries must be a whole number >= 1, got {attempts!r}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < math.inf:
        raise ValueError(f"retry_config.retry_delay_seconds must be a number >= 0, got {delay!r}")
    if not isinstance(exponential, bool):
        raise ValueError(
            f"retry_config.exponential_backoff must be true or false, got {exponential!r}"
        )
    return [float(delay * 2**k if exponential else delay) for k in range(attempts - 1)]


def lease_seconds(delays: list[float], send_timeout: float) -> float:
    """Longer than the longest possible send, so a live worker's send is never taken.

    httpx gives connecting, writing and reading a timeout each, so one attempt
    can take up to three times `send_timeout`; then all attempts' waits (`retry_delays`),
    and a margin.
    """
    attempts = len(delays) + 1
    return attempts * 3 * send_timeout + sum(delays) + LEASE_MARGIN_SECONDS


# --- Claims and leases --------------------------------------------------------------


def claimable(now: datetime) -> QuerySet[Message]:
    """Approved, unclaimed replies past the Undo window, in approval order."""
    cutoff = now - timedelta(seconds=settings.APPROVAL_GRACE_SECONDS)
    return (
        Message.objects.filter(status=Status.APPROVED, claimed_at__isnull=True)
        # An approved reply imported without a time has waited long enough.
        .filter(Q(status_updated_at__lte=cutoff) | Q(status_updated_at__isnull=True))
        .order_by(F("status_updated_at").asc(nulls_first=True), "position", "pk")
    )


def claim_next(worker: str, *, lease: float, now: datetime | None = None) -> Message | None:
    """Claim the oldest claimable reply for `worker`, or None when there is none."""
    while True:
        now = now or clock.now()
        if connection.vendor == "postgresql":
            with transaction.atomic():
                # Rows another worker has locked are skipped, not waited for.
                pks = list(
                    claimable(now)
                    .select_for_update(skip_locked=True)
                    .values_list("pk", flat=True)[:1]
                )
                if not pks:
                    return None
                if _guarded_claim(pks[0], worker, now, lease):
                    return Message.objects.get(pk=pks[0])
        else:
            pks = list(claimable(now).values_list("pk", flat=True)[:20])
            if not pks:
                return None
            for pk in pks:
                if _guarded_claim(pk, worker, now, lease):
                    return Message.objects.get(pk=pk)
        # Every candidate went to another worker meanwhile: look again.


def _guarded_claim(pk: int, worker: str, now: datetime, lease: float) -> bool:
    # The row count decides: 0 means someone else claimed it, or it was undone
    # (and maybe approved again since, with a fresh Undo window: still claimable() checks).
    return (
        claimable(now)
        .filter(pk=pk)
        .update(claimed_by=worker[:150], claimed_at=now, lease_until=now + timedelta(seconds=lease))
        == 1
    )


def expire_leases(*, actor: str, now: datetime | None = None) -> list[str]:
    """Fail each approved reply whose lease ran out (its worker died mid-send).

    Whichever worker finds one does it; the `worker=` guard makes sure only a
    claim still held by the dead worker is recorded. Returns the ids failed.
    """
    now = now or clock.now()
    expired = Message.objects.filter(
        status=Status.APPROVED, claimed_at__isnull=False, lease_until__lt=now
    ).order_by("lease_until", "pk")
    done = []
    for msg in expired:
        error = (
            f"{OUTCOME_UNKNOWN} (the sender {msg.claimed_by} stopped mid-send; "
            f"its lease ran out at {clock.local_iso(msg.lease_until)})"
        )
        try:
            with transaction.atomic():
                lifecycle.mark_failed(
                    msg.message_id,
                    error,
                    actor=actor,
                    source=Source.WORKER,
                    worker=msg.claimed_by,
                    detail={lifecycle.UNCERTAIN_FLAG: True, "expired_worker": msg.claimed_by},
                )
                log_entry(msg, "failed", message_id=None, error=error)
        except lifecycle.MoveRefused:
            continue  # another worker expired it first, or a person acted
        done.append(msg.message_id)
    return done


# --- One send --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: str  # "sent" | "failed" | "held" | "lost" (recorded by someone else meanwhile)
    error: str = ""
    attempts: int = 0
    # For "held": what the gateway's not_sent meant (hold, config, retry).
    held_for: str = ""


def send_with_retries(
    gateway: Gateway,
    address: str,
    text: str,
    *,
    reply_id: str,
    delays: list[float],
    sleep: Callable[[float], object] = time.sleep,
) -> tuple[SendOutcome, int]:
    """Send, retrying only a `not_sent`/`retry` after the waits in `delays`.

    Returns the last outcome and the number of /send calls made."""
    attempt = 0
    while True:
        attempt += 1
        outcome = gateway.send(address, text, reply_id=reply_id)
        if outcome.next != Next.RETRY or attempt > len(delays):
            return outcome, attempt
        wait = delays[attempt - 1]
        log.warning(
            "Send %s attempt %d not sent, retrying in %g s: %s",
            reply_id,
            attempt,
            wait,
            outcome.error,
        )
        sleep(wait)


def send_claimed(
    msg: Message,
    gateway: Gateway,
    *,
    worker: str,
    delays: list[float],
    sleep: Callable[[float], object] = time.sleep,
) -> Outcome:
    """Send one reply this worker holds the claim of, and record the outcome. `delays`:
    the waits before retries (`retry_delays` of the run's retry_config, read once a run)."""
    refused = "" if not msg.recipient or not msg.body else window.refusal_for(msg, clock.now())
    if not msg.recipient or not msg.body:
        missing = "recipient" if not msg.recipient else "text"
        outcome, attempts = SendOutcome.not_sent(Next.FINAL, f"the reply has no {missing}"), 0
    elif refused:
        # Approved in time but the window closed since (Cloud): it would fail with 131047.
        outcome, attempts = SendOutcome.not_sent(Next.FINAL, refused), 0
    else:
        # No transaction is open here: the network wait holds no lock.
        outcome, attempts = send_with_retries(
            gateway,
            _address(msg),
            msg.body,
            reply_id=msg.message_id,
            delays=delays,
            sleep=sleep,
        )
    confirmed = None
    if outcome.kind == Sent.MAYBE_SENT:
        # The answer was lost: the gateway's echo (often here first) or a read-back may
        # show it went out. Then it is sent, and nobody has to check the phone.
        confirmed = reconcile.settle_after_send(msg, gateway, _address(msg))
        if confirmed is not None:
            gateway_id, confirmed_by = confirmed
            outcome = SendOutcome.sent(gateway_id)
    try:
        return _record(
            msg,
            outcome,
            attempts,
            worker,
            confirmed_by=confirmed[1] if confirmed else "",
            remember=gateway.traits.has_webhooks,
        )
    except lifecycle.MoveRefused as exc:
        # Only possible if this worker outlived its lease; the log still tells the truth.
        if outcome.ok:
            log_entry(msg, "success", message_id=outcome.message_id, error=None)
            log.error("%s was SENT, but could not be recorded as sent: %s", msg.message_id, exc)
        else:
            log.error("%s: could not record the outcome: %s", msg.message_id, exc)
        return Outcome(msg.message_id, "lost", error=str(exc), attempts=attempts)


def _address(msg: Message) -> str:
    """Where the reply goes: its recipient, or the chat it answers when that says more."""
    original = ""
    if msg.reply_to and "@" not in msg.recipient:
        original = (
            Message.objects.filter(message_id=msg.reply_to).values_list("sender", flat=True).first()
            or ""
        )
    return reply_address(msg.recipient, original)


def _record(
    msg: Message,
    outcome: SendOutcome,
    attempts: int,
    worker: str,
    *,
    confirmed_by: str = "",
    remember: bool = False,
) -> Outcome:
    """`remember`: the gateway reports on our sends later (echoes, delivery failures):
    keep which of its ids is this reply."""
    who = {"actor": worker, "source": Source.WORKER, "worker": worker}
    if outcome.kind == Sent.NOT_SENT and outcome.next != Next.FINAL:
        # Nothing went out and the reply could still go: it waits, in its place.
        with transaction.atomic():
            lifecycle.release(msg.message_id, outcome.error, **who)
            if outcome.next == Next.HOLD:
                session.not_valid(outcome.error, actor=worker, source=Source.WORKER)
        return Outcome(
            msg.message_id, "held", error=outcome.error, attempts=attempts, held_for=outcome.next
        )
    with transaction.atomic():
        if outcome.ok:
            detail: dict[str, Any] = {"attempts": attempts}
            if confirmed_by:
                detail["confirmed_by"] = confirmed_by
            lifecycle.mark_sent(
                msg.message_id, gateway_message_id=outcome.message_id, detail=detail, **who
            )
            if remember:
                reconcile.note_answer(msg.message_id, outcome.message_id)
            log_entry(msg, "success", message_id=outcome.message_id, error=None)
            return Outcome(msg.message_id, Status.SENT, attempts=attempts)
        unknown = outcome.kind == Sent.MAYBE_SENT
        error = f"{OUTCOME_UNKNOWN} ({outcome.error})" if unknown else f"not sent: {outcome.error}"
        lifecycle.mark_failed(
            msg.message_id,
            error,
            detail={"attempts": attempts, lifecycle.UNCERTAIN_FLAG: unknown},
            **who,
        )
        log_entry(msg, "failed", message_id=None, error=error)
        return Outcome(msg.message_id, Status.FAILED, error=error, attempts=attempts)


def log_entry(msg: Message, outcome: str, *, message_id: str | None, error: str | None) -> None:
    """One `message_log` entry in the old sender's shape."""
    now = clock.now()
    entry = {
        "timestamp": clock.local_iso(now),
        "recipient": msg.recipient,
        "message": msg.body,
        "status": outcome,
        "message_id": message_id,
        "error": error,
    }
    LogEntry.objects.create(
        raw=dumps_compact(entry), recipient=msg.recipient[:200], outcome=outcome, logged_at=now
    )
    rootstate.touch()


# --- The worker ------------------------------------------------------------------------


@dataclass
class RunSummary:
    sent: int = 0
    failed: int = 0
    held: int = 0
    expired: list[str] = field(default_factory=list)
    paused: str = ""


class Sender:
    """One sender worker. `run_once()` is one poll; `run_forever()` is `--loop`.

    `say` receives the lines a person should read (paused, resumed, each
    outcome); `sleep` is what the retry waits and the pacing call (tests patch it).
    """

    def __init__(
        self,
        gateway: Gateway,
        *,
        worker: str | None = None,
        send_timeout: float | None = None,
        say: Callable[[str], object] = log.info,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.gateway = gateway
        self.worker = worker or new_worker_id()
        self.send_timeout = send_timeout if send_timeout is not None else gateway.send_timeout
        self.say = say
        self.sleep = sleep
        self.paused_reason = ""
        # Set to stop after the send in flight (`--loop` sets it on SIGTERM/SIGINT).
        self.stop = threading.Event()
        self._last_beat = 0.0
        self._last_send_at: float | None = None
        # This run's latest session verdict: judged once per thing learnt, read by the alerts.
        self._verdict: SessionReport | None = None

    def run_once(self) -> RunSummary:
        """Expire dead leases, then send every claimable reply while the session allows."""
        summary = RunSummary(expired=expire_leases(actor=self.worker))
        self._verdict = None
        for mid in summary.expired:
            self.say(f"{mid}: its sender died mid-send -> failed ({OUTCOME_UNKNOWN})")
        try:
            # Read and checked once a run, whatever the number of replies it sends.
            delays = retry_delays(rootstate.retry_config())
            lease = lease_seconds(delays, self.send_timeout)
        except ValueError as exc:
            summary.paused = f"retry_config is not usable: {exc}"
        else:
            summary.paused = self._gate()
        self._note_pause(summary.paused)
        self.beat(
            state="paused" if summary.paused else "sending", reason=summary.paused, force=True
        )
        while not summary.paused and not self.stop.is_set():
            msg = claim_next(self.worker, lease=lease)
            if msg is None:
                break
            self._pace()
            outcome = send_claimed(
                msg, self.gateway, worker=self.worker, delays=delays, sleep=self.sleep
            )
            self._report(outcome, summary)
            self.beat(state="sending")
            if outcome.status == "held":
                # The gateway cannot take replies now: the rest wait with this one.
                summary.paused = f"the gateway did not take the reply: {outcome.error}"
                self._note_pause(summary.paused)
                # The send may have recorded what the gateway said of the session.
                self._verdict = None
                if outcome.held_for == Next.CONFIG:
                    alerts.report(
                        alerts.GATEWAY_CONFIG,
                        f"Sending is paused: {outcome.error}. Check GATEWAY_KIND and the "
                        f"gateway's address ({self.gateway.address}).",
                    )
            elif outcome.status == Status.SENT:
                alerts.resolve(alerts.GATEWAY_CONFIG)
            # A disconnect reported meanwhile stops the batch (no network call here).
            elif not self._judge().valid:
                summary.paused = self._gate(self._verdict)
                self._note_pause(summary.paused)
        self.beat(state="paused" if summary.paused else "idle", reason=summary.paused, force=True)
        alerts.check_incidents(session_report=self._verdict)
        return summary

    def run_forever(self) -> None:
        """`--loop`: a run every `watcher_config.poll_interval_seconds` until `stop` is set."""
        loops.run_loop(self.run_once, interval=loops.poll_interval, stop=self.stop, name="sender")
        self.beat(state="stopped", force=True)

    def _pace(self) -> None:
        """Leave SEND_MIN_INTERVAL_SECONDS (and a little jitter) between two sends."""
        if self._last_send_at is not None:
            interval = settings.SEND_MIN_INTERVAL_SECONDS
            wanted = interval * (1 + random.uniform(0, PACING_JITTER))
            wait = self._last_send_at + wanted - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._last_send_at = time.monotonic()

    def _judge(self) -> SessionReport:
        """The session's verdict now, kept as the run's latest (the alerts read it too)."""
        self._verdict = session.check(session.current())
        return self._verdict

    def _gate(self, report: SessionReport | None = None) -> str:
        """Why sending must wait now, or "" when the session allows it.

        A session whose only fault is a stale `last_validation` is re-checked
        with the gateway here, so a healthy session does not stop the sending.
        `report`: the verdict just computed, if any.
        """
        report = report or self._judge()
        if report.valid:
            return ""
        failed = {rule.name for rule in report.rules if not rule.passed}
        # Only the gateway can tell whether WhatsApp works again; a missing session
        # folder or a person's "Mark invalid" is not for it to lift.
        if "session folder" in failed or session.gateway_state().held_reason:
            return report.verdict
        check = session_check.check(
            self.gateway, actor=self.worker, source=Source.WORKER, with_account=False, known=report
        )
        self._verdict = check.report
        if check.report.valid:
            self.say("The gateway says WhatsApp is ready: validated now.")
            return ""
        if not check.reachable:
            return f"{report.verdict}; the gateway did not answer: {check.error}"
        return check.report.verdict

    def _note_pause(self, reason: str) -> None:
        # Said once per pause, not once per poll.
        if reason and reason != self.paused_reason:
            self.say(f"Not sending: {reason}")
        elif not reason and self.paused_reason:
            self.say("Sending again: the session is valid.")
        self.paused_reason = reason

    def _report(self, outcome: Outcome, summary: RunSummary) -> None:
        if outcome.status == Status.SENT:
            summary.sent += 1
            self.say(f"{outcome.message_id}: sent")
        elif outcome.status == "held":
            summary.held += 1
            self.say(f"{outcome.message_id}: not sent, waits for the gateway: {outcome.error}")
        else:
            summary.failed += 1
            self.say(f"{outcome.message_id}: {outcome.status}: {outcome.error}")

    def beat(self, *, state: str, reason: str = "", force: bool = False) -> None:
        """The heartbeat the session page and the overview read."""
        if not force and time.monotonic() - self._last_beat < BEAT_EVERY_SECONDS:
            return
        self._last_beat = time.monotonic()
        last_sent = (
            StateRoot.objects.filter(pk=1).values_list("last_message_sent", flat=True).first()
        )
        Heartbeat.objects.update_or_create(
            name=HEARTBEAT_NAME,
            defaults={
                "beat_at": clock.now(),
                "detail": {
                    "waiting": Message.objects.filter(status=Status.APPROVED).count(),
                    "last_sent": json.loads(last_sent) if last_sent else None,
                    "state": state,
                    "reason": reason,
                    "worker": self.worker,
                },
            },
        )
