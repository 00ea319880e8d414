"""The Python API the existing scripts call, backed by the database.

A script changes one import line and nothing else:

    from statecore.state_manager import StateManager, MessageStatus

Safe from many threads and processes at once (each call is its own short
transaction), and nothing is ever cut to 100 entries.
"""

from __future__ import annotations

import functools
import os
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path


def _ensure_django() -> None:
    """Let a plain script use the API: set Django up when nobody has."""
    from django.apps import apps

    if not apps.ready:
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statecore.settings")
        django.setup()


_ensure_django()

from django.db import close_old_connections, connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from . import chat_modes, learning, lifecycle, rootstate, session, settings_store, statefile  # noqa: E402
from .drafting import undrafted  # noqa: E402
from .models import AuditEvent, Message, Source, Status  # noqa: E402
from .statefile.rules import api_value_problems, validate_setting  # noqa: E402

# What the API refuses instead of storing (README "Switching the scripts"): a body
# as long as the web edit allows, objects of at most 256 keys and 512 KiB of JSON
# (statefile.rules), a reason as long as the gateway's. An import has none of these.
MAX_BODY_LENGTH = lifecycle.MAX_REPLY_LENGTH
MAX_REASON_LENGTH = 2000
MAX_ACTOR_LENGTH = AuditEvent._meta.get_field("actor").max_length
MAX_TURNS = learning.MAX_TURNS


class MessageStatus(Enum):
    INCOMING = "incoming"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"
    FAILED = "failed"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _status(value: MessageStatus | str, argument: str = "status") -> str:
    if isinstance(value, MessageStatus):
        return value.value
    if isinstance(value, str) and value in Status.values:
        return Status(value).value
    raise ValueError(
        f"{argument}: expected a MessageStatus or one of {', '.join(Status.values)}, "
        f"got {_shown(value)}"
    )


