"""A mode per chat: `review` (the default), `auto` or `off`.

One verb changes a mode (`set_mode`), audited whoever asks (the queue's card, the
history, the admin, a script). The modes are enforced where a draft is added
(`lifecycle.add_message`) and where the assistant is asked (`drafting`); this module
only stores and reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from . import clock
from .models import AuditEvent, ChatMode, Mode

SET_CHAT_MODE = "set_chat_mode"
DEFAULT = Mode.REVIEW
# The name a queryset's chat mode is annotated under (`annotate_modes`).
ANNOTATION = "chat_mode"
MAX_CHAT_LENGTH = ChatMode._meta.get_field("chat").max_length
# A chat's digits; an old-style group id has a dash (`923001234567-1609459200`).
_CHAT = re.compile(r"[0-9]+(-[0-9]+)?")


def clean_chat(text: object) -> str:
    """The chat digits of what a person typed: `+92 300 1234567`, `923001234567@c.us` and
    `923001234567` are the same chat. ValueError naming `chat` for anything else."""
    value = text.strip() if isinstance(text, str) else ""
    value = value.split("@", 1)[0].lstrip("+").replace(" ", "")
    if not value or len(value) > MAX_CHAT_LENGTH or not _CHAT.fullmatch(value):
        raise ValueError(
            "chat: expected the chat's number in digits with its country code "
            f"(a leading + and spaces are fine), got {str(text)[:60]!r}"
        )
    return value


def clean_mode(value: object) -> Mode:
    """The mode `value` names; ValueError naming `mode` for anything else."""
    if isinstance(value, str) and value in Mode.values:
        return Mode(value)
    raise ValueError(f"mode: expected one of {', '.join(Mode.values)}, got {str(value)[:60]!r}")


def mode_of(chat: str) -> Mode:
    """The chat's mode (one query; none for a message without a chat)."""
    if not chat:
        return DEFAULT
    stored = ChatMode.objects.filter(chat=chat).values_list("mode", flat=True).first()
    return Mode(stored) if stored else DEFAULT


def modes_of(chats: Iterable[str]) -> dict[str, Mode]:
    """Each chat's mode, every chat asked present: one query (none without a chat)."""
    wanted = {chat for chat in chats if chat}
    modes = dict.fromkeys(wanted, DEFAULT)
    if wanted:
        for chat, mode in ChatMode.objects.filter(chat__in=wanted).values_list("chat", "mode"):
            modes[chat] = Mode(mode)
    return modes


def annotate_modes(queryset: QuerySet) -> QuerySet:
    """Messages with their chat's mode as `chat_mode`, in the same query (a subquery
    on the unique chat index)."""
    stored = ChatMode.objects.filter(chat=OuterRef("chat")).values("mode")[:1]
    return queryset.annotate(**{ANNOTATION: Coalesce(Subquery(stored), Value(DEFAULT.value))})


def chats_off() -> QuerySet:
    """The chats that are off, as a subquery."""
    return ChatMode.objects.filter(mode=Mode.OFF).values("chat")


def set_mode(chat: str, mode: str, *, actor: str, source: str) -> bool:
    """Put `chat` in `mode`: one audit row (`set_chat_mode`, before and after) in the
    same transaction. False, and nothing written, when it is in that mode already.

    Drafts already waiting stay where they are (a person decides them); the mode
    applies to the drafts added from now on. ValueError naming `chat` or `mode`."""
    chat, mode = clean_chat(chat), clean_mode(mode)
    now = clock.now()
    with transaction.atomic():
        row = ChatMode.objects.select_for_update().filter(chat=chat).first()
        before = Mode(row.mode) if row else DEFAULT
        if before == mode:
            return False
        ChatMode.objects.update_or_create(
            chat=chat, defaults={"mode": mode, "updated_at": now, "updated_by": actor[:150]}
        )
        AuditEvent.objects.create(
            action=SET_CHAT_MODE,
            actor=actor[:150],
            source=source,
            note=f"chat {chat}: {before} -> {mode}",
            detail={"chat": chat, "before": before.value, "after": mode.value},
            created_at=now,
        )
    return True
