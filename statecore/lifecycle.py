"""The one lifecycle: every status change of a message is written here, and only here.

Each move is one short transaction: the row is locked (SQLite's IMMEDIATE
transactions serialise writers; PostgreSQL takes the row lock), then an UPDATE
guarded by the expected status (compare-and-set, row count checked) changes the
status, `status_updated_at`, the stored object and the lease; the counters and
`metadata.last_updated` move in the same transaction, and one audit event is
written. Network calls never happen in here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.fields.json import KT
from django.db.models.functions import Lower
from django.utils import timezone

from . import chat_modes, clock, rootstate
from .editdistance import edit_distance
from .models import AuditEvent, Message, Mode, Status
from .statefile.columns import dumps_compact, message_columns
from .statefile.rules import MESSAGE_RULES, validate_message

S = Status
# (from, to) -> the action that names the move in the audit log.
ALLOWED_MOVES: dict[tuple[str, str], str] = {
    (S.INCOMING, S.PENDING_APPROVAL): "submit",
    (S.PENDING_APPROVAL, S.APPROVED): "approve",
    (S.PENDING_APPROVAL, S.REJECTED): "reject",
    (S.APPROVED, S.SENT): "mark_sent",
    (S.APPROVED, S.FAILED): "mark_failed",
    # Deliberate human acts:
    (S.FAILED, S.APPROVED): "retry",
    (S.FAILED, S.SENT): "confirm_sent",
    # The gateway accepted it, then WhatsApp could not deliver it (a later status).
    (S.SENT, S.FAILED): "delivery_failed",
    # A decided reply back in the queue, whoever asks and however late (until the
    # sender holds it). The queue's Undo button makes the same moves under the name
    # "undo", for their decider within the grace window only (see `undo`).
    (S.APPROVED, S.PENDING_APPROVAL): "reopen",
    (S.REJECTED, S.PENDING_APPROVAL): "reopen",
}
REOPEN = "reopen"
UNDO = "undo"
EDIT_EXTRA_KEYS = "admin_edit"
# The note of an approval with an edited text (edit_and_approve).
EDITED = "edited"
MAX_REPLY_LENGTH = 65_536
NOT_CLAIMED = Q(claimed_at__isnull=True)
CLAIMED_REASON = "it has been claimed for sending"
LEASED_REASON = "the sender holds it (its lease has not run out); try again later"
# Who approves a draft when human_in_the_loop is off, or its chat is on auto; its
# decisions are nobody's wait.
AUTOMATIC_ACTOR = "auto"
# Who rejects a draft added for a chat that is off (chat_modes), and why.
CHAT_OFF_ACTOR = "chat off"
CHAT_OFF_NOTE = "the chat is off"
# Decisions no person made.
AUTOMATIC_ACTORS = (AUTOMATIC_ACTOR, CHAT_OFF_ACTOR)
# The flag a move into `failed` records in its audit detail when the send may have
# gone out (sending.OUTCOME_UNKNOWN): a person checks the phone before a retry.
UNCERTAIN_FLAG = "outcome_unknown"
# Keys the dashboard derives columns from or the lifecycle owns: never edited by hand.
KNOWN_MESSAGE_KEYS = ("id", *MESSAGE_RULES)


class Refusal(StrEnum):
    """Why a move was refused: what callers decide on (never the sentence)."""

    NOT_FOUND = "not_found"  # no message with this id
    NOT_ALLOWED = "not_allowed"  # the table has no such move from where it is
    WRONG_STATUS = "wrong_status"  # allowed in general, but it is not where the caller saw it
    CLAIMED = "claimed"  # a sender holds it (too late to undo or reopen)
    NOT_YOURS = "not_yours"  # an undo by someone other than who decided it
    TOO_LATE = "too_late"  # an undo after the grace window (a reopen is still possible)
    NOT_CLAIM_HOLDER = "not_claim_holder"  # a worker records a reply it no longer holds
    WINDOW_CLOSED = "window_closed"  # Cloud: the customer's 24-hour reply window has closed
    TOO_LONG = "too_long"  # longer than one send of the gateway carries (Cloud: 4,096)


class MoveRefused(ValueError):
    """A move the lifecycle does not allow now. Names the message, its actual
    status and who moved it last; `code` says why, for callers to decide on."""

    def __init__(
        self,
        message_id: str,
        *,
        actual: str | None,
        wanted: str,
        last_actor: str = "",
        last_changed_at=None,
        reason: str = "",
        code: Refusal = Refusal.WRONG_STATUS,
    ) -> None:
        self.message_id = message_id
        self.code = code
        self.actual = actual
        self.wanted = wanted
        self.last_actor = last_actor
        self.last_changed_at = last_changed_at
        self.reason = reason
        super().__init__(self._text())

    def _text(self) -> str:
        if self.actual is None:
            return f"{self.message_id}: no such message"
        text = f"{self.message_id}: cannot move to {self.wanted}: it is {self.actual}"
        if self.last_actor:
            text += f" (moved by {self.last_actor}"
            if self.last_changed_at:
                text += f" at {clock.local_iso(self.last_changed_at)}"
            text += ")"
        if self.reason:
            text += f"; {self.reason}"
        return text


class Conflict(Exception):
    """Someone else changed what the caller saw (and passed as `seen`); nothing was saved."""


class MessageNotFound(MoveRefused, LookupError):
    def __init__(self, message_id: str, wanted: str = "") -> None:
        super().__init__(message_id, actual=None, wanted=wanted, code=Refusal.NOT_FOUND)


@dataclass(frozen=True)
class Row:
    """A message named by its database key, as a page's link names it: a web action
    passes it to a verb, so the row is read once, locked, by the move itself."""

    pk: int

    def __str__(self) -> str:
        return f"message #{self.pk}"


# What a verb takes to name its message: the stored `id` (scripts, the admin, commands)
# or the row (pages).
MessageKey = str | Row


def _named(key: MessageKey) -> Q:
    return Q(pk=key.pk) if isinstance(key, Row) else Q(message_id=key)


def is_allowed(from_status: str, to_status: str) -> bool:
    return (from_status, to_status) in ALLOWED_MOVES


def move(
    message_id: MessageKey,
    to_status: str,
    *,
    actor: str,
    source: str,
    expected: Iterable[str] | None = None,
    note: str = "",
    detail: dict | Callable[[Message], dict] | None = None,
    set_keys: dict | None = None,
    drop_keys: Iterable[str] = (),
    guard: Q | None = None,
    guard_reason: str = "",
    guard_code: Refusal = Refusal.WRONG_STATUS,
    release_lease: bool = False,
    as_undo: bool = False,
) -> Message:
    """Move one message to `to_status` if the lifecycle allows it from where it is.

    `expected` narrows the statuses it may come from (the caller saw one);
    `detail`: the audit row's detail, or a function of the locked row giving it;
    `guard` adds a condition to the compare-and-set (e.g. not claimed for
    sending), `guard_reason` says why it failed. `set_keys`/`drop_keys` change the
    stored object with the move. `as_undo`: a reopen made as the queue's Undo,
    audited as "undo" and allowed only by the decider within the grace window.
    Raises MessageNotFound or MoveRefused; returns the fresh Message."""
    to_status = Status(to_status)
    with transaction.atomic():
        msg = Message.objects.select_for_update().filter(_named(message_id)).first()
        if msg is None:
            raise MessageNotFound(str(message_id), to_status)
        action = ALLOWED_MOVES.get((msg.status, to_status))
        allowed_from = set(expected) if expected is not None else None
        if action is None:
            raise _refusal(msg, to_status, code=Refusal.NOT_ALLOWED)
        if allowed_from is not None and msg.status not in allowed_from:
            raise _refusal(msg, to_status)
        if as_undo:
            if action != REOPEN:
                raise _refusal(msg, to_status, code=Refusal.NOT_ALLOWED)
            _check_undo(msg, to_status, actor)
            action = UNDO
        # Rules of the move itself, whoever asks for it (a verb, move_message, admin):
        if action in (REOPEN, UNDO):  # too late once the sender holds it
            guard = NOT_CLAIMED if guard is None else guard & NOT_CLAIMED
            guard_reason = guard_reason or CLAIMED_REASON
            guard_code = Refusal.CLAIMED
        elif action == "retry":  # a new send: the failed attempt's lease is over
            release_lease = True
        if action in ("approve", "retry"):
            guard, guard_reason, guard_code = _gateway_rules(
                msg, set_keys, guard, guard_reason, guard_code
            )

        now = clock.now()
        data = json.loads(msg.raw)
        for key in drop_keys:
            data.pop(key, None)
        data.update(set_keys or {})
        data["status"] = to_status.value
        data["status_updated_at"] = clock.local_iso(now)
        changes = {
            **_derived_columns(data, to_status),
            "status": to_status,
            "status_updated_at": now,  # the instant itself, not its text read back
            "status_changed_by": actor[:150],
            "position": time.time_ns(),
        }
        if release_lease:
            changes.update(claimed_by="", claimed_at=None, lease_until=None)
        cas = Message.objects.filter(pk=msg.pk, status=msg.status)
        if guard is not None:
            cas = cas.filter(guard)
        if cas.update(**changes) != 1:
            raise _refusal(msg, to_status, reason=guard_reason, code=guard_code)
        rootstate.count_arrival(to_status)
        if callable(detail):
            detail = detail(msg)
        _audit(msg.message_id, action, msg.status, to_status, actor, source, note, detail, now)
        for field, value in changes.items():
            setattr(msg, field, value)
    return msg


def _derived_columns(data: dict, status: str) -> dict:
    """Every column derived from the stored object (all of them, so no key change can
    leave one stale), but the id: a row never changes who it is."""
    columns = message_columns(data, status)
    del columns["message_id"]
    return columns


def _gateway_rules(
    msg: Message, set_keys: dict | None, guard: Q | None, reason: str, code: Refusal
) -> tuple[Q | None, str, Refusal]:
    """What the configured gateway refuses, for a reply about to go to the sender: a text
    longer than one send carries (window.TextTooLong, at once) and, with a reply window
    (Cloud), a closed window (a condition of the compare-and-set, Refusal.WINDOW_CLOSED)."""
    from . import window  # window.py imports this module

    text = (set_keys or {}).get("body", msg.body)
    if isinstance(text, str) and window.too_long(text):
        raise window.TextTooLong(
            msg.message_id, length=len(text), limit=window.text_limit(), actual=msg.status
        )
    open_now = window.open_guard(clock.now())
    if open_now is None:
        return guard, reason, code
    return (
        open_now if guard is None else guard & open_now,
        window.WINDOW_CLOSED_TEXT,
        Refusal.WINDOW_CLOSED,
    )


def _check_undo(msg: Message, to_status: str, actor: str) -> None:
    """An undo takes back one's own decision of a moment ago; anything else is a reopen.
    Checked on the locked row; the claim first: once it is held, nobody can."""
    if msg.claimed_at is not None:
        raise _refusal(msg, to_status, CLAIMED_REASON, Refusal.CLAIMED)
    if msg.status_changed_by != actor[:150]:
        reason = f"only {msg.status_changed_by or 'who decided it'} can undo it"
        raise _refusal(msg, to_status, reason, Refusal.NOT_YOURS)
    # The same instant the sender starts to claim it from (sending.claimable): the two never overlap.
    cutoff = clock.now() - timedelta(seconds=settings.APPROVAL_GRACE_SECONDS)
    if msg.status_updated_at is None or msg.status_updated_at <= cutoff:
        reason = f"the {settings.APPROVAL_GRACE_SECONDS} s to undo it have passed"
        raise _refusal(msg, to_status, reason, Refusal.TOO_LATE)


def _refusal(
    msg: Message, to_status: str, reason: str = "", code: Refusal = Refusal.WRONG_STATUS
) -> MoveRefused:
    return MoveRefused(
        msg.message_id,
        actual=msg.status,
        wanted=to_status,
        last_actor=msg.status_changed_by,
        last_changed_at=msg.status_updated_at,
        reason=reason,
        code=code,
    )


def _audit(message_id, action, from_status, to_status, actor, source, note, detail, when) -> None:
    AuditEvent.objects.create(
        message_id=message_id,
        action=action,
        from_status=from_status or "",
        to_status=to_status or "",
        actor=actor[:150],
        source=source,
        note=note,
        detail=detail or {},
        created_at=when,
    )


# --- The verbs ----------------------------------------------------------------


def submit(message_id: MessageKey, *, actor: str, source: str) -> Message:
    """incoming -> pending_approval (for scripts that use that move)."""
    return move(message_id, S.PENDING_APPROVAL, expected=[S.INCOMING], actor=actor, source=source)


def approve(message_id: MessageKey, *, actor: str, source: str, note: str = "") -> Message:
    """A reviewer approves the draft as it is.

    With a gateway that refuses it (see `_gateway_rules`: Cloud's closed window, a text
    too long) the move is refused. The automation (actor "auto": add_message with
    human_in_the_loop off) then leaves the draft pending for a person (a doomed send
    helps nobody), with an audited `auto_approve_refused` saying why."""
    from . import window  # window.py imports this module

    try:
        return move(
            message_id,
            S.APPROVED,
            expected=[S.PENDING_APPROVAL],
            actor=actor,
            source=source,
            note=note,
        )
    except MoveRefused as exc:
        gateway_refuses = exc.code == Refusal.WINDOW_CLOSED or isinstance(exc, window.TextTooLong)
        if actor != AUTOMATIC_ACTOR or not gateway_refuses:
            raise
        _audit(
            exc.message_id,
            "auto_approve_refused",
            S.PENDING_APPROVAL,
            S.PENDING_APPROVAL,
            actor,
            source,
            exc.reason,
            {"code": str(exc.code)},
            clock.now(),
        )
        return Message.objects.get(message_id=exc.message_id)


def edit_and_approve(message_id: MessageKey, text: str, *, actor: str, source: str) -> Message:
    """A reviewer replaces the draft's text and approves it; the audit event keeps both.
    Refused as `approve` is when the gateway would refuse it.

    The detail holds `original` (the text before this edit), `edited`, and `distance`:
    the edit distance (editdistance.py) from the assistant's draft to `edited`. The
    assistant's draft is `original`, or after an undo or a reopen of an edited reply
    the first edit's `original`, so a second edit measures the whole correction.
    `distance_capped: true` when the texts were too long to measure exactly."""
    if not text.strip():
        raise ValueError(f"{message_id}: the edited reply is empty")
    if len(text) > MAX_REPLY_LENGTH:
        raise ValueError(f"{message_id}: the edited reply is over {MAX_REPLY_LENGTH} characters")
    return move(
        message_id,
        S.APPROVED,
        expected=[S.PENDING_APPROVAL],
        actor=actor,
        source=source,
        set_keys={"body": text},
        # The draft as the locked row holds it: what was replaced, not what a page saw.
        detail=lambda draft: {
            "original": draft.body,
            "edited": text,
            **_edit_size(draft.message_id, draft.body, text),
        },
        note=EDITED,
    )


def _edit_size(message_id: str, original: str, text: str) -> dict:
    """Measured under the row's lock (the original is the locked row's); editdistance caps
    the work at a tenth of a second or so, and a draft's text is usually short."""
    # `action` through an expression: SQLite then finds the draft's few events by its id
    # instead of reading every approval through the index on `action`.
    draft = (
        AuditEvent.objects.annotate(act=Lower("action"))
        .filter(message_id=message_id, act="approve", note=EDITED)
        .order_by("created_at", "pk")
        .values_list(KT("detail__original"), flat=True)
        .first()
    )
    distance = edit_distance(draft if isinstance(draft, str) else original, text)
    return {"distance": distance.value} | ({} if distance.exact else {"distance_capped": True})


