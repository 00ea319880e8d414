"""Drafting: bring your own assistant.

The setting `ASSISTANT` names a Python function (a dotted path)
`draft_reply(message: dict) -> str | None`. The receiving loop calls it for
each stored customer message that has no draft yet, with the message as it is
stored (the object the old watcher logged: `id`, `from`, `fromName`, `body`,
`timestamp`, `isGroup`, ...):

- a text becomes a drafted reply (`reply_<id>`, `recipient`, `body`,
  `original_message_id`, `timestamp`) added to `pending_approval` through the
  lifecycle, so it is approved at once by the same path when
  `human_in_the_loop` is off. An id already stored (a script drafted it
  meanwhile) counts as done: the second draft is refused by the id, as always.
- `None` means "no reply wanted": recorded once (`DraftAttempt` no_reply),
  never asked again.
- an exception, a timeout (`ASSISTANT_TIMEOUT_SECONDS`), an empty text or
  anything that is not text is a failure: retried at most 3 times, after about
  1, 5 and 30 minutes, then recorded as "drafting failed" (counted on the
  overview) and never asked again.

Who is asked: never for a chat that is off (`chat_modes`: each of its messages is
recorded once as no_reply "the chat is off", with an audit row by "chat off", so turning
the chat back on does not draft what came meanwhile); never for a group unless
`watcher_config.process_group_messages`;
nobody at all when `auto_reply_enabled` is false; never for a message with no
text (recorded once as no_reply, "no text to answer"); never for a contact's
Status update (`status@broadcast`: the old assistant answered those, to a
recipient "status"); oldest first, at most `max_messages_per_poll` calls a round.

Only messages whose `timestamp` is within the last 24 hours (DRAFT_MAX_AGE)
are drafted. A freshly imported history, or a dashboard started after weeks
off, must not send thousands of old messages to the assistant at once; and
WhatsApp's own reply window is 24 hours, so a draft for an older message
could not go out as a free-form reply anyway. Older ones stay in `incoming`
for a person (or a script using `StateManager.get_undrafted_messages`).

The call runs in a fresh daemon thread, joined with the timeout: a late answer
is dropped (the thread is left to finish on its own and its result is never
stored). A function that never returns holds nothing but its own thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.module_loading import import_string

from . import chat_modes, clock, lifecycle, rootstate
from .models import AuditEvent, DraftAttempt, Message, Source, Status
from .statefile.columns import chat_of

log = logging.getLogger(__name__)

ACTOR = "assistant"
DRAFT_MAX_AGE = timedelta(hours=24)
# After the first, second and third failure; a fourth failure is final.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
NO_TEXT = "no text to answer"
STATUS_BROADCAST = "status@broadcast"
DEFAULT_MAX_CALLS = 10
# The audit action of a message the assistant was not asked about (its chat is off), and
# how many of them one round records at most.
NOT_DRAFTED = "not_drafted"
OFF_BATCH = 500

Outcome = DraftAttempt.Outcome
Assistant = Callable[[dict], object]


def load_assistant(path: str) -> Assistant:
    """The function `path` names. Raises ImproperlyConfigured naming ASSISTANT and the path."""
    try:
        function = import_string(path)
    except Exception as exc:  # an ImportError, or whatever the module raises on import
        raise ImproperlyConfigured(
            f"ASSISTANT: cannot import {path!r} ({type(exc).__name__}: {exc}); expected the "
            "dotted path of a function draft_reply(message) -> str | None"
        ) from exc
    if not callable(function):
        raise ImproperlyConfigured(
            f"ASSISTANT: {path!r} is a {type(function).__name__}, not a function "
            "draft_reply(message) -> str | None"
        )
    return function


def undrafted() -> QuerySet[Message]:
    """Customers' messages with no reply yet and no final answer of the assistant, oldest first.

    "No final answer": not recorded as no_reply or failed (a retrying one is included)."""
    replied = Message.objects.filter(reply_to=OuterRef("message_id"))
    settled = DraftAttempt.objects.filter(
        message_id=OuterRef("message_id"), outcome__in=[Outcome.NO_REPLY, Outcome.FAILED]
    )
    return (
        Message.objects.filter(status=Status.INCOMING)
        .exclude(Exists(replied))
        .exclude(Exists(settled))
        .order_by("position", "pk")
    )


def due(now: datetime, *, groups: bool) -> QuerySet[Message]:
    """What the assistant is asked about now: undrafted, recent, retry time come, not in
    a chat that is off, oldest first."""
    return _candidates(now, groups=groups).exclude(chat__in=chat_modes.chats_off())


def _candidates(now: datetime, *, groups: bool) -> QuerySet[Message]:
    waiting = DraftAttempt.objects.filter(
        message_id=OuterRef("message_id"), outcome=Outcome.RETRYING, next_try_at__gt=now
    )
    candidates = (
        undrafted()
        .filter(timestamp__gte=now - DRAFT_MAX_AGE)
        .exclude(sender=STATUS_BROADCAST)
        .exclude(Exists(waiting))
    )
    if not groups:
        candidates = candidates.filter(is_group=False)
    # The queue's index (status, timestamp, position, id) serves this order.
    return candidates.order_by("timestamp", "position", "pk")


def settle_chats_off(now: datetime, *, groups: bool, limit: int) -> int:
    """Record the messages the assistant would be asked about now, in chats that are off,
    as "no reply wanted" (never asked, then or later: turning the chat back on does not
    draft what came while it was off), each with an audit row by "chat off". At most
    `limit` a round; returns how many."""
    skipped = list(
        _candidates(now, groups=groups)
        .filter(chat__in=chat_modes.chats_off())
        .values_list("message_id", flat=True)[:limit]
    )
    if not skipped:
        return 0
    with transaction.atomic():
        DraftAttempt.objects.bulk_create(
            [
                DraftAttempt(
                    message_id=message_id,
                    outcome=Outcome.NO_REPLY,
                    error=lifecycle.CHAT_OFF_NOTE,
                    updated_at=now,
                )
                for message_id in skipped
            ],
            # A retrying one has its row already: it becomes no_reply.
            update_conflicts=True,
            unique_fields=["message_id"],
            update_fields=["outcome", "error", "next_try_at", "updated_at"],
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(
                message_id=message_id,
                action=NOT_DRAFTED,
                actor=lifecycle.CHAT_OFF_ACTOR,
                source=Source.WORKER,
                note=f"{lifecycle.CHAT_OFF_NOTE}: the assistant was not asked",
                created_at=now,
            )
            for message_id in skipped
        )
    return len(skipped)


def max_calls(config: dict) -> int:
    value = config.get("max_messages_per_poll")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return DEFAULT_MAX_CALLS
    return value


@dataclass
class DraftSummary:
    drafted: int = 0
    no_reply: int = 0
    retrying: int = 0
    failed: int = 0
    # Messages of chats that are off, recorded as not drafted without asking.
    chat_off: int = 0
    # Why nothing was asked this round ("" when the assistant was asked, or nothing was due).
    off: str = ""

    def __str__(self) -> str:
        if self.off:
            return f"drafting off: {self.off}"
        text = (
            f"{self.drafted} drafted, {self.no_reply} no reply wanted, "
            f"{self.retrying} to retry, {self.failed} drafting failed"
        )
        return f"{text}, {self.chat_off} in chats that are off" if self.chat_off else text


class Drafter:
    """Asks the assistant for drafts; `run_once()` is one round of the receiving loop.

    `stop`, when set, ends a round between two calls (the loop is stopping)."""

    def __init__(
        self,
        assistant: Assistant,
        *,
        say: Callable[[str], object] = log.info,
        stop: threading.Event | None = None,
    ) -> None:
        self.assistant = assistant
        self.say = say
        self.stop = stop or threading.Event()

    @classmethod
    def from_settings(cls, **kwargs) -> Drafter | None:
        """The configured assistant's drafter, or None when ASSISTANT is not set."""
        path = settings.ASSISTANT
        return cls(load_assistant(path), **kwargs) if path else None

    def run_once(self) -> DraftSummary:
        summary = DraftSummary()
        config = rootstate.watcher_config()
        if config.get("auto_reply_enabled") is False:
            summary.off = "watcher_config.auto_reply_enabled is false"
            return summary
        limit = max_calls(config)
        if limit == 0:
            summary.off = "watcher_config.max_messages_per_poll is 0"
            return summary
        now = clock.now()
        groups = config.get("process_group_messages") is True
        summary.chat_off = settle_chats_off(now, groups=groups, limit=OFF_BATCH)
        messages = list(due(now, groups=groups)[:limit])
        attempts = DraftAttempt.objects.in_bulk(
            [msg.message_id for msg in messages], field_name="message_id"
        )
        for msg in messages:
            if self.stop.is_set():
                break
            previous = attempts.get(msg.message_id)
            if not msg.body.strip():
                # Not asked: recorded once, so it is not looked at again.
                _settle(msg.message_id, NO_TEXT, attempts=previous.attempts if previous else 0)
                summary.no_reply += 1
                continue
            self._draft(msg, previous, summary)
        return summary

    def _draft(self, msg: Message, previous: DraftAttempt | None, summary: DraftSummary) -> None:
        timeout = settings.ASSISTANT_TIMEOUT_SECONDS
        answered, value = _call(self.assistant, msg.data, timeout)
        if not answered:
            error = value
        elif value is None:
            _settle(msg.message_id, "", attempts=(previous.attempts if previous else 0) + 1)
            summary.no_reply += 1
            self.say(f"{msg.message_id}: the assistant wants no reply")
            return
        elif not isinstance(value, str):
            error = f"the assistant returned a {type(value).__name__}, not text"
        elif not value.strip():
            error = "the assistant returned an empty text"
        else:
            error = self._store(msg, value, previous)
            if not error:
                summary.drafted += 1
                self.say(f"{msg.message_id}: drafted reply_{msg.message_id}")
                return
        outcome = _failed(msg.message_id, error, previous)
        if outcome == Outcome.FAILED:
            summary.failed += 1
            self.say(f"{msg.message_id}: drafting failed, no more retries: {error}")
        else:
            summary.retrying += 1
            self.say(f"{msg.message_id}: drafting failed, will retry: {error}")

    def _store(self, msg: Message, text: str, previous: DraftAttempt | None) -> str:
        """Add the draft; "" when done (or a draft is there already), else why not."""
        reply = {
            "id": f"reply_{msg.message_id}",
            # As the old assistant did: the chat without its `@...` part.
            "recipient": chat_of(msg.sender),
            "body": text,
            "original_message_id": msg.message_id,
            "timestamp": clock.local_iso(),
        }
        # A script may have drafted it (under another id) while the assistant thought.
        if not Message.objects.filter(reply_to=msg.message_id).exists():
            try:
                lifecycle.add_message(
                    reply, Status.PENDING_APPROVAL, actor=ACTOR, source=Source.WORKER
                )
            except ValueError as exc:
                # The same id stored meanwhile (another drafter was first) counts as done.
                if not Message.objects.filter(message_id=reply["id"]).exists():
                    return f"the draft could not be stored: {exc}"
        if previous is not None:
            # Only tidiness: a message with a draft is never asked about again anyway.
            DraftAttempt.objects.filter(pk=previous.pk).delete()
        return ""


