"""Learning from reviewers: what became of the assistant's drafts, read from the audit log.

A draft's *decision* is its standing one: the last approve or reject of that draft
that no later approve, reject, undo or reopen replaced. A draft decided, undone
and decided again counts once, as its last decision, by its last decider, in the
window of that last decision; a draft undone or reopened and not decided since is
not counted at all (it is pending again). Decisions nobody reviewed (NOT_REVIEWERS:
the automation with human_in_the_loop off or a chat in `auto`, a chat set `off`)
teach nothing and are left out.

The outcome compares the text approved with the assistant's draft: *edited* when an
edit (edit_and_approve) with a distance above 0 stands in the text at that approval
(an edit then an undo then a plain approve is still edited: the undo keeps the
edited text), *rejected*, else *approved as drafted*. The edit's size is the
distance its audit row stored when it was saved (editdistance.py); an edit saved
before sizes were kept counts as edited and is not measured.

The overview's figures take one query, whatever the volume (the MAX_DECISIONS most
recent decisions of the longest window; the page says when that cap was reached).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db.models import IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Lower

from . import clock
from .lifecycle import AUTOMATIC_ACTORS, EDITED
from .models import AuditEvent, ChatMode, Message, Mode, Status

DECISIONS = ("approve", "reject")
# The moves that take a decision back: the draft is pending again until decided anew.
TAKEN_BACK = ("undo", "reopen")
# Actors whose decisions nobody reviewed: `auto`, and "chat off" (a draft added for a chat
# whose mode is `off`, rejected at once).
NOT_REVIEWERS = AUTOMATIC_ACTORS
PERIOD_DAYS = (7, 30)
MAX_DECISIONS = 20_000
TOP_REASONS = 5
# The turns of the conversation before the customer's message that a correction carries.
DEFAULT_TURNS = 6
MAX_TURNS = 50
# The size read for an edit whose audit row has none (saved before sizes were kept).
NOT_MEASURED = -1


class Outcome(StrEnum):
    AS_DRAFTED = "approved_as_drafted"
    EDITED = "edited"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    message_id: str
    actor: str
    at: datetime
    outcome: Outcome
    distance: int | None  # an edit's size; None when not edited (or not measured)
    reason: str  # a rejection's note, as given
    chat: str | None  # None when the draft is no longer stored


def normalised_reason(text: str) -> str:
    """A rejection reason as it is counted: trimmed, inner spaces collapsed, case-folded."""
    return " ".join(text.split()).casefold()


@dataclass
class Tally:
    """The outcomes of a set of decisions."""

    drafted: int = 0
    edited: int = 0
    rejected: int = 0
    sizes: list[int] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)

    def add(self, decision: Decision) -> None:
        if decision.outcome is Outcome.REJECTED:
            self.rejected += 1
            reason = normalised_reason(decision.reason)
            if reason:
                self.reasons[reason] += 1
        elif decision.outcome is Outcome.EDITED:
            self.edited += 1
            if decision.distance is not None:
                self.sizes.append(decision.distance)
        else:
            self.drafted += 1

    @property
    def decided(self) -> int:
        return self.drafted + self.edited + self.rejected

    @property
    def median_edit(self) -> float | None:
        return statistics.median(self.sizes) if self.sizes else None

    @property
    def top_reasons(self) -> list[tuple[str, int]]:
        """The TOP_REASONS most common, most first; a tie in the order of the text."""
        ranked = sorted(self.reasons.items(), key=lambda item: (-item[1], item[0]))
        return ranked[:TOP_REASONS]


@dataclass(frozen=True)
class Period:
    days: int
    everyone: Tally
    reviewers: list[tuple[str, Tally]]  # most decisions first


@dataclass(frozen=True)
class AutoSuggestion:
    chat: str
    run: int  # drafts approved as drafted in a row, the newest first


@dataclass(frozen=True)
class Learning:
    periods: list[Period]
    suggestions: list[AutoSuggestion]
    threshold: int
    capped: bool  # only the MAX_DECISIONS most recent decisions were read


def _later_than() -> Q:
    """Events after the outer row (the same instant: a higher id)."""
    return Q(created_at__gt=OuterRef("created_at")) | Q(
        created_at=OuterRef("created_at"), pk__gt=OuterRef("pk")
    )


def _of_the_draft(*actions: str) -> QuerySet:
    """The outer row's draft's events of these actions. `action` is compared through an
    expression: without statistics SQLite would otherwise look them up by the index on
    `action` (every approval ever, then a sort) instead of the one on `message_id`."""
    return AuditEvent.objects.annotate(act=Lower("action")).filter(
        message_id=OuterRef("message_id"), act__in=actions
    )


def _edits_of_the_draft() -> QuerySet:
    return _of_the_draft("approve").filter(note=EDITED)


def _edits_up_to_the_decision() -> QuerySet:
    """The edits of the outer row's draft made at or before it, the latest first."""
    return _edits_of_the_draft().exclude(_later_than()).order_by("-created_at", "-pk")