def reject(message_id: MessageKey, *, actor: str, source: str, reason: str = "") -> Message:
    return move(
        message_id,
        S.REJECTED,
        expected=[S.PENDING_APPROVAL],
        actor=actor,
        source=source,
        note=reason,
    )


def undo(message_id: MessageKey, *, actor: str, source: str) -> Message:
    """The queue's Undo: approved | rejected -> pending_approval, audited as "undo".

    Only by the one who decided it (Refusal.NOT_YOURS), within APPROVAL_GRACE_SECONDS
    of the decision (Refusal.TOO_LATE), and never once the sender holds it
    (Refusal.CLAIMED). Later or by someone else, it is a `reopen`."""
    return move(
        message_id,
        S.PENDING_APPROVAL,
        expected=[S.APPROVED, S.REJECTED],
        actor=actor,
        source=source,
        as_undo=True,
    )


def reopen(message_id: MessageKey, *, actor: str, source: str, note: str = "") -> Message:
    """A decided reply back in the queue, however long ago it was decided: approved
    (not yet claimed for sending, else Refusal.CLAIMED) | rejected -> pending_approval,
    audited as "reopen". Who may ask is the caller's to check (`statecore.reopen_message`)."""
    return move(
        message_id,
        S.PENDING_APPROVAL,
        expected=[S.APPROVED, S.REJECTED],
        actor=actor,
        source=source,
        note=note,
    )