def _text(argument: str, value: object, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{argument}: expected {what}, got {_shown(value)}")
    return value


def _refuse(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise ValueError("; ".join(f"{place}: {what}" for place, what in problems))


def _flag(argument: str, value: object) -> bool:
    """True/False, or 1/0 as old scripts may pass; never a string (bool("false") is True)."""
    if type(value) is bool or (type(value) is int and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{argument}: expected True or False (or 1 or 0), got {_shown(value)}")


class StateManager:
    """The seed's StateManager, with the same calls and meanings (SEED_API.md)."""

    def __init__(
        self, state_file: str = "whatsapp_state.json", *, actor: str | None = None
    ) -> None:
        # The old code kept its state in `state_file`; the database replaces it.
        self.state_file = state_file
        if actor is not None and (
            not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_LENGTH
        ):
            raise ValueError(
                f"actor: expected a name of 1 to {MAX_ACTOR_LENGTH} characters, got {_shown(actor)}"
            )
        script = Path(sys.argv[0] or "script").stem[:MAX_ACTOR_LENGTH]
        self.actor = actor or script or "script"

    def _who(self) -> dict:
        return {"actor": self.actor, "source": Source.API}

    # --- session ---------------------------------------------------------------
    def is_session_valid(self) -> bool:
        return session.check(session.current()).valid

    def update_session_status(self, authenticated: bool, account_info: dict | None = None) -> None:
        flag = _flag("authenticated", authenticated)
        if account_info is not None:
            if not isinstance(account_info, dict):
                raise ValueError(
                    f"account_info: expected a dict or None, got {_shown(account_info)}"
                )
            _refuse(api_value_problems("account_info", account_info))
        session.record_login(flag, account_info, **self._who())

    def mark_session_invalid(self, reason: str = "Unknown") -> None:
        reason = _text("reason", reason, "a non-empty string saying why")
        if not reason.strip():
            raise ValueError("reason: expected a non-empty string saying why")
        if len(reason) > MAX_REASON_LENGTH:
            raise ValueError(
                f"reason: {len(reason):,} characters; a reason may have at most "
                f"{MAX_REASON_LENGTH:,}"
            )
        session.mark_invalid(reason, **self._who())

    def requires_qr_scan(self) -> bool:
        return session.current().get("requires_qr", True) is not False

    def get_session_info(self) -> dict:
        return session.current()

    # --- messages --------------------------------------------------------------
    def add_message(self, message_data: dict, status: MessageStatus | str) -> dict:
        """Store a new message; refused with a ValueError naming the place when it
        is not a message object, its body is over MAX_BODY_LENGTH characters, or it
        is over the size of statefile.rules.api_value_problems."""
        target = _status(status)
        if not isinstance(message_data, dict):
            raise ValueError(
                f"message_data: expected a dict (a message object), got {_shown(message_data)}"
            )
        _refuse(api_value_problems("message_data", message_data, max_body=MAX_BODY_LENGTH))
        return lifecycle.add_message(message_data, target, **self._who()).data

    def move_message(
        self, message_id: str, from_status: MessageStatus | str, to_status: MessageStatus | str
    ) -> bool:
        """True when moved; False when it is not in `from_status` (someone moved it
        first); a move the lifecycle forbids, or the gateway would refuse (Cloud's closed
        24-hour window, a text too long), raises ValueError naming it."""
        _text("message_id", message_id)
        source, target = _status(from_status, "from_status"), _status(to_status, "to_status")
        if not lifecycle.is_allowed(source, target):
            raise ValueError(f"{message_id}: the lifecycle does not allow {source} -> {target}")
        try:
            lifecycle.move(message_id, target, expected=[source], **self._who())
        except lifecycle.MoveRefused as exc:
            if exc.code in (lifecycle.Refusal.WINDOW_CLOSED, lifecycle.Refusal.TOO_LONG):
                raise
            return False
        return True

    def get_messages(self, status: MessageStatus | str, limit: int | None = None) -> list[dict]:
        rows = Message.objects.filter(status=_status(status))
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValueError(f"limit: expected a whole number or None, got {_shown(limit)}")
        if limit is not None:
            newest = rows.order_by("-position", "-pk").values_list("raw", flat=True)[
                : max(limit, 0)
            ]
            return [Message(raw=raw).data for raw in reversed(list(newest))]
        return [Message(raw=raw).data for raw in rows.in_list_order().values_list("raw", flat=True)]

    def get_undrafted_messages(self, limit: int | None = None) -> list[dict]:
        """The incoming messages that have no reply yet (and that the assistant did not
        settle as no reply wanted / drafting failed), but those of chats that are off,
        oldest first: for scripts that draft on their own. `limit=N`: the oldest N. A second draft for one message is refused
        by its id, whoever drafts first."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit: expected a whole number >= 0 or None, got {limit!r}")
        # A chat that is off is not drafted for, by our assistant or a script's.
        rows = undrafted().exclude(chat__in=chat_modes.chats_off()).values_list("raw", flat=True)
        return [Message(raw=raw).data for raw in (rows if limit is None else rows[:limit])]

    def clear_messages(self, status: MessageStatus | str) -> None:
        lifecycle.clear_list(_status(status), **self._who())

    # --- chat modes (not in the old API) ---------------------------------------------
    def get_chat_mode(self, chat: str) -> str:
        """ "review", "auto" or "off" (chat_modes); ValueError naming `chat` for no number."""
        return chat_modes.mode_of(chat_modes.clean_chat(chat)).value

    def set_chat_mode(self, chat: str, mode: str) -> bool:
        """Put a chat in a mode, audited; False when it was in it already. ValueError
        naming `chat` or `mode`."""
        return chat_modes.set_mode(chat, mode, **self._who())

    # --- learning ----------------------------------------------------------------
    def corrections(
        self,
        since: datetime | None = None,
        limit: int | None = None,
        turns: int = learning.DEFAULT_TURNS,
    ) -> list[dict]:
        """The reviewers' decisions on the assistant's drafts, newest first: the lines of
        `manage.py export_corrections` as dicts (README "Learning from edits"), e.g. the
        last good examples as few-shot context: `[c for c in corrections(limit=20) if
        c["outcome"] != "rejected"]`. `since`: decided at or after it (naive = local
        time); `limit`: the newest N; `turns`: earlier messages of the chat with each."""
        if since is not None and not isinstance(since, datetime):
            raise ValueError(f"since: expected a datetime or None, got {_shown(since)}")
        if since is not None and timezone.is_naive(since):
            since = timezone.make_aware(since)
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit: expected a whole number >= 0 or None, got {_shown(limit)}")
        if isinstance(turns, bool) or not isinstance(turns, int) or not 0 <= turns <= MAX_TURNS:
            raise ValueError(
                f"turns: expected a whole number 0 to {MAX_TURNS}, got {_shown(turns)}"
            )
        return list(learning.corrections(since=since, limit=limit, turns=turns))

    # --- statistics --------------------------------------------------------------
    def get_statistics(self) -> dict:
        return rootstate.statistics()

    def reset_statistics(self) -> None:
        settings_store.reset_counters(**self._who())

    # --- configuration -----------------------------------------------------------
    def get_config(self, key: str, default=None):
        return statefile.export_value(_text("key", key, "a top-level key (a string)"), default)

    def set_config(self, key: str, value) -> None:
        self.update_config({_text("key", key, "a top-level key (a string)"): value})

    def update_config(self, updates: dict) -> None:
        """Set top-level keys, all or none; the known settings are checked against
        their types, `api_endpoint` must be an http(s) URL, and each value is held to
        the size of statefile.rules.api_value_problems."""
        if not isinstance(updates, dict):
            raise ValueError(f"updates: expected a dict of top-level keys, got {_shown(updates)}")
        for key in updates:
            if not isinstance(key, str):
                raise ValueError(f"updates: the key {_shown(key)} is not a string")
        _refuse([p for key, value in updates.items() for p in self._problems(key, value)])
        settings_store.update_settings(updates, **self._who())

    @staticmethod
    def _problems(key: str, value) -> list[tuple[str, str]]:
        if key in ("messages", "message_log", "statistics"):
            return [
                (key, "is kept by the dashboard; use add_message / move_message / reset_statistics")
            ]
        return api_value_problems(key, value) or validate_setting(key, value)

    # --- the whole state -----------------------------------------------------------
    def get_full_state(self) -> dict:
        return statefile.export_state_dict()

    def export_state(self, output_file: str | os.PathLike) -> str:
        """Write the canonical file; a new file is created 0600 (README: file modes)."""
        if not isinstance(output_file, str | os.PathLike):
            raise ValueError(f"output_file: expected a path, got {_shown(output_file)}")
        return str(statefile.export_state(output_file))

    def backup_state(self) -> str:
        return str(statefile.backup_state())


def _healthy_connection(method):
    """Before each call, drop a database connection that failed or grew old, as
    Django does between requests: a script runs for days, and without this one
    lost connection (a database restart) would fail every later call."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        if not connection.in_atomic_block:  # never under a caller's transaction
            close_old_connections()
        return method(*args, **kwargs)

    return call


for _name, _method in list(vars(StateManager).items()):
    if not _name.startswith("_") and callable(_method) and not isinstance(_method, staticmethod):
        setattr(StateManager, _name, _healthy_connection(_method))


__all__ = ["MessageStatus", "StateManager"]