def standing_decisions(since: datetime | None = None, until: datetime | None = None) -> QuerySet:
    """Each draft's standing decision by a reviewer (see the module's docstring), newest
    first, annotated with `edit_size` (of the latest edit in its text: None when none,
    NOT_MEASURED for an edit saved before sizes were kept) and `chat` (None when the
    draft is no longer stored). `action` is compared through an expression, as
    stats._events explains: SQLite then walks `created_at` back from `until` instead
    of reading every decision ever made."""
    # The row is its draft's latest decision or take-back: a scalar subquery, looked up
    # by `message_id` for each row. (NOT EXISTS of a later one says the same, but
    # PostgreSQL without statistics turns it into a join that compares every pair.)
    latest = _of_the_draft(*DECISIONS, *TAKEN_BACK).order_by("-created_at", "-pk").values("pk")[:1]
    edits = _edits_up_to_the_decision()
    rows = (
        AuditEvent.objects.annotate(act=Lower("action"))
        .filter(act__in=DECISIONS)
        .exclude(message_id="")
        .exclude(actor__in=NOT_REVIEWERS)
        .filter(pk=Subquery(latest))
    )
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lte=until)
    return rows.annotate(
        edit_size=Subquery(edits.values(size=Coalesce(_stored_size(), NOT_MEASURED))[:1]),
        chat=Subquery(Message.objects.filter(message_id=OuterRef("message_id")).values("chat")[:1]),
    ).order_by("-created_at", "-pk")


def _stored_size() -> Cast:
    return Cast(KT("detail__distance"), IntegerField())


def _outcome(action: str, edit_size: int | None) -> Outcome:
    if action == "reject":
        return Outcome.REJECTED
    if edit_size is None or edit_size == 0:  # no edit, or one that kept the draft's text
        return Outcome.AS_DRAFTED
    return Outcome.EDITED


def _decision(row: dict) -> Decision:
    outcome = _outcome(row["action"], row["edit_size"])
    size = row["edit_size"]
    return Decision(
        message_id=row["message_id"],
        actor=row["actor"],
        at=row["created_at"],
        outcome=outcome,
        distance=size if outcome is Outcome.EDITED and size != NOT_MEASURED else None,
        reason=row["note"] if outcome is Outcome.REJECTED else "",
        chat=row["chat"],
    )


FIELDS = ("message_id", "action", "actor", "created_at", "note", "edit_size", "chat")


def decisions(now: datetime, days: int) -> tuple[list[Decision], bool]:
    """The standing decisions of the last `days` days, newest first (one query), and
    whether MAX_DECISIONS cut them."""
    rows = list(
        standing_decisions(since=now - timedelta(days=days), until=now).values(*FIELDS)[
            : MAX_DECISIONS + 1
        ]
    )
    return [_decision(row) for row in rows[:MAX_DECISIONS]], len(rows) > MAX_DECISIONS


def period(days: int, chosen: Iterable[Decision]) -> Period:
    everyone, per_reviewer = Tally(), {}
    for decision in chosen:
        everyone.add(decision)
        per_reviewer.setdefault(decision.actor, Tally()).add(decision)
    ranked = sorted(per_reviewer.items(), key=lambda item: (-item[1].decided, item[0]))
    return Period(days, everyone, ranked)


def chats_in_auto() -> Collection[str]:
    """Chats already in `auto` mode: nothing to suggest for them (one query)."""
    return frozenset(ChatMode.objects.filter(mode=Mode.AUTO).values_list("chat", flat=True))


def suggest_auto(
    newest_first: Iterable[Decision], *, threshold: int, skip: Collection[str] = ()
) -> list[AutoSuggestion]:
    """Chats whose latest `threshold` or more decided drafts in a row were approved as
    drafted (an edit or a rejection ends the run); a suggestion, never a change."""
    if threshold < 1:
        return []
    runs: Counter = Counter()
    ended: set[str] = set()
    for decision in newest_first:
        chat = decision.chat
        if not chat or chat in ended or chat in skip:
            continue
        if decision.outcome is Outcome.AS_DRAFTED:
            runs[chat] += 1
        else:
            ended.add(chat)
    found = [AutoSuggestion(chat, run) for chat, run in runs.items() if run >= threshold]
    return sorted(found, key=lambda s: (-s.run, s.chat))