def retry(message_id: MessageKey, *, actor: str, source: str, note: str = "") -> Message:
    """failed -> approved: a person asks for another send. With a reply window (Cloud)
    refused with Refusal.WINDOW_CLOSED until the customer writes again."""
    return move(
        message_id,
        S.APPROVED,
        expected=[S.FAILED],
        actor=actor,
        source=source,
        note=note,
        drop_keys=["error"],
    )


def confirm_sent(message_id: MessageKey, *, actor: str, source: str, note: str = "") -> Message:
    """failed -> sent: a person confirmed on the phone that an uncertain send went out."""
    return move(message_id, S.SENT, expected=[S.FAILED], actor=actor, source=source, note=note)


def mark_sent(
    message_id: str,
    *,
    actor: str,
    source: str,
    gateway_message_id: str = "",
    worker: str | None = None,
    detail: dict | None = None,
) -> Message:
    """approved -> sent. With `worker`, only while that worker holds the claim."""
    return move(
        message_id,
        S.SENT,
        expected=[S.APPROVED],
        actor=actor,
        source=source,
        detail={"gateway_message_id": gateway_message_id, **(detail or {})},
        guard=Q(claimed_by=worker) if worker else None,
        guard_reason=f"it is not claimed by {worker}",
        guard_code=Refusal.NOT_CLAIM_HOLDER,
    )


