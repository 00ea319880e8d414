"""The one StateRoot row: defaults, reading its parts, counting, session updates.

Every part is JSON text (see models.StateRoot); these helpers turn it into
Python values and back so no caller parses the columns itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.db import connection, transaction

from . import clock
from .models import AuditEvent, Source, StateRoot, Status
from .statefile.columns import dumps_compact
from .statefile.rules import validate_setting

DEFAULT_API_ENDPOINT = "http://localhost:3000/api/whatsapp"
DEFAULT_WATCHER_CONFIG = {
    "poll_interval_seconds": 5,
    "auto_reply_enabled": True,
    "process_group_messages": False,
    "max_messages_per_poll": 10,
}
DEFAULT_RETRY_CONFIG = {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True}
TOP_LEVEL_ORDER = [
    "session",
    "account_info",
    "api_endpoint",
    "human_in_the_loop",
    "watcher_config",
    "retry_config",
    "messages",
    "message_log",
    "incoming_messages",
    "pending_replies",
    "generated_replies",
    "statistics",
    "metadata",
]
# Top-level keys held in a column of their own; every other key lives in `extra`.
COLUMN_KEYS = (
    "session",
    "account_info",
    "api_endpoint",
    "human_in_the_loop",
    "watcher_config",
    "retry_config",
    "statistics",
    "metadata",
)
COUNTER_MAX = 2**63 - 1  # the largest value of the BigInteger counter columns
COUNTERS = ("total_incoming", "total_sent", "total_failed", "total_approved", "total_rejected")
LAST_TIMES = ("last_message_received", "last_message_sent")
# What a message arriving in a list counts (SEED_API.md): pending_approval counts nothing.
COUNTED_BY_STATUS = {
    Status.INCOMING: ("total_incoming", "last_message_received"),
    Status.SENT: ("total_sent", "last_message_sent"),
    Status.FAILED: ("total_failed", None),
    Status.APPROVED: ("total_approved", None),
    Status.REJECTED: ("total_rejected", None),
}


def default_root_fields() -> dict:
    """A new, empty state as the old StateManager started one."""
    stamp = dumps_compact(clock.local_iso())
    return {
        "key_order": dumps_compact(TOP_LEVEL_ORDER),
        "message_lists": dumps_compact(Status.values),
        "session": dumps_compact(
            {
                "authenticated": False,
                "last_authenticated": None,
                "session_valid": False,
                "session_path": ".wwebjs_auth",
                "requires_qr": True,
                "last_validation": None,
                "validation_interval_minutes": 30,
            }
        ),
        "account_info": dumps_compact(
            {"number": None, "name": None, "platform": None, "last_updated": None}
        ),
        "api_endpoint": dumps_compact(DEFAULT_API_ENDPOINT),
        "human_in_the_loop": "true",
        "watcher_config": dumps_compact(DEFAULT_WATCHER_CONFIG),
        "retry_config": dumps_compact(DEFAULT_RETRY_CONFIG),
        "statistics": dumps_compact({**{c: 0 for c in COUNTERS}, **{t: None for t in LAST_TIMES}}),
        "metadata": dumps_compact(
            {"version": "1.0.0", "created_at": json.loads(stamp), "last_updated": json.loads(stamp)}
        ),
        "extra": dumps_compact(
            {"incoming_messages": [], "pending_replies": [], "generated_replies": []}
        ),
        **{c: 0 for c in COUNTERS},
        **{t: "null" for t in LAST_TIMES},
        "last_updated": stamp,
    }


def get_root() -> StateRoot:
    root, _ = StateRoot.objects.get_or_create(pk=1, defaults=default_root_fields())
    return root


def part(root: StateRoot, key: str, default=None):
    """The value of a verbatim column (None in the column = key missing -> default)."""
    text = getattr(root, key)
    return default if text is None else json.loads(text)


def human_in_the_loop(root: StateRoot | None = None) -> bool:
    """Missing counts as true, so nothing is sent unreviewed."""
    return part(root or get_root(), "human_in_the_loop", True) is not False


def api_endpoint(root: StateRoot | None = None) -> str:
    return part(root or get_root(), "api_endpoint", DEFAULT_API_ENDPOINT) or DEFAULT_API_ENDPOINT


def retry_config(root: StateRoot | None = None) -> dict:
    return {**DEFAULT_RETRY_CONFIG, **(part(root or get_root(), "retry_config", {}) or {})}


def watcher_config(root: StateRoot | None = None) -> dict:
    return {**DEFAULT_WATCHER_CONFIG, **(part(root or get_root(), "watcher_config", {}) or {})}


def session_data(root: StateRoot | None = None) -> dict:
    return part(root or get_root(), "session", {}) or {}


def statistics(root: StateRoot | None = None) -> dict:
    """The statistics object as export writes it: the stored object with the
    live counters laid over it (a counter missing from the file stays missing
    until something counts it)."""
    root = root or get_root()
    stats = part(root, "statistics", None)
    stats = dict(stats) if isinstance(stats, dict) else {}
    for name in COUNTERS:
        value = getattr(root, name)
        if value is not None:
            stats[name] = value
    for name in LAST_TIMES:
        text = getattr(root, name)
        if text is not None:
            stats[name] = json.loads(text)
    return stats


def count_arrival(status: str, *, touch_only: bool = False) -> None:
    """Count a message arriving in `status` and set metadata.last_updated, in
    one UPDATE (atomic: concurrent moves never lose a count)."""
    stamp = dumps_compact(clock.local_iso())
    counter, last_time = (None, None) if touch_only else COUNTED_BY_STATUS.get(status, (None, None))
    sql, params = _arrival_update(counter, last_time, stamp)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount:
            return
    get_root()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _arrival_update(counter: str | None, last_time: str | None, stamp: str) -> tuple[str, list]:
    """The counting UPDATE, written out: it runs in every status move, and the
    ORM's compilation of this CASE cost more than the rest of a move together."""
    quote = connection.ops.quote_name
    sets = [f"{quote('last_updated')} = %s"]
    params: list = [stamp]
    if counter:
        # A counter imported at the 64-bit limit stays there: one more would be
        # an error on PostgreSQL (and a float on SQLite), refusing the move.
        c = quote(counter)
        sets.append(f"{c} = CASE WHEN {c} >= %s THEN {c} ELSE COALESCE({c}, 0) + 1 END")
        params.append(COUNTER_MAX)
    if last_time:
        sets.append(f"{quote(last_time)} = %s")
        params.append(stamp)
    table = quote(StateRoot._meta.db_table)
    return f"UPDATE {table} SET {', '.join(sets)} WHERE {quote('id')} = 1", params


