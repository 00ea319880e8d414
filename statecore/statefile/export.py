"""Export: the whole state as the canonical file holds it, read in one snapshot,
keys in their order."""

from __future__ import annotations

import json

from django.db import connection, transaction

from .. import rootstate
from ..models import LogEntry, Message, StateRoot, Status
from .bulk import BATCH_SIZE


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
