"""What the queue page shows: the pending drafts, their cards and the counts.

Each helper runs a fixed number of queries whatever the volume: the incoming
messages a page's drafts answer come in one query (by their ids), the newer
messages of the same chats ("the customer wrote again") in another, and the
counts per status in one GROUP BY (plus the overdue count).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet

from statecore import stats
from statecore.lifecycle import MoveRefused
from statecore.models import Message, Status

PAGE_SIZE = 50
# A stale card shows the last few newer messages; the rest are counted.
NEWER_SHOWN = 3
DECIDED = (Status.APPROVED, Status.REJECTED)


def pending_drafts(filters: dict | None = None, *, now: datetime) -> QuerySet[Message]:
    """The drafts waiting for a decision, oldest first, narrowed by the filter form's values."""
    filters = filters or {}
    qs = Message.objects.pending()
    text = (filters.get("q") or "").strip()
    if text:
        qs = qs.filter(text_match(text))
    kind = filters.get("kind")
    if kind:
        # A draft does not say whether its chat is a group: the message it answers does.
        groups = Message.objects.filter(is_group=True).values("message_id")
        in_group = Q(is_group=True) | Q(reply_to__in=groups)
        qs = qs.filter(in_group) if kind == "group" else qs.exclude(in_group)
    waited = filters.get("waited")
    if waited:
        qs = qs.filter(timestamp__lte=now - timedelta(minutes=waited))
    return qs.order_by(F("timestamp").asc(nulls_last=True), "position", "pk")


def text_match(text: str) -> Q:
    """Replies whose text or recipient holds `text`, or that answer a message whose
    sender, name or text holds it (a subquery: still one query)."""
    senders = Message.objects.filter(
        Q(sender_name__icontains=text) | Q(sender__icontains=text) | Q(body__icontains=text)
    ).values("message_id")
    return Q(body__icontains=text) | Q(recipient__icontains=text) | Q(reply_to__in=senders)


def status_counts(*, now: datetime) -> dict[str, int]:
    """Messages per status (one GROUP BY), and the overdue pending ones (a range of the
    queue's index): two queries that read indexes only, whatever the volume."""
    cutoff = now - timedelta(minutes=settings.OVERDUE_MINUTES)
    overdue = Message.objects.pending().filter(timestamp__lt=cutoff).count()
    return stats.counts_per_status() | {"overdue": overdue}


@dataclass
class Card:
    """One draft with what its card needs: the message it answers and newer ones."""

    msg: Message
    now: datetime
    incoming: Message | None = None
    newer: list[Message] = field(default_factory=list)
    # The card's mode: "view", "edit", "reject", "confirm" (stale approve) or "notice".
    mode: str = "view"
    notice: str = ""

    @property
    def pending(self) -> bool:
        return self.msg.status == Status.PENDING_APPROVAL

    @property
    def stale(self) -> bool:
        return bool(self.newer)

    @property
    def newer_shown(self) -> list[Message]:
        return self.newer[-NEWER_SHOWN:]

    @property
    def newer_hidden(self) -> int:
        return max(0, len(self.newer) - NEWER_SHOWN)

    @property
    def newest_newer_pk(self) -> int:
        return self.newer[-1].pk if self.newer else 0

    @property
    def waited_seconds(self) -> int | None:
        if self.msg.timestamp is None:
            return None
        return max(0, int((self.now - self.msg.timestamp).total_seconds()))

    @property
    def overdue(self) -> bool:
        waited = self.waited_seconds
        return self.pending and waited is not None and waited >= settings.OVERDUE_MINUTES * 60

    @property
    def is_group(self) -> bool:
        return self.msg.is_group or bool(self.incoming and self.incoming.is_group)

    @property
    def chat(self) -> str:
        return self.msg.chat or (self.incoming.chat if self.incoming else "")

    @property
    def sender_name(self) -> str:
        return self.incoming.sender_name if self.incoming else ""

    @property
    def display_name(self) -> str:
        if self.sender_name:
            return self.sender_name
        if self.chat:
            return f"+{self.chat}" if self.chat.isdigit() else self.chat
        return "Unknown sender"

    @property
    def sort_key(self) -> str:
        """The queue's order as text, for the page's script to place cards that arrive later."""
        stamp = self.msg.timestamp.timestamp() if self.msg.timestamp else 99_999_999_999
        return f"{stamp:017.6f}:{self.msg.position:020d}:{self.msg.pk:012d}"

    @property
    def undo_seconds_left(self) -> int:
        """The Undo window: the sender claims an approved reply after the grace period."""
        if self.msg.status not in DECIDED or self.msg.claimed_at or not self.msg.status_updated_at:
            return 0
        passed = (self.now - self.msg.status_updated_at).total_seconds()
        return max(0, int(settings.APPROVAL_GRACE_SECONDS - passed))