def touch() -> None:
    """metadata.last_updated = now, for any change that is not a message arrival."""
    count_arrival("", touch_only=True)


def _refuse_invalid(key: str, value: object) -> None:
    """What an import would refuse is never stored: the export must stay importable."""
    problems = validate_setting(key, value)
    if problems:
        raise ValueError("; ".join(f"{place}: {problem}" for place, problem in problems))


def update_part(
    key: str,
    change,
    *,
    actor: str,
    source: str,
    action: str,
    note: str = "",
    audit: Callable[[object, object], bool] | None = None,
) -> object:
    """Read-modify-write one verbatim part under a row lock, audited.

    `change(old_value) -> new_value` gets the current value (None when missing).
    `audit(before, after)`, when given, decides whether this change earns an
    audit row (a repeat of the same news does not); an unchanged value is not
    written at all then."""
    with transaction.atomic():
        get_root()
        root = StateRoot.objects.select_for_update().get(pk=1)
        before = part(root, key, None)
        after = change(json.loads(json.dumps(before)))
        if audit is not None and after == before:
            return after
        if after is not None:
            _refuse_invalid(key, after)
        setattr(root, key, None if after is None else dumps_compact(after))
        root.last_updated = dumps_compact(clock.local_iso())
        root.save(update_fields=[key, "last_updated"])
        if key not in json.loads(root.key_order):
            StateRoot.objects.filter(pk=1).update(
                key_order=dumps_compact([*json.loads(root.key_order), key])
            )
        if audit is None or audit(before, after):
            AuditEvent.objects.create(
                action=action,
                actor=actor,
                source=source,
                note=note,
                detail={"key": key, "before": before, "after": after},
                created_at=clock.now(),
            )
    return after


def update_extra(key: str, value: object, *, actor: str, source: str, action: str) -> None:
    """Set one top-level key kept in `extra` (legacy lists, unknown keys), audited."""
    _refuse_invalid(key, value)
    with transaction.atomic():
        get_root()
        root = StateRoot.objects.select_for_update().get(pk=1)
        extra = json.loads(root.extra)
        before = extra.get(key)
        extra[key] = value
        root.extra = dumps_compact(extra)
        order = json.loads(root.key_order)
        if key not in order:
            root.key_order = dumps_compact([*order, key])
        root.last_updated = dumps_compact(clock.local_iso())
        root.save(update_fields=["extra", "key_order", "last_updated"])
        AuditEvent.objects.create(
            action=action,
            actor=actor,
            source=source,
            detail={"key": key, "before": before, "after": value},
            created_at=clock.now(),
        )


__all__ = [
    "COUNTERS",
    "LAST_TIMES",
    "Source",
    "api_endpoint",
    "count_arrival",
    "get_root",
    "human_in_the_loop",
    "part",
    "retry_config",
    "session_data",
    "statistics",
    "touch",
    "update_extra",
    "update_part",
    "watcher_config",
]
