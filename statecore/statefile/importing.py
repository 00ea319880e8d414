"""Import of a validated state: the whole state replaced in one transaction,
with one audit event saying what was replaced."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count

from .. import clock, rootstate
from ..models import AuditEvent, LogEntry, Message, StateRoot, Status
from . import bulk
from .columns import dumps_compact
from .parse import StateFileError, find_duplicate_ids, parse_state

DUPLICATE_RULES = ("refuse", "keep-first", "keep-last")


@dataclass
class ImportSummary:
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    dropped_duplicates: list[str] = field(default_factory=list)


def current_counts() -> dict[str, int]:
    """Messages per list, and the message_log's length: what an import replaces."""
    counts = {status: 0 for status in Status.values}
    for row in Message.objects.order_by().values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    counts["message_log"] = LogEntry.objects.count()
    return counts


def state_counts(state: dict) -> dict[str, int]:
    """The same counts for a parsed file: what an import would put in their place."""
    messages = state.get("messages") or {}
    counts = {status: len(messages.get(status) or []) for status in Status.values}
    counts["message_log"] = len(state.get("message_log") or [])
    return counts


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
        with bulk.secondary_indexes_deferred():
            Message.objects.all().delete()
            bulk.insert_messages(rows, total, progress)
        LogEntry.objects.all().delete()
        StateRoot.objects.all().delete()
        StateRoot.objects.create(pk=1, **_root_fields(state))
        LogEntry.objects.bulk_create(
            _log_entries(state.get("message_log") or []), batch_size=bulk.BATCH_SIZE
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
    return bulk.message_rows(messages, keep)


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
