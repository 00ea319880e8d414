"""The overview's figures, computed in the database with a fixed number of queries
whatever the volume (seven: the root row, counts per status from the count table,
two bounded fetches of waits, messages per hour, the oldest pending reply, the
heartbeat).

The rates come from the messages stored now, not from the counters: the
counters are totals ever counted (they only go up, and an old file's lists were
cut to 100 entries, so the two do not match, and are not meant to).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count, F, Func, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from . import clock, rootstate, session
from .lifecycle import AUTOMATIC_ACTORS
from .models import AuditEvent, Heartbeat, Message, Status
from .sending import HEARTBEAT_NAME, sender_stopped

WINDOW = timedelta(days=7)
# The percentiles are taken over at most this many of the most recent decisions
# (or sends) in the window: one bounded query, whatever the volume. At the
# volumes we expect (hundreds of replies a day) that is every one of the week.
MAX_WAITS = 5000


@dataclass(frozen=True)
class Rate:
    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None

    @property
    def percent(self) -> str:
        return "n/a" if self.value is None else f"{self.value * 100:.1f}%"


@dataclass(frozen=True)
class Waits:
    """Median and 90th percentile of a set of waits (None when there were none)."""

    count: int
    median: timedelta | None
    p90: timedelta | None
    capped: bool = False  # True: only the MAX_WAITS most recent were measured

    @classmethod
    def of(cls, durations: list[timedelta], *, capped: bool = False) -> Waits:
        if not durations:
            return cls(0, None, None, capped)
        ordered = sorted(durations)
        seconds = [d.total_seconds() for d in ordered]
        return cls(
            len(ordered),
            timedelta(seconds=statistics.median(seconds)),
            percentile(ordered, 90),
            capped,
        )


def percentile(ordered: list, p: float):
    """Nearest-rank percentile of a sorted list: the smallest value with at least
    p% of the values at or below it (90th of 1..10 is 9)."""
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Hour:
    start: datetime
    received: int = 0
    replies: int = 0

    @property
    def total(self) -> int:
        return self.received + self.replies


@dataclass
class Overview:
    now: datetime
    counts: dict[str, int]
    totals: dict
    success: Rate
    approval: Rate
    decision_waits: Waits
    send_waits: Waits
    hours: list[Hour]
    oldest_pending: Message | None
    session: session.SessionReport
    heartbeat: Heartbeat | None
    window: timedelta = field(default=WINDOW)

    @property
    def stored(self) -> int:
        return sum(self.counts.values())

    @property
    def sender_stopped(self) -> bool:
        """No heartbeat from the sender for longer than `sending.silent_after`."""
        return sender_stopped(self.heartbeat, self.now)


def success_rate(counts: dict[str, int]) -> Rate:
    """sent ÷ (sent + failed), of the replies stored now."""
    return Rate(counts[Status.SENT], counts[Status.SENT] + counts[Status.FAILED])


def approval_rate(counts: dict[str, int]) -> Rate:
    """approved (approved + sent + failed: a reviewer let them through) ÷ decided
    (those + rejected), of the replies stored now."""
    let_through = counts[Status.APPROVED] + counts[Status.SENT] + counts[Status.FAILED]
    return Rate(let_through, let_through + counts[Status.REJECTED])


def _bounded(rows) -> tuple[list[timedelta], bool]:
    """The waits of the MAX_WAITS most recent rows (end, start); a row without a
    start (its draft or approval is not stored) is not measured."""
    pairs = list(rows[: MAX_WAITS + 1])
    capped = len(pairs) > MAX_WAITS
    # A clock that went backwards (a script's timestamp in the future) is no wait.
    return [
        max(end - start, timedelta(0)) for end, start in pairs[:MAX_WAITS] if start is not None
    ], capped


def _events(*actions: str):
    """Audit events of these actions. `action` is compared through an expression
    on purpose: without statistics (no ANALYZE) SQLite would pick the index on
    `action` and read and sort every such event of the week; this way it walks
    `created_at` back from now and stops after MAX_WAITS, and the subqueries use
    the index on `message_id`."""
    return AuditEvent.objects.annotate(act=Lower("action")).filter(act__in=actions)


def decision_waits(now: datetime) -> Waits:
    """From the draft's timestamp to each approve/reject by a person in the window."""
    drafted = Message.objects.filter(message_id=OuterRef("message_id")).values("timestamp")[:1]
    rows = (
        _events("approve", "reject")
        .filter(created_at__gte=now - WINDOW, created_at__lte=now)
        # Decisions by the automation (human_in_the_loop off, a chat on auto or off) are
        # not waits for a person.
        .exclude(actor__in=AUTOMATIC_ACTORS)
        .annotate(drafted_at=Subquery(drafted))
        .order_by("-created_at", "-pk")
        .values_list("created_at", "drafted_at")
    )
    durations, capped = _bounded(rows)
    return Waits.of(durations, capped=capped)