def build_cards(drafts: Iterable[Message], *, now: datetime, with_newer: bool = True) -> list[Card]:
    """Cards for these drafts: two queries in all (answered messages, newer messages)."""
    drafts = list(drafts)
    answered = answered_messages(drafts)
    newer_by_pk = newer_messages(drafts) if with_newer else {}
    return [
        Card(
            msg=draft,
            now=now,
            incoming=answered.get(draft.reply_to),
            newer=newer_by_pk.get(draft.pk, []),
        )
        for draft in drafts
    ]


def answered_messages(drafts: Sequence[Message]) -> dict[str, Message]:
    """The incoming messages these drafts answer, by message id, in one query."""
    ids = {draft.reply_to for draft in drafts if draft.reply_to}
    if not ids:
        return {}
    return {m.message_id: m for m in Message.objects.filter(message_id__in=ids)}


def newer_messages(drafts: Sequence[Message]) -> dict[int, list[Message]]:
    """For each draft, what its chat wrote after the draft was made (oldest first), in one query.

    "Wrote" means a message that is not itself a reply and has a sender."""
    dated = [d for d in drafts if d.chat and d.timestamp]
    if not dated:
        return {}
    since = min(d.timestamp for d in dated)
    rows = (
        Message.objects.filter(chat__in={d.chat for d in dated}, reply_to="", timestamp__gt=since)
        .exclude(sender="")
        .order_by("timestamp", "pk")
    )
    by_chat: dict[str, list[Message]] = defaultdict(list)
    for row in rows:
        by_chat[row.chat].append(row)
    result: dict[int, list[Message]] = {}
    for draft in dated:
        later = [
            m
            for m in by_chat.get(draft.chat, [])
            if m.timestamp > draft.timestamp and m.message_id != draft.reply_to
        ]
        if later:
            result[draft.pk] = later
    return result


def is_stale(draft: Message) -> bool:
    return bool(newer_messages([draft]))


# --- Words for what happened ----------------------------------------------------

STATUS_DONE = {
    Status.APPROVED: "Approved",
    Status.REJECTED: "Rejected",
    Status.SENT: "Sent",
    Status.FAILED: "Failed",
    Status.PENDING_APPROVAL: "Back in the queue",
    Status.INCOMING: "Moved back to incoming",
}


def age(seconds: float | None) -> str:
    """A short human duration: "3 s", "12 min", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def status_notice(status: str | None, actor: str, when: datetime | None, *, now: datetime) -> str:
    """ "Approved by dana 3 s ago": what became of a reply someone else handled."""
    if status is None:
        return "This reply no longer exists."
    text = STATUS_DONE.get(status, str(status))
    if actor:
        text += f" by {actor}"
    if when:
        text += f" {age((now - when).total_seconds())} ago"
    return text


def refusal_notice(exc: MoveRefused, *, now: datetime) -> str:
    """The notice for a move the lifecycle refused (someone else was first)."""
    if exc.actual is not None and exc.reason and "claimed" in exc.reason:
        return "Already claimed for sending: it can no longer be undone."
    return status_notice(exc.actual, exc.last_actor, exc.last_changed_at, now=now)


def parse_shown(values: Iterable[str], limit: int = 200) -> dict[int, int]:
    """The poll's `shown` values, "<pk>-<newest newer pk>", as {pk: newest newer pk}.

    Anything malformed is ignored: they come from the page, not from a person."""
    shown: dict[int, int] = {}
    for value in list(values)[:limit]:
        pk, _, newest = value.partition("-")
        if pk.isdigit() and (newest.isdigit() or not newest):
            shown[int(pk)] = int(newest or 0)
    return shown
