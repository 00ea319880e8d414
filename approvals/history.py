"""What the history page shows: handled replies and the audit trail of each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Exists, F, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Upper
from django.db.models.lookups import Exact
from django.urls import reverse

from statecore import chat_modes
from statecore.lifecycle import failure_uncertain
from statecore.models import HANDLED, AuditEvent, Message, Status
from statecore.valuelists import listed

from .cards import mode_badge
from .present import who
from .queue import answered_messages, text_match

DECISIONS = ("approve", "reject")
# What a person does to a reply on these pages: the history's reviewer filter finds a
# reply by anyone who did one of these to it, not only who decided it.
REVIEWER_ACTIONS = (*DECISIONS, "undo", "reopen", "retry", "confirm_sent")
ACTION_LABELS = {
    "add": "Added",
    "submit": "Put in the queue",
    "approve": "Approved",
    "reject": "Rejected",
    "undo": "Undone: back in the queue",
    "reopen": "Put back in the queue",
    "send_held": "Send held: the gateway could not take it; it waits",
    "retry": "Retry asked",
    "confirm_sent": "Confirmed sent",
    "mark_sent": "Sent",
    "mark_failed": "Send failed",
    "delivery_failed": "Delivery failed after sending",
}
# How the gateway showed an uncertain send went out (reconcile.py), in words.
CONFIRMED_BY = {"echo": "the gateway's echo", "read-back": "reading the chat back"}


def handled_replies(filters: dict | None = None) -> QuerySet[Message]:
    """Approved, rejected, sent and failed replies, newest first, narrowed by the filters
    (`reviewer`: anyone who decided, undid, reopened, retried or confirmed it)."""
    filters = filters or {}
    # One list alone is a range of an index by status: not also "any handled status",
    # which makes PostgreSQL misjudge its size and sort it.
    status = filters.get("status")
    qs = Message.objects.filter(status=status) if status in HANDLED else Message.objects.handled()
    if filters.get("reviewer"):
        qs = qs.filter(_handled_by(filters["reviewer"]))
    if filters.get("q"):
        qs = qs.filter(text_match(filters["q"].strip()))
    return qs.order_by(F("status_updated_at").desc(nulls_last=True), "-pk")


# Up to this many of a person's events, the replies they handled are listed from the
# audit's index; past it (a reviewer of a busy shop: a hundred thousand a year), each
# reply is probed as the history is walked in its order, which finds a page at once.
REVIEWER_SPARSE = 20_000


def _handled_by(reviewer: str) -> Q:
    """Replies `reviewer` (in any case) decided, undid, reopened, retried or confirmed."""
    events = AuditEvent.objects.order_by().filter(
        Exact(Upper("actor"), Upper(Value(reviewer))), action__in=REVIEWER_ACTIONS
    )
    handled = list(events.values_list("message_id", flat=True)[: REVIEWER_SPARSE + 1])
    if len(handled) <= REVIEWER_SPARSE:
        # Handed over as a list: PostgreSQL, asked with a subquery, judged a name frequent
        # in the audit ("sender") frequent among these actions too, and walked the whole
        # history for none (2 s).
        return Q(message_id__in=listed(handled, "text"))
    return Q(Exists(events.filter(message_id=OuterRef("message_id"))))


@dataclass
class Step:
    """One audit event as the trail shows it."""

    event: AuditEvent

    @property
    def label(self) -> str:
        if self.event.action == "approve" and self.edited is not None:
            return "Edited and approved"
        confirmed_by = self.confirmed_by
        if confirmed_by:
            return f"Sent: confirmed by {CONFIRMED_BY.get(confirmed_by, confirmed_by)}"
        return ACTION_LABELS.get(
            self.event.action, self.event.action.replace("_", " ").capitalize()
        )

    @property
    def confirmed_by(self) -> str:
        detail = self.event.detail if isinstance(self.event.detail, dict) else {}
        value = detail.get("confirmed_by")
        return value if isinstance(value, str) else ""

    @property
    def original(self) -> str | None:
        value = self.event.detail.get("original") if isinstance(self.event.detail, dict) else None
        return value if isinstance(value, str) else None

    @property
    def edited(self) -> str | None:
        value = self.event.detail.get("edited") if isinstance(self.event.detail, dict) else None
        return value if isinstance(value, str) else None

    @property
    def extra(self) -> list[tuple[str, str]]:
        """Other detail keys (gateway ids, errors, attempts...) as text."""
        detail = self.event.detail if isinstance(self.event.detail, dict) else {}
        return [
            (key, value if isinstance(value, str) else str(value))
            for key, value in detail.items()
            if key not in {"original", "edited"} and value not in ("", None)
        ]


@dataclass
class Entry:
    msg: Message
    now: datetime
    incoming: Message | None = None
    steps: list[Step] = field(default_factory=list)
    notice: str = ""
    # The chat's mode (chat_modes).
    chat_mode: str = ""

    @property
    def chat_mode_url(self) -> str:
        return reverse("approvals:history-chat-mode", args=[self.msg.pk])

    @property
    def mode_badge(self) -> str:
        return mode_badge(self.chat_mode)

    @property
    def decision(self) -> Step | None:
        """The last approve or reject: who decided, and when."""
        for step in reversed(self.steps):
            if step.event.action in DECISIONS:
                return step
        return None

    @property
    def error(self) -> str:
        value = self.msg.data.get("error") if self.msg.status == Status.FAILED else None
        return value if isinstance(value, str) else ("" if value is None else str(value))

    @property
    def from_phone(self) -> bool:
        """A person's answer from the phone, kept as part of the conversation."""
        return self.msg.data.get("from_phone") is True

    @property
    def uncertain(self) -> bool:
        """Failed, and the send that failed may have gone out: the flag its audit row
        recorded (from the trail already loaded), never the error's wording."""
        if self.msg.status != Status.FAILED:
            return False
        for step in reversed(self.steps):
            event = step.event
            if event.to_status == Status.FAILED and event.from_status != Status.FAILED:
                return failure_uncertain(event)
        return False

    @property
    def sender_name(self) -> str:
        return self.incoming.sender_name if self.incoming else ""

    @property
    def chat(self) -> str:
        return self.msg.chat or (self.incoming.chat if self.incoming else "")

    @property
    def display_name(self) -> str:
        """Who the customer is, as the queue's card says it."""
        return who(self.sender_name, self.chat)

    @property
    def is_group(self) -> bool:
        return self.msg.is_group or bool(self.incoming and self.incoming.is_group)


def build_entries(messages: Iterable[Message], *, now: datetime) -> list[Entry]:
    """Entries with their answered message and trail: two queries in all, and one more for
    the chat modes unless the messages carry them (`chat_modes.annotate_modes`)."""
    messages = list(messages)
    answered = answered_messages(messages)
    unknown = [m for m in messages if getattr(m, chat_modes.ANNOTATION, None) is None]
    modes = chat_modes.modes_of(m.chat for m in unknown) if unknown else {}
    steps: dict[str, list[Step]] = defaultdict(list)
    ids = [m.message_id for m in messages]
    if ids:
        for event in AuditEvent.objects.filter(message_id__in=ids).order_by("created_at", "pk"):
            steps[event.message_id].append(Step(event))
    return [
        Entry(
            msg=m,
            now=now,
            incoming=answered.get(m.reply_to),
            steps=steps[m.message_id],
            chat_mode=_chat_mode(m, modes),
        )
        for m in messages
    ]


def _chat_mode(msg: Message, modes: dict[str, str]) -> str:
    """The message's chat mode, "" when it names no chat (nothing to show or set)."""
    if not msg.chat:
        return ""
    return getattr(msg, chat_modes.ANNOTATION, None) or modes[msg.chat]