def send_waits(now: datetime) -> Waits:
    """From the latest approval to each send (mark_sent) in the window."""
    approved = (
        _events("approve")
        .filter(message_id=OuterRef("message_id"), created_at__lte=OuterRef("created_at"))
        .order_by("-created_at", "-pk")
        .values("created_at")[:1]
    )
    rows = (
        _events("mark_sent")
        .filter(created_at__gte=now - WINDOW, created_at__lte=now)
        .annotate(approved_at=Subquery(approved))
        .order_by("-created_at", "-pk")
        .values_list("created_at", "approved_at")
    )
    durations, capped = _bounded(rows)
    return Waits.of(durations, capped=capped)


def hour_starts(now: datetime, window: timedelta = WINDOW) -> list[datetime]:
    """The local hours of the window, oldest first, the current hour last."""
    zone = timezone.get_current_timezone()
    starts: list[datetime] = []
    for back in range(int(window / timedelta(hours=1)) - 1, -1, -1):
        local = (now - timedelta(hours=back)).astimezone(zone)
        start = local.replace(minute=0, second=0, microsecond=0)
        if not starts or starts[-1] != start:
            starts.append(start)
    return starts


class HoursSince(Func):
    """Whole hours from `origin` to a moment (rounded down), in the database's own date
    arithmetic: SQLite's Trunc functions are Python callbacks, one call per row, which
    a busy week (ten thousand messages) turns into a third of the overview's time."""

    output_field = IntegerField()

    def __init__(self, expression, origin: datetime) -> None:
        super().__init__(expression)
        self.origin = int(origin.timestamp())

    def as_sqlite(self, compiler, connection, **extra):
        moment, params = compiler.compile(self.source_expressions[0])
        sql = f"((CAST(strftime('%%s', {moment}) AS INTEGER) - %s) / 3600)"
        return sql, (*params, self.origin)

    def as_sql(self, compiler, connection, **extra):
        moment, params = compiler.compile(self.source_expressions[0])
        return f"FLOOR((EXTRACT(EPOCH FROM {moment}) - %s) / 3600)::integer", (*params, self.origin)


def messages_per_hour(now: datetime) -> list[Hour]:
    """Messages by the local hour of their timestamp: received from customers and
    replies drafted, every hour of the window (empty ones too). The database counts
    per hour since the window's first (a local hour start, so each of its hours is one
    of the clock's, in half-hour zones too); Python names each by its local start."""
    starts = hour_starts(now)
    zone = timezone.get_current_timezone()
    rows = (
        Message.objects.filter(timestamp__gte=starts[0], timestamp__lte=now)
        .annotate(hour=HoursSince("timestamp", starts[0]))
        .order_by()
        .values("hour")
        .annotate(
            received=Count("pk", filter=Q(reply_to="")),
            replies=Count("pk", filter=~Q(reply_to="")),
        )
    )
    found: dict[datetime, tuple[int, int]] = {}
    for row in rows:
        # In UTC: an aware datetime plus a timedelta moves the wall clock, not time.
        start = (starts[0].astimezone(UTC) + timedelta(hours=row["hour"])).astimezone(zone)
        received, replies = found.get(start, (0, 0))
        found[start] = (received + row["received"], replies + row["replies"])
    return [Hour(start, *found.get(start, (0, 0))) for start in starts]


def oldest_pending() -> Message | None:
    """The pending reply whose draft is oldest (the customer waiting longest): the
    queue's first card, read off the queue's index."""
    return (
        Message.objects.pending()
        .order_by(F("timestamp").asc(nulls_last=True), "position", "pk")
        .only("pk", "message_id", "recipient", "body", "timestamp", "status")
        .first()
    )


def overview(now: datetime | None = None) -> Overview:
    now = now or clock.now()
    root = rootstate.get_root()
    counts = Message.objects.counts_per_status()
    return Overview(
        now=now,
        counts=counts,
        totals=rootstate.statistics(root),
        success=success_rate(counts),
        approval=approval_rate(counts),
        decision_waits=decision_waits(now),
        send_waits=send_waits(now),
        hours=messages_per_hour(now),
        oldest_pending=oldest_pending(),
        session=session.check(rootstate.session_data(root), now=now),
        heartbeat=Heartbeat.objects.filter(name=HEARTBEAT_NAME).first(),
    )
