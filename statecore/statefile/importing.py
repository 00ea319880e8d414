"""Import of a state file: checked whole first, then the whole state replaced in
one transaction, with one audit event saying what was replaced."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Count

from .. import clock, rootstate, search
from ..models import AuditEvent, LogEntry, Message, StateRoot, Status
from . import bulk, stream
from .columns import dumps_compact
from .parse import Opener, StateFileError, check_file, duplicate_faults, items

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
    """Validate a whole file held in memory and import it; the database is untouched on any fault."""
    return import_file(
        lambda: io.BytesIO(data),
        actor=actor,
        source=source,
        on_duplicate=on_duplicate,
        progress=progress,
    )


def import_path(
    path: Path | str,
    *,
    actor: str,
    source: str,
    on_duplicate: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Validate the file at `path` and import it, reading it in pieces (twice: once
    to check it, once to insert); the database is untouched on any fault.

    Both passes read the one file opened here: a file replaced meanwhile (the scripts
    write theirs by renaming a new one over it) is not read unchecked."""
    with open(path, "rb") as file:

        def from_the_start() -> contextlib.nullcontext:
            file.seek(0)
            return contextlib.nullcontext(file)

        return import_file(
            from_the_start,
            actor=actor,
            source=source,
            on_duplicate=on_duplicate,
            progress=progress,
        )


def import_state(
    state: dict,
    *,
    actor: str,
    source: str,
    on_duplicate: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Replace the whole state with the one in `state` (as a file would hold it)."""
    data = json.dumps(state, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return import_bytes(
        data, actor=actor, source=source, on_duplicate=on_duplicate, progress=progress
    )


def import_file(
    open_stream: Opener,
    *,
    actor: str,
    source: str,
    on_duplicate: str = "refuse",
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Replace the whole state with the file `open_stream()` gives, in one transaction.

    A first pass checks the whole file (parse.check_file); only then a second reads
    it again and inserts in batches, so memory holds a batch, not the file.
    The same id in two places is refused naming every such id and its lists,
    unless `on_duplicate` chooses a rule ("keep-first"/"keep-last" by file order).
    Audit events are never deleted; one more says what the import replaced."""
    if on_duplicate not in DUPLICATE_RULES:
        raise ValueError(f"on_duplicate must be one of {', '.join(DUPLICATE_RULES)}")
    checked = check_file(open_stream)
    if checked.duplicates and on_duplicate == "refuse":
        raise StateFileError(duplicate_faults(checked))
    summary = ImportSummary(after=checked.counts, dropped_duplicates=sorted(checked.duplicates))
    keep = _kept_places(checked.duplicates, on_duplicate)
    total = sum(summary.after[s] for s in Status.values)
    with transaction.atomic():
        summary.before = current_counts()
        # The search index too is built once at the end, not row by row.
        with bulk.secondary_indexes_deferred(), search.deferred():
            Message.objects.all().delete()
            LogEntry.objects.all().delete()
            log = _LogWriter()
            bulk.insert_messages(
                bulk.message_rows(_messages(open_stream, log), keep), total, progress
            )
            log.flush()
        StateRoot.objects.all().delete()
        StateRoot.objects.create(pk=1, **_root_fields(checked.skeleton))
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


def _kept_places(
    duplicates: dict[str, list[tuple[str, int]]], rule: str
) -> dict[str, tuple[str, int]] | None:
    """id -> the one place kept, for the ids found more than once (None: there are none)."""
    if not duplicates:
        return None
    pick = 0 if rule == "keep-first" else -1
    return {mid: places[pick] for mid, places in duplicates.items()}


def _messages(open_stream: Opener, log: _LogWriter) -> Iterator[tuple[str, int, dict]]:
    """(list, index, message) in file order; the log entries met on the way go to `log`
    (one pass of the file for both: they may come before or after the messages)."""
    for event in items(open_stream):
        if event[0] == stream.MESSAGE:
            yield event[1], event[2], event[3]
        else:
            log.add(event[2])


class _LogWriter:
    """The message_log's entries, inserted in batches in file order."""

    def __init__(self) -> None:
        self.batch: list[LogEntry] = []

    def add(self, entry: dict) -> None:
        self.batch.append(
            LogEntry(
                raw=dumps_compact(entry),
                recipient=entry.get("recipient") if isinstance(entry.get("recipient"), str) else "",
                outcome=entry.get("status") if isinstance(entry.get("status"), str) else "",
                logged_at=clock.parse_timestamp(entry.get("timestamp")),
            )
        )
        if len(self.batch) >= bulk.BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            LogEntry.objects.bulk_create(self.batch)
            self.batch = []


def _describe(counts: dict[str, int]) -> str:
    """`40 incoming, 8 sent, 2 message_log entries`: the lists that hold anything."""
    parts = [f"{n} {name}" for name, n in counts.items() if n and name != "message_log"]
    if counts.get("message_log"):
        parts.append(f"{counts['message_log']} message_log entries")
    return ", ".join(parts) or "nothing"


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