def mark_failed(
    message_id: str,
    error: str,
    *,
    actor: str,
    source: str,
    worker: str | None = None,
    detail: dict | None = None,
    unless_leased: bool = False,
) -> Message:
    """approved -> failed, with the error kept in the stored object as the old sender did.

    `worker`: only while that worker holds the claim (Refusal.NOT_CLAIM_HOLDER).
    `unless_leased`: a person marking a stuck reply failed; refused while a sender holds
    a live lease (Refusal.CLAIMED): it may be sending right now, and a retry after this
    would send the reply twice. A lease that ran out no longer protects it."""
    guard, reason, code = None, "", Refusal.WRONG_STATUS
    if worker:
        guard, reason, code = (
            Q(claimed_by=worker),
            f"it is not claimed by {worker}",
            (Refusal.NOT_CLAIM_HOLDER),
        )
    if unless_leased:
        no_live_lease = Q(lease_until__isnull=True) | Q(lease_until__lte=clock.now())
        guard = no_live_lease if guard is None else guard & no_live_lease
        reason, code = LEASED_REASON, Refusal.CLAIMED
    return move(
        message_id,
        S.FAILED,
        expected=[S.APPROVED],
        actor=actor,
        source=source,
        note=error,
        set_keys={"error": error},
        detail={"error": error, **(detail or {})},
        guard=guard,
        guard_reason=reason,
        guard_code=code,
    )


