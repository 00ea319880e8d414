"""The canonical `whatsapp_state.json`: strict reading with the place of every
fault, import in one transaction, and export that gives back what was read.

Canonical form: `json.dumps(state, indent=2, ensure_ascii=False)`, UTF-8, no
trailing newline (STATE_FORMAT.md). A file in that form comes back byte for
byte, because every verbatim part is kept as JSON text with its key order.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, transaction

from . import bulkload, clock, rootstate
from .messagedata import dumps_compact
from .models import AuditEvent, LogEntry, Message, StateRoot, Status
from .statevalidate import StateFileError, find_duplicate_ids, parse_state

BATCH_SIZE = bulkload.BATCH_SIZE
DUPLICATE_RULES = ("refuse", "keep-first", "keep-last")

__all__ = [
    "DUPLICATE_RULES",
    "ImportSummary",
    "StateFileError",
    "backup_state",
    "export_bytes",
    "export_state",
    "export_text",
    "export_value",
    "import_bytes",
    "import_state",
    "parse_state",
    "write_atomically",
]


@dataclass
class ImportSummary:
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    dropped_duplicates: list[str] = field(default_factory=list)


def current_counts() -> dict[str, int]:
    """Messages per list, and the message_log's length: what an import replaces."""
    counts = {status: 0 for status in Status.values}
    for row in Message.objects.order_by().values("status").annotate(n=_count()):
        counts[row["status"]] = row["n"]
    counts["message_log"] = LogEntry.objects.count()
    return counts


def _count():
    from django.db.models import Count

    return Count("pk")


def state_counts(state: dict) -> dict[str, int]:
    messages = state.get("messages") or {}
    counts = {status: len(messages.get(status) or []) for status in Status.values}
    counts["message_log"] = len(state.get("message_log") or [])
    return counts


# --- Import -------------------------------------------------------------------