def summary(now: datetime | None = None) -> Learning:
    """The overview's learning figures for each of PERIOD_DAYS, per reviewer too, and
    the chats to suggest for `auto` (over the longest period): two queries, the
    decisions and the chats already in `auto`."""
    now = now or clock.now()
    found, capped = decisions(now, max(PERIOD_DAYS))
    periods = [
        period(days, (d for d in found if d.at >= now - timedelta(days=days)))
        for days in PERIOD_DAYS
    ]
    threshold = settings.SUGGEST_AUTO_AFTER
    suggestions = suggest_auto(found, threshold=threshold, skip=chats_in_auto())
    return Learning(periods, suggestions, threshold, capped)


# --- The corrections: the assistant's dataset ---------------------------------------


def _first_edit_original() -> QuerySet:
    """The text before the draft's first edit: the assistant's own draft."""
    return (
        _edits_of_the_draft().order_by("created_at", "pk").values(text=KT("detail__original"))[:1]
    )


def _stored(name: str) -> Subquery:
    return Subquery(Message.objects.filter(message_id=OuterRef("message_id")).values(name)[:1])


def _customer(name: str) -> Subquery:
    return Subquery(Message.objects.filter(message_id=OuterRef("reply_to")).values(name)[:1])


def corrections(
    *, since: datetime | None = None, limit: int | None = None, turns: int = DEFAULT_TURNS
) -> Iterator[dict]:
    """One dict per standing decision of a stored draft, newest first (see `correction`),
    decided at or after `since`, at most `limit` of them. Streams: one query for the
    decisions (read in chunks) and one bounded query per correction for its context."""
    rows = (
        standing_decisions(since=since)
        .annotate(body=_stored("body"), reply_to=_stored("reply_to"))
        .filter(body__isnull=False)
        .annotate(
            assistant_draft=Subquery(_first_edit_original()),
            customer_id=_customer("message_id"),
            customer_text=_customer("body"),
            customer_at=_customer("timestamp"),
            customer_chat=_customer("chat"),
        )
        .values(*FIELDS, "body", "assistant_draft", *CUSTOMER)
    )
    if limit is not None:
        rows = rows[:limit]
    for row in rows.iterator(chunk_size=500):
        yield correction(row, turns)


CUSTOMER = ("customer_id", "customer_text", "customer_at", "customer_chat")


def correction(row: dict, turns: int) -> dict:
    """A decision as a line of the dataset. Keys, in this order: `draft_id`, `chat`,
    `customer_message` ({id, text, at} of the message the draft answers, or null),
    `context` (up to `turns` earlier messages of the chat, oldest first: `in` from the
    customer, `out` what we sent), `draft` (the assistant's text), `final` (the text
    approved to be sent; null when rejected), `outcome`, `reason` (a rejection's, as
    given; else null), `edit_distance` (0 as drafted, the stored size when edited,
    null when rejected or not measured), `decided_by`, `decided_at` (local time)."""
    decision = _decision(row)
    draft = row["assistant_draft"] if isinstance(row["assistant_draft"], str) else row["body"]
    rejected = decision.outcome is Outcome.REJECTED
    return {
        "draft_id": row["message_id"],
        "chat": row["chat"],
        "customer_message": _customer_message(row),
        "context": _context(row, turns),
        "draft": draft,
        "final": None if rejected else row["body"],
        "outcome": decision.outcome.value,
        "reason": (decision.reason or None) if rejected else None,
        "edit_distance": 0 if decision.outcome is Outcome.AS_DRAFTED else decision.distance,
        "decided_by": decision.actor,
        "decided_at": clock.local_iso(decision.at),
    }


def _when(moment: datetime | None) -> str | None:
    return clock.local_iso(moment) if moment else None


def _customer_message(row: dict) -> dict | None:
    if row["customer_id"] is None:
        return None
    return {"id": row["customer_id"], "text": row["customer_text"], "at": _when(row["customer_at"])}


def _context(row: dict, turns: int) -> list[dict]:
    """The chat's messages before the customer's: theirs (incoming) and ours as sent.
    Empty without a dated customer message (nothing to place the turns before)."""
    if turns < 1 or row["customer_id"] is None or row["customer_at"] is None:
        return []
    earlier = (
        Message.objects.filter(
            chat=row["customer_chat"],
            status__in=(Status.INCOMING, Status.SENT),
            timestamp__lt=row["customer_at"],
        )
        .order_by("-timestamp", "-position", "-pk")
        .values_list("status", "body", "timestamp")[:turns]
    )
    return [
        {"direction": "in" if status == Status.INCOMING else "out", "text": text, "at": _when(at)}
        for status, text, at in reversed(list(earlier))
    ]
