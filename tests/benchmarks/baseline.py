"""The old JSON-file storage, kept only as a yardstick for the benchmarks.

The automation scripts stored their state with this algorithm before the
dashboard existed. The benchmark and reliability suite runs the same workload
against it and against ``statecore`` to show the new storage is fast enough
and loses nothing.

It is deliberately faulty, exactly as the old code was:

- every call reads the whole file and writes the whole file back;
- the read and the write of one update take the lock *separately*, so two
  threads can read the same state and the later write silently drops the
  other thread's change (lost updates);
- the file is opened with ``"w"`` (truncated) before it is rewritten, so a
  crash or a concurrent reader in another process can see an empty or half
  written file.

Do not fix these faults: they are what the suite measures. The one thing left
out is the old cut of every list to its last 100 entries, so that the sizes
being compared are the same on both sides. Never use this class in the
project itself.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any


class MessageStatus(Enum):
    """Local copy of the seed's enum; ``.value`` is the list name."""

    INCOMING = "incoming"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    SENT = "sent"
    FAILED = "failed"


# Which counter a message arriving in a list bumps (none for pending_approval).
_COUNTERS = {
    MessageStatus.INCOMING: "total_incoming",
    MessageStatus.SENT: "total_sent",
    MessageStatus.FAILED: "total_failed",
    MessageStatus.APPROVED: "total_approved",
    MessageStatus.REJECTED: "total_rejected",
}


def _now() -> str:
    return datetime.now().isoformat()


def default_state() -> dict[str, Any]:
    """A fresh state, with the top-level keys in the order the scripts write."""
    now = _now()
    return {
        "session": {
            "authenticated": False,
            "last_authenticated": None,
            "session_valid": False,
            "session_path": ".wwebjs_auth",
            "requires_qr": True,
            "last_validation": None,
            "validation_interval_minutes": 30,
        },
        "account_info": {"number": None, "name": None, "platform": None, "last_updated": None},
        "api_endpoint": "http://localhost:3000/api/whatsapp",
        "human_in_the_loop": True,
        "watcher_config": {
            "poll_interval_seconds": 5,
            "auto_reply_enabled": True,
            "process_group_messages": False,
            "max_messages_per_poll": 10,
        },
        "retry_config": {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True},
        "messages": {status.value: [] for status in MessageStatus},
        "message_log": [],
        "incoming_messages": [],
        "pending_replies": [],
        "generated_replies": [],
        "statistics": {
            "total_incoming": 0,
            "total_sent": 0,
            "total_failed": 0,
            "total_approved": 0,
            "total_rejected": 0,
            "last_message_received": None,
            "last_message_sent": None,
        },
        "metadata": {"version": "1.0.0", "created_at": now, "last_updated": now},
    }


class JsonFileStateManager:
    """The old ``StateManager`` storage: whole-file JSON, one lock, lost updates.

    One instance is meant to be shared by threads, as the old scripts did; the
    lock still does not make an update atomic (see the module docstring).
    Errors are not swallowed: a read of a half-written file raises
    ``json.JSONDecodeError`` in the caller, which the suite counts as a fault.
    """

    def __init__(self, state_file: str | Path = "whatsapp_state.json") -> None:
        self.state_file = Path(state_file)
        self.lock = threading.Lock()
        if not self.state_file.exists():
            self._save_state(default_state())

    # The two halves of every update, each under the lock on its own: this
    # gap between them is the old code's lost-update fault, kept on purpose.
    def _load_state(self) -> dict[str, Any]:
        with self.lock:
            with open(self.state_file, encoding="utf-8") as f:
                return json.load(f)

    def _save_state(self, state: dict[str, Any]) -> None:
        with self.lock:
            state.setdefault("metadata", {})["last_updated"] = _now()
            # "w" truncates first: a reader in between sees an empty file.
            with open(self.state_file, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=2, ensure_ascii=False)

    @staticmethod
    def _count(state: dict[str, Any], status: MessageStatus, now: str) -> None:
        counter = _COUNTERS.get(status)
        if counter is None:
            return
        stats = state.setdefault("statistics", {})
        stats[counter] = stats.get(counter, 0) + 1
        if status is MessageStatus.INCOMING:
            stats["last_message_received"] = now
        elif status is MessageStatus.SENT:
            stats["last_message_sent"] = now

    def add_message(self, message_data: dict[str, Any], status: MessageStatus | str) -> None:
        """Append ``message_data`` to the list of ``status`` and count it.

        Like the old code, a missing ``timestamp`` is added to the caller's
        own dict, and an id already stored is not checked (a second copy).
        """
        status = MessageStatus(status)
        state = self._load_state()
        now = _now()
        if "timestamp" not in message_data:
            message_data["timestamp"] = now
        state.setdefault("messages", {}).setdefault(status.value, []).append(message_data)
        self._count(state, status, now)
        self._save_state(state)

    def move_message(
        self,
        message_id: str,
        from_status: MessageStatus | str,
        to_status: MessageStatus | str,
    ) -> bool:
        """Move a message between lists; ``False`` when it is not in ``from_status``.

        Any move is allowed, as in the old code.
        """
        from_status = MessageStatus(from_status)
        to_status = MessageStatus(to_status)
        state = self._load_state()
        messages = state.setdefault("messages", {})
        source = messages.setdefault(from_status.value, [])
        index = next((i for i, m in enumerate(source) if m.get("id") == message_id), None)
        if index is None:
            return False
        message = source.pop(index)
        now = _now()
        message["status"] = to_status.value
        message["status_updated_at"] = now
        messages.setdefault(to_status.value, []).append(message)
        self._count(state, to_status, now)
        self._save_state(state)
        return True

    def get_messages(
        self, status: MessageStatus | str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The list of ``status``, oldest first; with ``limit=N`` the newest N."""
        status = MessageStatus(status)
        messages = self._load_state().get("messages", {}).get(status.value, [])
        if limit is not None:
            return messages[-limit:] if limit > 0 else []
        return messages

    def get_statistics(self) -> dict[str, Any]:
        """The ``statistics`` object as stored."""
        return self._load_state().get("statistics", {})