def failure_uncertain(event: AuditEvent | None) -> bool:
    """Whether this move into `failed` recorded that the send may have gone out: the
    audit row's flag, never the error's wording."""
    return (
        event is not None
        and event.to_status == S.FAILED
        and isinstance(event.detail, dict)
        and event.detail.get(UNCERTAIN_FLAG) is True
    )


def last_failure_uncertain(message_id: str) -> bool:
    """Whether the move that last put this message in `failed` was an uncertain send
    (see `failure_uncertain`); False when it never failed. One query."""
    last = (
        AuditEvent.objects.filter(message_id=message_id, to_status=S.FAILED)
        .exclude(from_status=S.FAILED)
        .order_by("-created_at", "-pk")
        .first()
    )
    return failure_uncertain(last)


def delivery_failed(
    message_id: str, error: str, *, actor: str, source: str, detail: dict | None = None
) -> Message:
    """sent -> failed: the gateway reported later that WhatsApp could not deliver it.
    `total_failed` counts it; `total_sent` keeps it (it was sent)."""
    return move(
        message_id,
        S.FAILED,
        expected=[S.SENT],
        actor=actor,
        source=source,
        note=error,
        set_keys={"error": error},
        detail={"error": error, "delivery_failed": True, **(detail or {})},
    )


def settle_sent(
    message_id: str, *, gateway_message_id: str, confirmed_by: str, actor: str, source: str
) -> Message:
    """failed (outcome unknown) -> sent: the gateway showed the send went out after all
    (`confirmed_by`: "echo" or "read-back"), so no person has to check the phone."""
    return move(
        message_id,
        S.SENT,
        expected=[S.FAILED],
        actor=actor,
        source=source,
        note=f"confirmed by the gateway ({confirmed_by})",
        drop_keys=["error"],
        detail={"gateway_message_id": gateway_message_id, "confirmed_by": confirmed_by},
    )