def _call(assistant: Assistant, message: dict, timeout: float) -> tuple[bool, object]:
    """(True, what it returned) or (False, why there is no answer)."""
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["value"] = assistant(message)
        except BaseException as exc:  # noqa: BLE001 - whatever it raises is its failure
            box["error"] = exc
        finally:
            # A function that used the database did so on this thread's own connection.
            connections.close_all()

    worker = threading.Thread(target=work, name=f"assistant:{message.get('id')}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return False, f"the assistant gave no answer within {timeout:g} s"
    if "error" in box:
        exc = box["error"]
        return False, f"the assistant raised {type(exc).__name__}: {exc}"[:2000]
    return True, box.get("value")


def _settle(message_id: str, error: str, *, attempts: int) -> None:
    """No reply wanted: never asked again."""
    _write(message_id, outcome=Outcome.NO_REPLY, attempts=attempts, next_try_at=None, error=error)


def _failed(message_id: str, error: str, previous: DraftAttempt | None) -> str:
    """Record one failure: retrying with the next wait, or failed after the last retry."""
    attempts = (previous.attempts if previous else 0) + 1
    now = clock.now()
    if attempts > len(RETRY_DELAYS):
        outcome, next_try_at = Outcome.FAILED, None
    else:
        outcome, next_try_at = Outcome.RETRYING, now + RETRY_DELAYS[attempts - 1]
    _write(message_id, outcome=outcome, attempts=attempts, next_try_at=next_try_at, error=error)
    if outcome == Outcome.FAILED:
        log.warning("%s: drafting failed after %d attempts: %s", message_id, attempts, error)
    return outcome


def _write(message_id: str, **values) -> None:
    DraftAttempt.objects.update_or_create(
        message_id=message_id, defaults={**values, "updated_at": clock.now()}
    )


__all__ = [
    "DRAFT_MAX_AGE",
    "RETRY_DELAYS",
    "DraftSummary",
    "Drafter",
    "due",
    "load_assistant",
    "undrafted",
]
