"""Batched insert of an imported file's messages: no query per message.

Django's per-field preparation and model instances cost more than the inserts
themselves on 100,000 messages, so each row is built as plain values (by
columns.import_row), and each batch is one statement: `executemany` on SQLite (in-process, no round trips),
`COPY` on PostgreSQL (half the time of a pipelined executemany).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, tzinfo

from django.db import connection
from django.utils import timezone

from ..clock import parse_timestamp
from ..models import Message
from . import columns

BATCH_SIZE = 2000
# Memory holds one batch: 2,000 messages are about 1 MB of JSON, but 2,000 with bodies
# of 65,536 characters would be 260 MB, so a batch also ends at this much JSON.
BATCH_BYTES = 2 * 1024 * 1024
# SQLite's page cache while importing (KiB, negative = size): the indexes of a
# large import do not fit the default 2 MB and are re-read from disk otherwise.
SQLITE_IMPORT_CACHE_KIB = 262_144


def message_rows(
    messages: Iterable[tuple[str, int, dict]], keep: dict[str, tuple[str, int]] | None
) -> Iterator[dict]:
    """One columns.import_row per (list, index, message), in their order. With `keep`
    (id -> (list, index) for the ids found more than once), only the kept occurrence."""
    tz = timezone.get_current_timezone()
    to_time = _time_adapter(tz)
    for status, index, obj in messages:
        if keep is not None and keep.get(obj["id"], (status, index)) != (status, index):
            continue
        yield columns.import_row(obj, status, index, tz=tz, to_time=to_time)


_UTC_NAMES = {
    "UTC",
    "Etc/UTC",
    "Etc/UCT",
    "UCT",
    "Etc/GMT",
    "GMT",
    "Etc/Universal",
    "Universal",
    "Etc/Zulu",
    "Zulu",
}


def _time_adapter(tz: tzinfo) -> Callable[[object, tzinfo], object]:
    """What the backend stores for a stored timestamp, straight from the text.

    SQLite keeps naive UTC text (Django's `adapt_datetimefield_value`); when the
    scripts' zone is UTC that is the parsed value itself, which spares two
    zone conversions per timestamp on 100,000 messages. psycopg takes the
    aware datetime."""
    if connection.vendor != "sqlite":
        return parse_timestamp
    db_zone = connection.timezone
    local_is_utc = getattr(tz, "key", str(tz)) in _UTC_NAMES and str(db_zone) in _UTC_NAMES

    def adapt(value: object, zone: tzinfo) -> str | None:
        if local_is_utc and value.__class__ is str:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                return str(parsed)
        moment = parse_timestamp(value, zone)
        return None if moment is None else str(moment.astimezone(db_zone).replace(tzinfo=None))

    return adapt


@contextmanager
def large_cache() -> Iterator[None]:
    """SQLite: a page cache of SQLITE_IMPORT_CACHE_KIB while the import inserts, the
    connection's own after. Not over the index builds that follow: at a million
    messages it held 110 MB more at the peak (1.4x the file, from 1.07x) to build the
    text search's index 3% faster."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (before,) = cursor.fetchone()
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")
        try:
            yield
        finally:
            cursor.execute(f"PRAGMA cache_size = {int(before)}")


@contextmanager
def secondary_indexes_deferred() -> Iterator[None]:
    """Drop the message table's secondary indexes and build them again on the
    way out, inside the caller's transaction (DDL is transactional on SQLite and
    PostgreSQL: a failed import rolls them back too). Building an index once
    over 100,000 sorted rows costs a fraction of updating it row by row.
    Constraint indexes (the primary key, the unique id) stay."""
    with connection.cursor() as cursor:
        indexes = _secondary_indexes(cursor)
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        yield
        for _, definition in indexes:
            cursor.execute(definition)


def _secondary_indexes(cursor) -> list[tuple[str, str]]:
    table = Message._meta.db_table
    if connection.vendor == "sqlite":
        # sql is NULL for the indexes SQLite makes for UNIQUE/PRIMARY KEY.
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND sql IS NOT NULL",
            [table],
        )
    else:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
            [table, table],
        )
    return list(cursor.fetchall())


def insert_messages(
    rows: Iterable[dict], total: int, progress: Callable[[int, int], None] | None = None
) -> int:
    """Insert the rows (column name -> value, every row the same names in the same
    order) in batches of BATCH_SIZE; returns how many were inserted."""
    done = 0
    with large_cache(), connection.cursor() as cursor:
        for batch in _batches(rows):
            # The statement names the columns of the rows it writes: a column
            # declared in columns.import_row is written wherever it stands.
            sql = _insert_statement(batch[0])
            values = [tuple(row.values()) for row in batch]
            if connection.vendor == "postgresql":
                _copy(cursor, sql, values)
            else:
                cursor.executemany(sql, values)
            done += len(batch)
            if progress:
                progress(done, total)
    return done


def _insert_statement(row: dict) -> str:
    quote = connection.ops.quote_name
    table = quote(Message._meta.db_table)
    names = ", ".join(quote(Message._meta.get_field(name).column) for name in row)
    if connection.vendor == "postgresql":
        return f"COPY {table} ({names}) FROM STDIN"
    placeholders = ", ".join(["%s"] * len(row))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders})"


def _copy(cursor, sql: str, batch: list[tuple]) -> None:
    """One COPY per batch, logged like any statement so query counts see it."""
    start = time.monotonic()
    with cursor.cursor.copy(sql) as copy:
        for row in batch:
            copy.write_row(row)
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- {len(batch)} rows", "time": f"{time.monotonic() - start:.3f}"}
        )


def _batches(rows: Iterable[dict]) -> Iterator[list[dict]]:
    """BATCH_SIZE rows, or fewer of long messages: at most BATCH_BYTES of their JSON."""
    batch: list[dict] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += len(row["raw"])
        if len(batch) >= BATCH_SIZE or size >= BATCH_BYTES:
            yield batch
            batch = []
            size = 0
    if batch:
        yield batch