def release(message_id: str, reason: str, *, worker: str, actor: str, source: str) -> Message:
    """Lift `worker`'s claim without a status change: the send was held, nothing went out.

    The reply stays approved with its approval time and queue order, and goes
    out once the session is back. One audited `send_held` row per hold, not per
    poll: a reply held again with nothing in between writes none. No
    `message_log` entry: nothing was sent or failed."""
    with transaction.atomic():
        msg = Message.objects.select_for_update().filter(message_id=message_id).first()
        if msg is None:
            raise MessageNotFound(message_id, S.APPROVED)
        held = Message.objects.filter(pk=msg.pk, status=S.APPROVED, claimed_by=worker).update(
            claimed_by="", claimed_at=None, lease_until=None
        )
        if held != 1:
            code = Refusal.NOT_CLAIM_HOLDER if msg.status == S.APPROVED else Refusal.WRONG_STATUS
            raise _refusal(msg, S.APPROVED, reason=f"it is not claimed by {worker}", code=code)
        last = AuditEvent.objects.filter(message_id=message_id).values_list("action", flat=True)
        if last.first() != "send_held":
            _audit(
                message_id,
                "send_held",
                S.APPROVED,
                S.APPROVED,
                actor,
                source,
                reason,
                {},
                clock.now(),
            )
        msg.claimed_by, msg.claimed_at, msg.lease_until = "", None, None
    return msg


def extra_keys(data: dict) -> dict:
    """The part of a message object a person may edit by hand (`edit_extra_keys`)."""
    return {key: value for key, value in data.items() if key not in KNOWN_MESSAGE_KEYS}


def with_extra_keys(data: dict, extra: dict) -> dict:
    """`data` with its extra keys replaced by `extra`: known keys stay where
    they were, kept extra keys keep their place, new ones go last."""
    merged = {
        key: (value if key in KNOWN_MESSAGE_KEYS else extra[key])
        for key, value in data.items()
        if key in KNOWN_MESSAGE_KEYS or key in extra
    }
    merged.update({key: value for key, value in extra.items() if key not in merged})
    return merged


def edit_extra_keys(message_id: str, extra: dict, *, seen: dict, actor: str, source: str) -> bool:
    """Replace a message's extra keys (no status change), if they are still `seen`.

    Raises Conflict when someone (the sender, another person) changed them since;
    ValueError when `extra` names a key the dashboard keeps. The stored object and
    every derived column are rewritten together under the row lock, with one audit
    event holding before and after. False (and no row) when nothing changed."""
    refused = [key for key in extra if key in KNOWN_MESSAGE_KEYS]
    if refused:
        raise ValueError(f"{message_id}: {', '.join(refused)}: kept by the dashboard")
    with transaction.atomic():
        msg = Message.objects.select_for_update().filter(message_id=message_id).first()
        if msg is None:
            raise MessageNotFound(message_id)
        data = msg.data
        before = extra_keys(data)
        if before != seen:
            raise Conflict(
                f"{message_id}: its extra keys were changed since you opened it "
                "(by the sender or another admin); nothing saved. They are shown as they are now."
            )
        if before == extra:
            return False
        columns = _derived_columns(with_extra_keys(data, extra), msg.status)
        Message.objects.filter(pk=msg.pk).update(**columns)
        rootstate.touch()
        _audit(
            message_id,
            EDIT_EXTRA_KEYS,
            "",
            "",
            actor,
            source,
            "extra keys edited",
            {"before": before, "after": extra},
            clock.now(),
        )
    return True


