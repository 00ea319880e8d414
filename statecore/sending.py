"""The sender: approved replies out through the gateway, each at most once.

One reply at a time: claim it (a guarded UPDATE that also writes the lease),
send it outside any transaction, then record `sent` or `failed` through the
lifecycle with `worker=`, so only the claim holder can record an outcome.
Several senders may run at once; the guarded UPDATE's row count decides who
got a reply (on PostgreSQL, `SKIP LOCKED` first keeps them off each other's rows).

A reply whose outcome may be unknown is never sent again by itself: a timeout
after the request went out, a 5xx, a garbage answer, or a worker that died
mid-send (its lease ran out with nothing recorded) all end as `failed` with
OUTCOME_UNKNOWN, and a person checks the phone before retrying.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from . import alerts, clock, lifecycle, rootstate, session, session_health
from .gateway import GatewayClient, SendResult, retry_delays, send_with_retries
from .messagedata import dumps_compact
from .models import Heartbeat, LogEntry, Message, Source, StateRoot, Status

log = logging.getLogger(__name__)

OUTCOME_UNKNOWN = "outcome unknown: check the phone before retrying"
HEARTBEAT_NAME = "sender"
# Covers what is not the send itself: a claim, a record, SQLite's busy wait (20 s).
LEASE_MARGIN_SECONDS = 60
BEAT_EVERY_SECONDS = 5.0


def new_worker_id() -> str:
    """Unique per process start: a restarted worker never passes for its dead self."""
    return f"sender@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def lease_seconds(retry_config: dict[str, Any], send_timeout: float) -> float:
    """Longer than the longest possible send, so a live worker's send is never taken.

    httpx gives connecting, writing and reading a timeout each, so one attempt
    can take up to three times `send_timeout`; then all attempts' waits, and a margin.
    """
    delays = retry_delays(retry_config)
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
                    detail={"outcome_unknown": True, "expired_worker": msg.claimed_by},
                )
                _log_entry(msg, "failed", message_id=None, error=error)
        except lifecycle.MoveRefused:
            continue  # another worker expired it first, or a person acted
        done.append(msg.message_id)
    return done


# --- One send --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    message_id: str
    status: str  # "sent" | "failed" | "lost" (recorded by someone else meanwhile)
    error: str = ""
    attempts: int = 0


def send_claimed(
    msg: Message,
    client: GatewayClient,
    *,
    worker: str,
    retry_config: dict[str, Any],
    sleep: Callable[[float], object] = time.sleep,
) -> Outcome:
    """Send one reply this worker holds the claim of, and record the outcome."""
    if not msg.recipient or not msg.body:
        missing = "recipient" if not msg.recipient else "text"
        result = None
        error = f"not sent: the reply has no {missing}"
    else:
        # No transaction is open here: the network wait holds no lock.
        result = send_with_retries(
            client,
            msg.recipient,
            msg.body,
            idempotency_key=msg.message_id,
            retry_config=retry_config,
            sleep=sleep,
        )
        error = "" if result.ok else _error_text(result)
    attempts = result.attempts if result else 0
    try:
        with transaction.atomic():
            if result is not None and result.ok:
                lifecycle.mark_sent(
                    msg.message_id,
                    actor=worker,
                    source=Source.WORKER,
                    gateway_message_id=result.message_id or "",
                    worker=worker,
                    detail={"attempts": attempts},
                )
                _log_entry(msg, "success", message_id=result.message_id, error=None)
                return Outcome(msg.message_id, Status.SENT, attempts=attempts)
            lifecycle.mark_failed(
                msg.message_id,
                error,
                actor=worker,
                source=Source.WORKER,
                worker=worker,
                detail={
                    "attempts": attempts,
                    "outcome_unknown": bool(result and result.outcome_unknown),
                },
            )
            _log_entry(msg, "failed", message_id=None, error=error)
            return Outcome(msg.message_id, Status.FAILED, error=error, attempts=attempts)
    except lifecycle.MoveRefused as exc:
        # Only possible if this worker outlived its lease; the log still tells the truth.
        if result is not None and result.ok:
            _log_entry(msg, "success", message_id=result.message_id, error=None)
            log.error("%s was SENT, but could not be recorded as sent: %s", msg.message_id, exc)
        else:
            log.error("%s: could not record the failure: %s", msg.message_id, exc)
        return Outcome(msg.message_id, "lost", error=str(exc), attempts=attempts)


def _error_text(result: SendResult) -> str:
    if result.outcome_unknown:
        return f"{OUTCOME_UNKNOWN} ({result.error})"
    tries = "attempt" if result.attempts == 1 else "attempts"
    return f"not sent after {result.attempts} {tries}: {result.error}"


def _log_entry(msg: Message, outcome: str, *, message_id: str | None, error: str | None) -> None:
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
    expired: list[str] = field(default_factory=list)
    paused: str = ""


class Sender:
    """One sender worker. `run_once()` is one poll; `run_forever()` is `--loop`.

    `say` receives the lines a person should read (paused, resumed, each
    outcome); `sleep` is what the retry waits call (tests patch it).
    """

    def __init__(
        self,
        client: GatewayClient,
        *,
        worker: str | None = None,
        send_timeout: float | None = None,
        say: Callable[[str], object] = log.info,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.client = client
        self.worker = worker or new_worker_id()
        self.send_timeout = send_timeout if send_timeout is not None else client.send_timeout
        self.say = say
        self.sleep = sleep
        self.paused_reason = ""
        # Set to stop after the send in flight (`--loop` sets it on SIGTERM/SIGINT).
        self.stop = threading.Event()
        self._last_beat = 0.0

    def run_once(self) -> RunSummary:
        """Expire dead leases, then send every claimable reply while the session allows."""
        summary = RunSummary(expired=expire_leases(actor=self.worker))
        for mid in summary.expired:
            self.say(f"{mid}: its sender died mid-send -> failed ({OUTCOME_UNKNOWN})")
        try:
            retry_config = rootstate.retry_config()
            lease = lease_seconds(retry_config, self.send_timeout)
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
            outcome = send_claimed(
                msg, self.client, worker=self.worker, retry_config=retry_config, sleep=self.sleep
            )
            self._report(outcome, summary)
            self.beat(state="sending")
            # A disconnect reported meanwhile stops the batch (no network call here).
            if not session.check(session.current()).valid:
                summary.paused = self._gate()
                self._note_pause(summary.paused)
        self.beat(state="paused" if summary.paused else "idle", reason=summary.paused, force=True)
        alerts.check_incidents()
        return summary

    def run_forever(self) -> None:
        """`--loop`: a run every `watcher_config.poll_interval_seconds` until `stop` is set."""
        while not self.stop.is_set():
            try:
                self.run_once()
            except Exception:
                # One bad poll (the database restarting, say) must not end the sender.
                log.exception("sender run failed; trying again next poll")
            self.stop.wait(_poll_interval())
        self.beat(state="stopped", force=True)

    def _gate(self) -> str:
        """Why sending must wait now, or "" when the session allows it.

        A session whose only fault is a stale `last_validation` is re-checked
        with /status here, so a healthy session does not stop the sending.
        """
        report = session.check(session.current())
        if report.valid:
            return ""
        failed = [rule.name for rule in report.rules if not rule.passed]
        if failed != ["fresh validation"]:
            return report.verdict
        check = session_health.check_gateway(
            self.client, actor=self.worker, source=Source.WORKER, with_info=False
        )
        if check.report.valid:
            self.say(
                "The session's validation was stale; the gateway says it is ready: validated now."
            )
            return ""
        if not check.reachable:
            return f"the session needs a fresh validation and the gateway did not answer: {check.error}"
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


def _poll_interval() -> float:
    value = rootstate.watcher_config().get("poll_interval_seconds")
    return float(value) if type(value) in (int, float) and value > 0 else 5.0
