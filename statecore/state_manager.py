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

from django.db import close_old_connections, connection, transaction  # noqa: E402

from . import lifecycle, rootstate, session, statefile  # noqa: E402
from .messagedata import dumps_compact  # noqa: E402
from .models import AuditEvent, Message, Source, StateRoot, Status  # noqa: E402
from .staterules import validate_setting  # noqa: E402


class MessageStatus(Enum):
    INCOMING = "incoming"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"
    FAILED = "failed"


def _status(value: MessageStatus | str) -> str:
    return Status(value.value if isinstance(value, MessageStatus) else value).value


class StateManager:
    """The seed's StateManager, with the same calls and meanings (SEED_API.md)."""

    def __init__(
        self, state_file: str = "whatsapp_state.json", *, actor: str | None = None
    ) -> None:
        # The old code kept its state in `state_file`; the database replaces it.
        self.state_file = state_file
        self.actor = actor or Path(sys.argv[0] or "script").stem or "script"

    def _who(self) -> dict:
        return {"actor": self.actor, "source": Source.API}

    # --- session ---------------------------------------------------------------
    def is_session_valid(self) -> bool:
        return session.check(session.current()).valid

    def update_session_status(self, authenticated: bool, account_info: dict | None = None) -> None:
        session.record_login(bool(authenticated), account_info, **self._who())

    def mark_session_invalid(self, reason: str = "Unknown") -> None:
        session.mark_invalid(reason, **self._who())

    def requires_qr_scan(self) -> bool:
        return session.current().get("requires_qr", True) is not False

    def get_session_info(self) -> dict:
        return session.current()

    # --- messages --------------------------------------------------------------
    def add_message(self, message_data: dict, status: MessageStatus | str) -> dict:
        return lifecycle.add_message(message_data, _status(status), **self._who()).data

    def move_message(
        self, message_id: str, from_status: MessageStatus | str, to_status: MessageStatus | str
    ) -> bool:
        """True when moved; False when it is not in `from_status` (someone moved it
        first); a move the lifecycle forbids raises ValueError naming it."""
        source, target = _status(from_status), _status(to_status)
        if not lifecycle.is_allowed(source, target):
            raise ValueError(f"{message_id}: the lifecycle does not allow {source} -> {target}")
        try:
            lifecycle.move(message_id, target, expected=[source], **self._who())
        except lifecycle.MoveRefused:
            return False
        return True

    def get_messages(self, status: MessageStatus | str, limit: int | None = None) -> list[dict]:
        rows = Message.objects.filter(status=_status(status))
        if limit is not None:
            newest = rows.order_by("-position", "-pk").values_list("raw", flat=True)[
                : max(limit, 0)
            ]
            return [Message(raw=raw).data for raw in reversed(list(newest))]
        return [Message(raw=raw).data for raw in rows.in_list_order().values_list("raw", flat=True)]

    def get_undrafted_messages(self, limit: int | None = None) -> list[dict]:
        """The incoming messages that have no reply yet (and that the assistant did not
        settle as no reply wanted / drafting failed), oldest first: for scripts that draft
        on their own. `limit=N`: the oldest N. A second draft for one message is refused
        by its id, whoever drafts first."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"limit: expected a whole number >= 0 or None, got {limit!r}")
        from .drafting import undrafted

        rows = undrafted().values_list("raw", flat=True)
        return [Message(raw=raw).data for raw in (rows if limit is None else rows[:limit])]

    def clear_messages(self, status: MessageStatus | str) -> None:
        lifecycle.clear_list(_status(status), **self._who())

    # --- statistics --------------------------------------------------------------
    def get_statistics(self) -> dict:
        return rootstate.statistics()

    def reset_statistics(self) -> None:
        with transaction.atomic():
            before = rootstate.statistics()
            rootstate.get_root()
            StateRoot.objects.filter(pk=1).update(
                **{name: 0 for name in rootstate.COUNTERS},
                **{name: "null" for name in rootstate.LAST_TIMES},
                last_updated=dumps_compact(rootstate.clock.local_iso()),
            )
            AuditEvent.objects.create(
                action="reset_statistics",
                note="all counters 0",
                detail={"before": before},
                created_at=rootstate.clock.now(),
                **self._who(),
            )

    # --- configuration -----------------------------------------------------------
    def get_config(self, key: str, default=None):
        return statefile.export_value(key, default)

    def set_config(self, key: str, value) -> None:
        self.update_config({key: value})

    def update_config(self, updates: dict) -> None:
        """Set top-level keys; the known settings are checked against their types."""
        problems = [p for key, value in updates.items() for p in self._problems(key, value)]
        if problems:
            raise ValueError("; ".join(f"{place}: {what}" for place, what in problems))
        with transaction.atomic():
            for key, value in updates.items():
                if key in rootstate.COLUMN_KEYS:
                    rootstate.update_part(
                        key, lambda _old, v=value: v, action="set_config", **self._who()
                    )
                else:
                    rootstate.update_extra(key, value, action="set_config", **self._who())

    @staticmethod
    def _problems(key: str, value) -> list[tuple[str, str]]:
        if key in ("messages", "message_log", "statistics"):
            return [
                (key, "is kept by the dashboard; use add_message / move_message / reset_statistics")
            ]
        return validate_setting(key, value)

    # --- the whole state -----------------------------------------------------------
    def get_full_state(self) -> dict:
        return statefile.export_state_dict()

    def export_state(self, output_file: str | os.PathLike) -> str:
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
