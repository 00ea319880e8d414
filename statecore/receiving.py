"""The receiving loop: customers' messages in from the gateway, the session watched, drafts asked for.

One round (`Receiver.run_once`):

1. The session is watched: on the first round, on every round while the
   stored session is not valid or the gateway did not last say "ready", and
   otherwise at least every WATCH_EVERY, the gateway's status is asked and
   recorded by the session verbs (`session_check.check`: a QR, not ready,
   ready). A gateway that does not answer is said once per change, never fatal.
2. The unprocessed messages are pulled. Each is stored in `incoming` through
   the lifecycle (the object as the old watcher logged it), unless a message
   with that id is stored already, and then marked processed. Storing comes
   first: a crash between the two leaves it stored and unmarked, and the next
   round finds it stored and only marks it, so nothing is stored twice and
   nothing marked is lost. A contact's Status update (`status@broadcast`) is
   marked and not stored. A message the state file refuses is said with its
   id and the reason, left unmarked, and does not stop the others.
3. An answer as full as the gateway's buffer means it has already dropped some:
   said in the log and recorded on GatewayState (`inbound_gap`), between the
   last good poll and the oldest message in the answer.
4. With `ASSISTANT` set, drafts are asked for (`drafting.Drafter`).

The database work of a round is bounded: the dedupe is one query for the
whole answer, the rest is what `lifecycle.add_message` needs per new message.

Steps 2 and 3 are for a gateway that is polled (`traits.can_pull`: the scripts'
service). WAHA, Evolution and the Cloud API push customers' messages to
`/gateway/webhook`, which stores them in the request; for them a round
watches the session as above (WAHA's status brings its QR), then:

- backfills (`backfill.Backfiller`, where `traits.can_backfill`) while the
  gateway last said "ready": what a lost webhook missed is fetched back and
  stored once; every recent chat after the session turns ready (the loop's
  first ready included), the chats in progress every round;
- forgets webhook receipts and echoes older than the dedupe window
  (`inbound.prune`), at most every PRUNE_EVERY;
- drafts, as step 4: the Drafter drafts every undrafted `incoming` message,
  whoever stored it (the webhook, the backfill, a script).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from . import clock, lifecycle, loops, session, session_check
from .backfill import Backfiller, BackfillSummary
from .drafting import Drafter, DraftSummary
from .inbound import prune as prune_webhook_records
from .models import GatewayState, Message, Source, Status
from .whatsapp import Gateway, GatewayUnavailable, InboundMessage, State

log = logging.getLogger(__name__)

ACTOR = "receiver"
# While all is well the gateway's status is still asked this often.
WATCH_EVERY = timedelta(seconds=60)
# Receipts are kept for the 7-day dedupe window: pruning them hourly is plenty.
PRUNE_EVERY = timedelta(hours=1)


@dataclass
class ReceiveSummary:
    """What one round did."""

    stored: int = 0
    already_stored: int = 0
    status_updates: int = 0
    marked: int = 0
    # Ids the state file refused, with the reason: left unmarked.
    refused: dict[str, str] = field(default_factory=dict)
    pull_error: str = ""
    mark_error: str = ""
    gap: str = ""
    watched: bool = False
    watch_error: str = ""
    drafting: DraftSummary | None = None
    # A gateway that pushes (webhooks): no pull; what the backfill did, what was pruned.
    pushed: bool = False
    backfill: BackfillSummary | None = None
    pruned: int | None = None

    def __str__(self) -> str:
        if self.pushed:
            return self._pushed_text()
        if self.pull_error:
            text = f"no messages pulled: {self.pull_error}"
        else:
            text = (
                f"{self.stored} stored, {self.already_stored} already stored, "
                f"{self.status_updates} Status updates skipped, {self.marked} marked processed"
            )
            if self.refused:
                text += f", {len(self.refused)} refused ({', '.join(self.refused)})"
            if self.mark_error:
                text += f"; marking stopped: {self.mark_error}"
        if self.gap:
            text += f"; {self.gap}"
        if self.drafting is not None:
            text += f"; drafting: {self.drafting}"
        return text

    def _pushed_text(self) -> str:
        text = "customers' messages come by webhook"
        if self.watch_error:
            text += f"; the gateway did not answer: {self.watch_error}"
        if self.backfill is not None:
            text += f"; backfill: {self.backfill}"
        if self.pruned is not None:
            text += f"; {self.pruned} old webhook records pruned"
        if self.drafting is not None:
            text += f"; drafting: {self.drafting}"
        return text


class Receiver:
    """One receiving worker. `run_once()` is one round; `run_forever()` is `--loop`.

    `say` receives the lines a person should read. Raises ImproperlyConfigured
    at once when ASSISTANT names no usable function."""

    def __init__(self, gateway: Gateway, *, say: Callable[[str], object] = log.info) -> None:
        self.gateway = gateway
        self.say = say
        # Set to stop after the round in flight (`--loop` sets it on SIGTERM/SIGINT).
        self.stop = threading.Event()
        self.drafter = Drafter.from_settings(say=say, stop=self.stop)
        self._last_watch: datetime | None = None
        self._said_status: tuple | None = None
        self._said_unreachable = ""
        self._said_pull_error = ""
        traits = gateway.traits
        self.backfiller = (
            Backfiller(gateway, say=say) if traits.can_backfill and not traits.can_pull else None
        )
        self._was_ready = False
        self._last_prune: datetime | None = None

    def run_once(self) -> ReceiveSummary:
        summary = ReceiveSummary(pushed=not self.gateway.traits.can_pull)
        if self._watch_due():
            self._watch(summary)
        if summary.pushed:
            self._backfill(summary)
            self._prune(summary)
        else:
            self._receive(summary)
        if self.drafter is not None:
            summary.drafting = self.drafter.run_once()
        return summary

    def run_forever(self) -> None:
        """`--loop`: a round every `watcher_config.poll_interval_seconds` until `stop` is set."""
        loops.run_loop(self.run_once, interval=loops.poll_interval, stop=self.stop, name="receiver")

    # --- watching the session -------------------------------------------------------

    def _watch_due(self) -> bool:
        if self._last_watch is None or clock.now() - self._last_watch >= WATCH_EVERY:
            return True
        if not session.check(session.current()).valid:
            return True
        return session.gateway_state().state != "ready"

    def _watch(self, summary: ReceiveSummary) -> None:
        summary.watched = True
        self._last_watch = clock.now()
        check = session_check.check(self.gateway, actor=ACTOR, source=Source.WORKER)
        if not check.reachable:
            summary.watch_error = check.error
            if check.error != self._said_unreachable:
                self._warn(f"The gateway did not answer /status: {check.error}")
            self._said_unreachable = check.error
            return
        if self._said_unreachable:
            self.say("The gateway answers again.")
            self._said_unreachable = ""
        said = (check.status.state, check.status.reason)
        if said != self._said_status:
            self.say(f"The gateway says: {check.status.reason}. {check.report.verdict}.")
        self._said_status = said

    # --- a gateway that pushes: backfill and pruning ----------------------------------

    def _backfill(self, summary: ReceiveSummary) -> None:
        # What the gateway last said, whoever recorded it (our watch, or its webhook).
        ready = session.gateway_state().state == State.READY
        if ready and not self._was_ready and self.backfiller is not None:
            self.backfiller.session_back()
        self._was_ready = ready
        if ready and self.backfiller is not None:
            summary.backfill = self.backfiller.run_once()

    def _prune(self, summary: ReceiveSummary) -> None:
        now = clock.now()
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        summary.pruned = prune_webhook_records(now=now)
        self._last_prune = now

    # --- customers' messages --------------------------------------------------------

    def _receive(self, summary: ReceiveSummary) -> None:
        polled_at = clock.now()
        try:
            messages = self.gateway.pull_messages()
        except GatewayUnavailable as exc:
            summary.pull_error = str(exc)
            if summary.pull_error != self._said_pull_error:
                self._warn(f"Could not pull customers' messages: {exc}")
            self._said_pull_error = summary.pull_error
            return
        if self._said_pull_error:
            self.say("Customers' messages are pulled again.")
            self._said_pull_error = ""
        self._note_poll(messages, polled_at, summary)
        new_ids = [m.id for m in messages if not m.is_status_update]
        known = set(
            Message.objects.filter(message_id__in=new_ids).values_list("message_id", flat=True)
        )
        for inbound in messages:
            if inbound.is_status_update:
                summary.status_updates += 1
            elif inbound.id in known:
                summary.already_stored += 1
            elif self._store(inbound, summary):
                known.add(inbound.id)
            else:
                continue  # refused: left in the gateway's buffer, unmarked
            if not summary.mark_error:
                self._mark(inbound.id, summary)

    def _store(self, inbound: InboundMessage, summary: ReceiveSummary) -> bool:
        """Store one new message; True when it is stored now (by us or meanwhile by another)."""
        try:
            lifecycle.add_message(
                dict(inbound.stored), Status.INCOMING, actor=ACTOR, source=Source.GATEWAY
            )
        except ValueError as exc:
            if Message.objects.filter(message_id=inbound.id).exists():
                summary.already_stored += 1  # another receiver (or a script) was first
                return True
            summary.refused[inbound.id] = str(exc)
            self._warn(f"{inbound.id}: not stored, left unprocessed: {exc}")
            return False
        summary.stored += 1
        return True

    def _mark(self, message_id: str, summary: ReceiveSummary) -> None:
        try:
            self.gateway.mark_processed(message_id)
        except GatewayUnavailable as exc:
            # The rest of this answer is stored but not marked: the next round marks them.
            summary.mark_error = str(exc)
            self._warn(f"{message_id}: stored, but could not be marked processed: {exc}")
            return
        summary.marked += 1

    def _note_poll(
        self, messages: list[InboundMessage], polled_at: datetime, summary: ReceiveSummary
    ) -> None:
        """last_poll_at, and the gap when the answer was as full as the buffer: one UPDATE."""
        changes: dict[str, object] = {"last_poll_at": polled_at}
        if self.gateway.buffer_overflowed(len(messages)):
            last = GatewayState.objects.filter(pk=1).values_list("last_poll_at", flat=True).first()
            summary.gap = gap_sentence(last, _oldest(messages))
            self._warn(summary.gap)
            changes.update(inbound_gap=summary.gap, inbound_gap_at=clock.now())
        if not GatewayState.objects.filter(pk=1).update(**changes):
            session.gateway_state()
            GatewayState.objects.filter(pk=1).update(**changes)

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        if self.say != log.info:  # a person reads `say` too (the command's output)
            self.say(text)


def gap_sentence(last_poll: datetime | None, oldest: datetime | None) -> str:
    """What may have been lost, in the words of the log and `/session/` (local time)."""
    until = _local(oldest) if oldest else "the oldest message of that answer"
    if last_poll is None:
        return (
            f"The gateway's buffer was full: messages received before {until} may have been "
            "lost (no earlier good poll is recorded)."
        )
    return (
        f"The gateway's buffer was full: messages received between {_local(last_poll)} "
        f"and {until} may have been lost."
    )


def _local(moment: datetime) -> str:
    return clock.local_iso(moment)[:19].replace("T", " ")


def _oldest(messages: list[InboundMessage]) -> datetime | None:
    times = [_received_at(m) for m in messages]
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _received_at(inbound: InboundMessage) -> datetime | None:
    return inbound.received_at or clock.parse_timestamp(inbound.stored.get("timestamp"))