def import_bytes(
    data: bytes,
    *,
    actor: str,
    source: str,
    on_duplicate: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Validate a whole file and import it; the database is untouched on any fault."""
    return import_state(
        parse_state(data), actor=actor, source=source, on_duplicate=on_duplicate, progress=progress
    )


def import_state(
    state: dict,
    *,
    actor: str,
    source: str,
    on_duplicate: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Replace the whole state with an already validated one, in one transaction.

    The same id in two places is refused naming every such id and its lists,
    unless `on_duplicate` chooses a rule ("keep-first"/"keep-last" by file order).
    Audit events are never deleted; one more says what the import replaced."""
    if on_duplicate not in DUPLICATE_RULES:
        raise ValueError(f"on_duplicate must be one of {', '.join(DUPLICATE_RULES)}")
    duplicates = find_duplicate_ids(state)
    if duplicates and on_duplicate == "refuse":
        raise StateFileError(
            [
                (f"messages ({', '.join(places)})", f"the id {mid!r} appears more than once")
                for mid, places in duplicates.items()
            ]
        )
    summary = ImportSummary(after=state_counts(state), dropped_duplicates=sorted(duplicates))
    rows = _message_rows(state, on_duplicate if duplicates else None)
    total = sum(summary.after[s] for s in Status.values)
    with transaction.atomic():
        summary.before = current_counts()
        with bulkload.secondary_indexes_deferred():
            Message.objects.all().delete()
            bulkload.insert_messages(rows, total, progress)
        LogEntry.objects.all().delete()
        StateRoot.objects.all().delete()
        StateRoot.objects.create(pk=1, **_root_fields(state))
        LogEntry.objects.bulk_create(
            _log_entries(state.get("message_log") or []), batch_size=BATCH_SIZE
        )
        AuditEvent.objects.create(
            action="import",
            actor=actor,
            source=source,
            note=f"replaced {_describe(summary.before)} with {_describe(summary.after)}",
            detail={
                "before": summary.before,
                "after": summary.after,
                "dropped_duplicates": summary.dropped_duplicates
                if on_duplicate != "refuse"
                else [],
                "duplicate_rule": on_duplicate,
            },
            created_at=clock.now(),
        )
    return summary


def _describe(counts: dict[str, int]) -> str:
    """`40 incoming, 8 sent, 2 message_log entries`: the lists that hold anything."""
    parts = [f"{n} {name}" for name, n in counts.items() if n and name != "message_log"]
    if counts.get("message_log"):
        parts.append(f"{counts['message_log']} message_log entries")
    return ", ".join(parts) or "nothing"


def _message_rows(state: dict, duplicate_rule: str | None):
    """Insert rows in file order; with a duplicate rule, the kept occurrence only."""
    messages = state.get("messages") or {}
    keep: dict[str, tuple[str, int]] | None = None
    if duplicate_rule:
        keep = {}
        for status, items in messages.items():
            for index, obj in enumerate(items):
                if duplicate_rule == "keep-last" or obj["id"] not in keep:
                    keep[obj["id"]] = (status, index)
    return bulkload.message_rows(messages, keep)


def _log_entries(entries: list) -> list[LogEntry]:
    return [
        LogEntry(
            raw=dumps_compact(entry),
            recipient=entry.get("recipient") if isinstance(entry.get("recipient"), str) else "",
            outcome=entry.get("status") if isinstance(entry.get("status"), str) else "",
            logged_at=clock.parse_timestamp(entry.get("timestamp")),
        )
        for entry in entries
    ]


def _json_or_none(state: dict, key: str) -> str | None:
    return dumps_compact(state[key]) if key in state else None


def _root_fields(state: dict) -> dict:
    stats = state.get("statistics")
    stats = stats if isinstance(stats, dict) else {}
    meta = state.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    fields = {key: _json_or_none(state, key) for key in rootstate.COLUMN_KEYS}
    fields.update(
        key_order=dumps_compact(list(state)),
        message_lists=dumps_compact(list(state["messages"])) if "messages" in state else None,
        extra=dumps_compact(
            {
                k: v
                for k, v in state.items()
                if k not in rootstate.COLUMN_KEYS and k not in ("messages", "message_log")
            }
        ),
        last_updated=dumps_compact(meta["last_updated"]) if "last_updated" in meta else None,
    )
    for name in rootstate.COUNTERS:
        fields[name] = stats.get(name)
    for name in rootstate.LAST_TIMES:
        fields[name] = dumps_compact(stats[name]) if name in stats else None
    return fields


# --- Export -------------------------------------------------------------------


def export_state_dict() -> dict:
    """The whole state as the canonical file holds it, keys in their order.

    One snapshot: the counters, the lists and the log are read in one
    transaction (REPEATABLE READ on PostgreSQL; on SQLite the transaction holds
    the write lock), so a move meanwhile is wholly in the export or wholly not."""
    if connection.in_atomic_block:  # the caller's transaction is the snapshot
        return _export_state_dict()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _export_state_dict()


def _export_state_dict() -> dict:
    root = rootstate.get_root()
    key_order = json.loads(root.key_order)
    parts = _root_parts(root)
    lists = _lists_in_order(root)
    if "messages" in key_order or any(lists.values()):
        parts["messages"] = lists
    log = [json.loads(raw) for raw in LogEntry.objects.order_by("pk").values_list("raw", flat=True)]
    if "message_log" in key_order or log:
        parts["message_log"] = log
    order = key_order + [
        key for key in rootstate.TOP_LEVEL_ORDER if key in parts and key not in key_order
    ]
    order += [key for key in parts if key not in order]
    return {key: parts[key] for key in order if key in parts}


def export_value(key: str, default: object = None) -> object:
    """One top-level key as the export writes it. Reads the messages only when
    asked for them: scripts read a setting on every poll."""
    if key in ("messages", "message_log"):
        return export_state_dict().get(key, default)
    return _root_parts(rootstate.get_root()).get(key, default)


def _root_parts(root: StateRoot) -> dict:
    """Every top-level key but `messages` and `message_log`, as exported."""
    parts = {
        key: rootstate.part(root, key)
        for key in rootstate.COLUMN_KEYS
        if getattr(root, key) is not None
    }
    stats = rootstate.statistics(root)
    if stats or "statistics" in parts:
        parts["statistics"] = stats
    if root.last_updated is not None:
        meta = parts.get("metadata")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta["last_updated"] = json.loads(root.last_updated)
        parts["metadata"] = meta
    parts.update(json.loads(root.extra))
    return parts


def _lists_in_order(root: StateRoot) -> dict[str, list]:
    names = json.loads(root.message_lists) if root.message_lists else []
    lists: dict[str, list] = {name: [] for name in names}
    rows = Message.objects.order_by("status", "position", "pk").values_list("status", "raw")
    for status, raw in rows.iterator(chunk_size=BATCH_SIZE):
        lists.setdefault(status, []).append(json.loads(raw))
    # A list that appeared since the import goes after the ones the file had.
    return {name: lists[name] for name in names} | {
        name: lists[name] for name in Status.values if name in lists and name not in names
    }


def export_text() -> str:
    return json.dumps(export_state_dict(), indent=2, ensure_ascii=False)


def export_bytes() -> bytes:
    """The very bytes export_state writes (the canonical form)."""
    return export_text().encode("utf-8")


NEW_FILE_MODE = 0o600  # every customer's number and message: the owner's only


def write_atomically(path: Path | str, data: bytes, *, mode: int | None = None) -> Path:
    """Write to a temporary file in the same folder, flush, fsync, then replace:
    an interrupted write leaves the old file intact.

    A new file is created NEW_FILE_MODE (0600) whatever the umask; a replaced file
    keeps its mode and, where the writer may set it, its group (README: a script
    reading as another user). `mode` sets the permissions either way."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _take_permissions(handle, path, mode)
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _take_permissions(handle: int, path: Path, mode: int | None) -> None:
    """Give the temporary file the permissions the result must have (fchmod is
    not subject to the umask)."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    if old is not None:
        try:
            # Kept so a group given read access (chgrp) still has it after the
            # rename; only a member of that group (or root) may set it.
            os.fchown(handle, -1, old.st_gid)
        except OSError:
            pass
    if mode is not None:
        os.fchmod(handle, mode)
    elif old is not None:
        os.fchmod(handle, stat.S_IMODE(old.st_mode))
    else:
        os.fchmod(handle, NEW_FILE_MODE)


def export_state(path: Path | str, *, mode: int | None = None) -> Path:
    """Write the canonical file to `path`, atomically (a new file 0600, or `mode`)."""
    return write_atomically(path, export_bytes(), mode=mode)


def backup_state(folder: Path | str | None = None, *, mode: int | None = None) -> Path:
    """A timestamped copy, `whatsapp_state_backup_YYYYmmdd_HHMMSS.json`, in the backup folder."""
    from django.conf import settings

    folder = Path(folder or settings.STATE_BACKUP_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    path = folder / f"whatsapp_state_backup_{stamp}.json"
    counter = 1
    while path.exists():  # two backups in one second must not overwrite each other
        path = folder / f"whatsapp_state_backup_{stamp}_{counter}.json"
        counter += 1
    return export_state(path, mode=mode)
