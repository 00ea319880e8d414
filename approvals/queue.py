"""What the queue page shows: the pending drafts, their cards and the counts.

Each helper runs a fixed number of queries whatever the volume: the incoming
messages a page's drafts answer and the newer messages of the same chats ("the
customer wrote again", "answered from the phone") come in one query, the counts
per status in one GROUP BY (plus the overdue count), and with a reply window
(Cloud) when each chat's window closes in one more.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import reduce
from typing import NamedTuple

from django.conf import settings
from django.db.models import BooleanField, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Length
from django.db.models.lookups import Exact

from statecore import chat_modes, search, window
from statecore.lifecycle import MoveRefused, Refusal
from statecore.models import Message, Status

from .cards import Card, CardPage, is_from_phone
from .forms import db_id
from .present import age

PAGE_SIZE = 50
# Refused because the gateway cannot take the reply (Cloud: the window closed, a text
# too long): the draft stays pending, so its card stays live and says why, not a notice
# naming who was first.
GATEWAY_REFUSALS = frozenset({Refusal.WINDOW_CLOSED, Refusal.TOO_LONG})
# What a search reads of a reply, and of the customer's message it answers.
REPLY_FIELDS = ("body", "recipient")
ANSWERED_FIELDS = ("sender_name", "sender", "body")


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
        # A scalar subquery: one probe of the unique id per draft, where PostgreSQL turns
        # IN, and EXISTS too, into a hashed read of every group message once per page.
        answered = Message.objects.filter(message_id=OuterRef("reply_to")).values("is_group")[:1]
        answers_group = Coalesce(Subquery(answered), Value(False), output_field=BooleanField())
        in_group = Q(is_group=True) | Q(Exact(answers_group, True))
        qs = qs.filter(in_group) if kind == "group" else qs.exclude(in_group)
    waited = filters.get("waited")
    if waited:
        qs = qs.filter(timestamp__lte=now - timedelta(minutes=waited))
    return qs.order_by(F("timestamp").asc(nulls_last=True), "position", "pk")


def text_match(text: str) -> Q:
    """Replies whose text or recipient holds `text`, or that answer a message whose
    sender, name or text holds it (a subquery), found from the search index
    (statecore/search.py: case and accents folded)."""
    return search.replies_matching(text, REPLY_FIELDS, ANSWERED_FIELDS)


# The header counts every list but incoming: customers' own messages, the largest.
COUNTED = [status for status in Status.values if status != Status.INCOMING]


def status_counts(*, now: datetime) -> dict[str, int]:
    """Replies per status (the count table's rows, whatever the volume) and the overdue
    pending ones (a range of the queue's index): two small queries."""
    cutoff = now - timedelta(minutes=settings.OVERDUE_MINUTES)
    every = Message.objects.counts_per_status()
    counts = {status: every[status] for status in COUNTED}
    counts["overdue"] = Message.objects.pending().filter(timestamp__lt=cutoff).count()
    return counts


def build_cards(
    drafts: Iterable[Message],
    *,
    now: datetime,
    with_newer: bool = True,
    related: Related | None = None,
    viewer: str = "",
) -> list[Card]:
    """Cards for these drafts, as `viewer` sees them: one query for the messages they
    answer and (with_newer) what their chats wrote since, unless the caller has them
    (`related`); with a reply window (Cloud), one more for when the pending drafts'
    windows close."""
    drafts = list(drafts)
    if related is None:
        related = related_messages(drafts, newer=with_newer)
    page = CardPage(viewer)
    cards = [
        Card(
            msg=draft,
            now=now,
            incoming=related.answered.get(draft.reply_to),
            newer=related.newer.get(draft.pk, []),
            phone=related.phone.get(draft.pk, []),
            page=page,
        )
        for draft in drafts
    ]
    pending = [card for card in cards if card.pending]
    add_windows(pending)
    add_chat_modes(pending)
    return cards


def add_chat_modes(cards: Sequence[Card]) -> None:
    """Each card's chat mode: annotated on the drafts of a page (`chat_modes.annotate_modes`,
    no query), else one query for those that lack it."""
    unknown = [c for c in cards if getattr(c.msg, chat_modes.ANNOTATION, None) is None]
    modes = chat_modes.modes_of(c.msg.chat for c in unknown) if unknown else {}
    for card in cards:
        known = getattr(card.msg, chat_modes.ANNOTATION, None)
        # A draft that names no chat has no mode to show or set.
        card.chat_mode = (known or modes[card.msg.chat]) if card.msg.chat else ""


def add_windows(cards: Sequence[Card]) -> None:
    """When each card's reply window closes (Cloud): one query for them all; none at
    all when the gateway has no window."""
    if not cards or not window.applies():
        return
    closes = window.closes_at_for(card.chat for card in cards)
    for card in cards:
        card.window, card.closes = True, closes.get(card.chat)


class Related(NamedTuple):
    # The messages the drafts answer, by message id.
    answered: dict[str, Message]
    # For each draft (by pk), what its chat wrote after it, oldest first.
    newer: dict[int, list[Message]]
    # For each draft (by pk), a person's answers from the phone after it, oldest first.
    phone: dict[int, list[Message]]


def related_messages(
    drafts: Sequence[Message], *, answered: bool = True, newer: bool = True
) -> Related:
    """The messages these drafts answer, what their chats wrote after each draft and a
    person's answers from the phone after it, in one query. "Wrote" means a message that
    is not itself a reply and has a sender; an answer from the phone has neither (it is
    marked `from_phone` in its stored object)."""
    ids = {d.reply_to for d in drafts if d.reply_to} if answered else set()
    dated = [d for d in drafts if d.chat and d.timestamp] if newer else []
    wanted = []
    if ids:
        wanted.append(Q(message_id__in=ids))
    if dated:
        wanted.append(
            # "Not a reply" through an expression on purpose: SQLite (no statistics) would
            # otherwise walk the index on `reply_to` through every incoming message; this
            # way it reads the few rows of these chats off the index (chat, timestamp).
            Q(
                chat__in={d.chat for d in dated},
                timestamp__gt=min(d.timestamp for d in dated),
                reply_to_length=0,
            )
        )
    if not wanted:
        return Related({}, {}, {})
    rows = (
        Message.objects.alias(reply_to_length=Length("reply_to"))
        .filter(reduce(operator.or_, wanted))
        .order_by("timestamp", "pk")
    )
    found: dict[str, Message] = {}
    by_chat: dict[str, list[Message]] = defaultdict(list)
    from_phone: dict[str, list[Message]] = defaultdict(list)
    for row in rows:
        if row.message_id in ids:
            found[row.message_id] = row
        if row.reply_to or not row.timestamp:
            continue
        if is_from_phone(row):
            from_phone[row.chat].append(row)
        elif row.sender:
            by_chat[row.chat].append(row)
    later: dict[int, list[Message]] = {}
    answered_later: dict[int, list[Message]] = {}
    for draft in dated:
        wrote = [
            m
            for m in by_chat.get(draft.chat, [])
            if m.timestamp > draft.timestamp and m.message_id != draft.reply_to
        ]
        if wrote:
            later[draft.pk] = wrote
        answered = [m for m in from_phone.get(draft.chat, []) if m.timestamp > draft.timestamp]
        if answered:
            answered_later[draft.pk] = answered
    return Related(found, later, answered_later)


def answered_messages(drafts: Sequence[Message]) -> dict[str, Message]:
    """The incoming messages these drafts answer, by message id, in one query."""
    return related_messages(drafts, newer=False).answered


def newer_messages(drafts: Sequence[Message]) -> dict[int, list[Message]]:
    """For each draft, what its chat wrote after the draft was made, in one query."""
    return related_messages(drafts, answered=False).newer


# --- Words for what happened ----------------------------------------------------

STATUS_DONE = {
    Status.APPROVED: "Approved",
    Status.REJECTED: "Rejected",
    Status.SENT: "Sent",
    Status.FAILED: "Failed",
    Status.PENDING_APPROVAL: "Back in the queue",
    Status.INCOMING: "Moved back to incoming",
}


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
    """The notice for a move the lifecycle refused: someone else was first, the sender
    holds it, or an Undo that is not (or no longer) the reviewer's to make."""
    if exc.code in GATEWAY_REFUSALS:
        return exc.reason  # the gateway cannot take it: the reason is the news
    if exc.code == Refusal.CLAIMED:
        return "Already claimed for sending: it can no longer be undone or put back in the queue"
    decided = status_notice(exc.actual, exc.last_actor, exc.last_changed_at, now=now)
    if exc.code == Refusal.NOT_YOURS:
        who = exc.last_actor or "the one who decided it"
        return (
            f"{decided}: only {who} can undo it; it can be put back in the queue from the history"
        )
    if exc.code == Refusal.TOO_LATE:
        return (
            f"{decided}: too late to undo (the window is {settings.APPROVAL_GRACE_SECONDS} s); "
            "it can be put back in the queue from the history"
        )
    return decided


def parse_shown(values: Iterable[str], limit: int = 200) -> dict[int, int]:
    """The poll's `shown` values, "<pk>-<newest newer pk>", as {pk: newest newer pk}.

    Anything malformed is ignored: they come from the page, not from a person."""
    shown: dict[int, int] = {}
    for value in list(values)[:limit]:
        pk, _, newest = value.partition("-")
        card_id = db_id(pk)
        newest_id = 0 if newest in ("", "0") else db_id(newest)
        if card_id is not None and newest_id is not None:
            shown[card_id] = newest_id
    return shown
