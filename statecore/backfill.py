"""Backfill: what a lost webhook missed, fetched back from a gateway that can list a chat.

WAHA and Evolution both lose a webhook now and then (GATEWAY.md: WAHA #2148,
#2250; Evolution #1738, #2647), and both can list a chat's recent messages
(`recent_messages(chat, since)`: WAHA NOWEB only with its store enabled,
Evolution only with message saving on). The receiving loop asks them, and
stores what is missing through `inbound.store_message`, deduped on the
message's bare id as the webhook stores it; the Drafter then drafts it like
any other `incoming` message.

Which chats. The gateway is asked per chat, so only chats we know of can be
backfilled: those with a customer's message stored in the last RECENT
(24 hours, the drafting window: an older message would not be drafted
anyway). A new customer whose very first message was lost cannot be found
this way; their next message brings them in, and the backfill of that chat
then finds the first one within the overlap.

When. Catch-up: after the session comes back (the loop sees it turn ready,
its first ready included, since webhooks may have been lost while it was
away), every chat of the last RECENT. Then every round: the chats with a
message in the last ACTIVE (2 hours), the conversations in progress. Either
way each chat is asked at most every CHAT_EVERY (5 minutes; catch-up starts
the clocks afresh), at most MAX_CHATS_PER_ROUND (10) chats a round, most
recently active first, and a round stops asking after MAX_FAILURES_PER_ROUND
(3) failures (the gateway is probably down; the rest wait for the next
round). With the loop's 5 s rounds that is at most 2 calls a second while
catching up, and one call per active chat every 5 minutes after: a shop with
60 chats going at once makes one call every 5 s.

Since when: the newest stored message of the chat minus OVERLAP (10 minutes:
a message lost just before one that arrived, or delivered out of order),
never earlier than the dedupe window (7 days).

Failures: a GatewayUnavailable is said once (again only when its words
change; "lists again" after a round with no failure), and that chat is asked
again after CHAT_EVERY; one chat failing does not stop the others. A
NotImplementedError means the adapter cannot list messages at all: said once,
and the backfill stays off for this process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Max

from . import clock, inbound
from .drafting import STATUS_BROADCAST
from .models import Message
from .whatsapp import DEDUPE_WINDOW, Gateway, GatewayUnavailable, InboundMessage

log = logging.getLogger(__name__)

ACTOR = "backfill"
RECENT = timedelta(hours=24)
ACTIVE = timedelta(hours=2)
CHAT_EVERY = timedelta(minutes=5)
MAX_CHATS_PER_ROUND = 10
MAX_FAILURES_PER_ROUND = 3
OVERLAP = timedelta(minutes=10)


@dataclass
class BackfillSummary:
    """What one round of backfill did."""

    chats: int = 0
    stored: int = 0
    already_stored: int = 0
    # Ids the state file refused, with the reason.
    refused: dict[str, str] = field(default_factory=dict)
    failed_chats: int = 0
    error: str = ""
    catching_up: int = 0
    off: str = ""

    def __str__(self) -> str:
        if self.off:
            return f"backfill off: {self.off}"
        text = (
            f"{self.chats} chats asked, {self.stored} stored, {self.already_stored} already stored"
        )
        if self.refused:
            text += f", {len(self.refused)} refused ({', '.join(self.refused)})"
        if self.failed_chats:
            text += f", {self.failed_chats} chats not answered: {self.error}"
        if self.catching_up:
            text += f", {self.catching_up} chats left to catch up"
        return text


class Backfiller:
    """Asks the gateway for what each recent chat received; `run_once()` is one round.

    `say` receives the lines a person should read (the command's output)."""

    def __init__(self, gateway: Gateway, *, say: Callable[[str], object] = log.info) -> None:
        self.gateway = gateway
        self.say = say
        # When each chat may be asked again (in memory: a restart is a catch-up anyway).
        self._next_ask: dict[str, datetime] = {}
        # Chats still to be asked since the session came back; None: none pending.
        self._catch_up: set[str] | None = None
        self._catch_up_due = False
        self._said_error = ""
        # Refused by the state file once (a NUL in it ...): not tried, nor warned of, again.
        self._refused: set[str] = set()
        self.off = ""

    def session_back(self) -> None:
        """The session turned ready: every recent chat is asked again, from now on."""
        self._catch_up_due = True
        self._next_ask.clear()

    def run_once(self) -> BackfillSummary:
        summary = BackfillSummary(off=self.off)
        if self.off:
            return summary
        now = clock.now()
        newest = _recent_chats(now, RECENT if self._catch_up_due or self._catch_up else ACTIVE)
        if self._catch_up_due:
            self._catch_up, self._catch_up_due = set(newest), False
        elif self._catch_up:
            self._catch_up &= set(newest)  # a chat that fell out of RECENT is done with
        failures = 0
        for chat in self._due(newest, now)[:MAX_CHATS_PER_ROUND]:
            if failures >= MAX_FAILURES_PER_ROUND:
                break
            since = max(newest[chat] - OVERLAP, now - DEDUPE_WINDOW)
            self._next_ask[chat] = now + CHAT_EVERY
            if self._ask(chat, since, summary):
                if self._catch_up:
                    self._catch_up.discard(chat)
            elif self.off:
                summary.off = self.off
                return summary
            else:
                failures += 1
        summary.catching_up = len(self._catch_up or ())
        self._forget_old(now)
        self._say_failures(summary)
        return summary

    def _say_failures(self, summary: BackfillSummary) -> None:
        # Once per round at most, and only when it changes: one chat failing round after
        # round while the others answer is said once.
        if summary.error and summary.error != self._said_error:
            self._warn(f"Could not backfill {summary.failed_chats} chat(s): {summary.error}")
        elif self._said_error and summary.chats and not summary.failed_chats:
            self.say("The gateway lists chats' messages again.")
        if summary.error or (summary.chats and not summary.failed_chats):
            self._said_error = summary.error

    def _due(self, newest: dict[str, datetime], now: datetime) -> list[str]:
        """Chats to ask now, most recently active first (the query's order)."""
        active_since = now - ACTIVE
        catch_up = self._catch_up or set()
        return [
            chat
            for chat, at in newest.items()
            if (at >= active_since or chat in catch_up) and self._next_ask.get(chat, now) <= now
        ]

    def _ask(self, chat: str, since: datetime, summary: BackfillSummary) -> bool:
        """One chat: True when the gateway answered (whatever was stored)."""
        summary.chats += 1
        try:
            messages = self.gateway.recent_messages(chat, since)
        except NotImplementedError:
            self.off = f"the {self.gateway.kind} gateway cannot list a chat's messages"
            self._warn(f"No backfill: {self.off}.")
            return False
        except GatewayUnavailable as exc:
            summary.failed_chats += 1
            summary.error = str(exc)
            return False
        store([m for m in messages if m.id not in self._refused], summary)
        self._refused.update(summary.refused)
        return True

    def _forget_old(self, now: datetime) -> None:
        # A chat silent for RECENT is no longer asked: its clock need not be kept.
        for chat in [c for c, at in self._next_ask.items() if at < now - RECENT]:
            del self._next_ask[chat]

    def _warn(self, text: str) -> None:
        log.warning("%s", text)
        if self.say != log.info:  # a person reads `say` too (the command's output)
            self.say(text)


def store(messages: list[InboundMessage], summary: BackfillSummary) -> None:
    """Store the customers' messages not stored yet: one query for the dedupe."""
    theirs = [m for m in messages if not m.from_me and not m.is_status_update]
    known = set(
        Message.objects.filter(message_id__in=[m.id for m in theirs]).values_list(
            "message_id", flat=True
        )
    )
    for message in theirs:
        if message.id in known:
            summary.already_stored += 1
            continue
        outcome = inbound.store_message(message, actor=ACTOR)
        known.add(message.id)
        if outcome == "stored":
            summary.stored += 1
            log.info("%s: stored by backfill (its webhook was lost)", message.id)
        elif outcome == "already stored":
            summary.already_stored += 1
        else:
            summary.refused[message.id] = outcome


def _recent_chats(now: datetime, within: timedelta) -> dict[str, datetime]:
    """Each chat with a customer's message stored within `within`: its newest, newest first."""
    rows = (
        # A customer's message has a sender; our replies and the phone's answers have none.
        Message.objects.filter(timestamp__gte=now - within)
        .exclude(sender="")
        .exclude(sender=STATUS_BROADCAST)
        .values("sender")
        .annotate(newest=Max("timestamp"))
        .order_by("-newest", "sender")
    )
    return {row["sender"]: row["newest"] for row in rows}