def add_message(
    message_data: dict, status: str, *, actor: str, source: str, counted: bool = True
) -> Message:
    """Store a new message object in `status`, counted as the old code counted.

    Adds `timestamp` (now) to the caller's dict when it has none, as the old code
    did. An id already stored raises instead of making a second copy. A draft added
    to pending_approval is decided at once when its chat's mode says so (see
    `_apply_chat_mode`: `auto`, or `human_in_the_loop` false, approves it, actor
    "auto"; `off` rejects it, and so a reply added straight to approved too).
    `counted=False`: kept without counting it (an answer from the phone is not one
    of our sends)."""
    status = Status(status)
    if not isinstance(message_data, dict):
        raise TypeError("message_data must be a dict")
    if not isinstance(message_data.get("id"), str) or not message_data["id"]:
        raise ValueError("message_data needs a string 'id'")
    # What an import would refuse cannot come in this way either (a NUL that
    # PostgreSQL cannot store, an id too long, a wrong type an export would carry).
    problems = validate_message(message_data, status.value)
    if problems:
        raise ValueError("; ".join(f"{place}: {problem}" for place, problem in problems))
    if "timestamp" not in message_data:
        message_data["timestamp"] = clock.local_iso()
    data = json.loads(dumps_compact(message_data))  # refuse what JSON cannot hold, early
    now = clock.now()
    columns = message_columns(data, status)
    note = ""
    try:
        with transaction.atomic():
            if status == S.APPROVED and chat_modes.mode_of(columns["chat"]) == Mode.OFF:
                # A reply a script approves itself, for a chat that is off: added as a
                # draft and rejected below like any other, so nothing is sent.
                status = columns["status"] = S.PENDING_APPROVAL
                note = f"added as approved; {CHAT_OFF_NOTE}"
            msg = Message.objects.create(position=time.time_ns(), **columns)
            rootstate.count_arrival(status, touch_only=not counted)
            _audit(msg.message_id, "add", "", status, actor, source, note, {}, now)
            if status == S.PENDING_APPROVAL:
                # In the same transaction: no reviewer ever sees it pending.
                msg = _apply_chat_mode(msg, source)
    except IntegrityError:
        if Message.objects.filter(message_id=data["id"]).exists():
            raise ValueError(f"{data['id']}: a message with this id is already stored") from None
        raise
    return msg


def _apply_chat_mode(draft: Message, source: str) -> Message:
    """What the draft's chat mode (`chat_modes`) says of a new draft: `off`, rejected at
    once (actor "chat off": nothing is sent, the caller gets no error); `auto`, approved
    at once by the same path as a person's approve; `review`, approved at once only when
    `human_in_the_loop` is off. Where a draft is added, whoever adds it; an import is
    not an addition (the file is the state as it was) and is never decided here."""
    mode = chat_modes.mode_of(draft.chat)
    if mode == Mode.OFF:
        return reject(draft.message_id, actor=CHAT_OFF_ACTOR, source=source, reason=CHAT_OFF_NOTE)
    if mode == Mode.AUTO:
        note = "the chat is on auto"
    elif not rootstate.human_in_the_loop():
        note = "human_in_the_loop is off"
    else:
        return draft
    return approve(draft.message_id, actor=AUTOMATIC_ACTOR, source=source, note=note)


def clear_list(status: str, *, actor: str, source: str) -> int:
    """Empty one list (the old `clear_messages`), audited with the ids removed."""
    status = Status(status)
    with transaction.atomic():
        listed = Message.objects.filter(status=status).in_list_order()
        ids = list(listed.values_list("message_id", flat=True))
        Message.objects.filter(status=status).delete()
        rootstate.touch()
        _audit(
            "",
            "clear_list",
            status,
            "",
            actor,
            source,
            f"{len(ids)} removed",
            {"ids": ids},
            timezone.now(),
        )
    return len(ids)
