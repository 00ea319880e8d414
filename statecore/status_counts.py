"""The count table (StatusCount): messages per status, exact, read in one query.

Database triggers keep it, not the writers: the lifecycle's moves, adds, the
import's bulk insert and delete, the admin's saves and the webhook all write
the message table, and a trigger runs in the transaction of each such write, so
a rolled-back write leaves the counts as they were and no writer can forget.

`install_triggers` is what migration 0010 runs; `recount` (the `recount_messages`
command) installs them again and recomputes the table from the rows, for a
database restored without them or a table rebuilt by a later migration (SQLite
drops a table's triggers when Django remakes it to alter a column).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection as default_connection
from django.db import connections, transaction

from .models import Message, Status, StatusCount

MESSAGES = Message._meta.db_table
COUNTS = StatusCount._meta.db_table
TRIGGERS = ("message_count_insert", "message_count_update", "message_count_delete")

# SQLite has row triggers only. The upsert (not a plain UPDATE) keeps counting after
# the count rows were deleted with the messages (a test database's flush).
_SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS message_count_insert AFTER INSERT ON {MESSAGES}
    BEGIN
        INSERT INTO {COUNTS} (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS message_count_update AFTER UPDATE OF status ON {MESSAGES}
    WHEN OLD.status IS NOT NEW.status
    BEGIN
        INSERT INTO {COUNTS} (status, n) VALUES (OLD.status, -1)
        ON CONFLICT (status) DO UPDATE SET n = n - 1;
        INSERT INTO {COUNTS} (status, n) VALUES (NEW.status, 1)
        ON CONFLICT (status) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS message_count_delete AFTER DELETE ON {MESSAGES}
    BEGIN
        INSERT INTO {COUNTS} (status, n) VALUES (OLD.status, -1)
        ON CONFLICT (status) DO UPDATE SET n = n - 1;
    END""",
]

# PostgreSQL: statement triggers over transition tables, so an import's COPY of 2,000
# rows updates each count row once, not 2,000 times (in one transaction every update
# leaves a row version that nothing can prune before the commit: a million row
# triggers would make each update walk a chain of a million versions).
# Deadlocks: one move A->B and another B->A both lock the rows of A and B. The upsert
# takes them in the order of `status` (the sorted SELECT feeds the INSERT row by row),
# whatever the move, so two transactions never wait for each other in a circle. (Each
# lifecycle move is one statement; a transaction of several statements takes the rows of
# each as it goes, and one that crosses another's lists in the other order would be
# cancelled by PostgreSQL's deadlock check, not hang.)
_PG_APPLY = f"""
CREATE OR REPLACE FUNCTION statecore_apply_status_counts(statuses text[], deltas bigint[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO {COUNTS} (status, n)
    SELECT d.status, d.n FROM unnest(statuses, deltas) AS d(status, n)
    WHERE d.n <> 0 ORDER BY d.status
    ON CONFLICT (status) DO UPDATE SET n = {COUNTS}.n + EXCLUDED.n
$$"""

_PG_DELTA = {
    "insert": "SELECT status, count(*) FROM new_rows GROUP BY status",
    "delete": "SELECT status, -count(*) FROM old_rows GROUP BY status",
    # Rows whose status did not change cancel out: a lease or an edit locks nothing.
    "update": """SELECT status, sum(d) FROM (
            SELECT status, 1 AS d FROM new_rows UNION ALL SELECT status, -1 FROM old_rows
        ) AS moved GROUP BY status HAVING sum(d) <> 0""",
}
_PG_TRANSITIONS = {
    "insert": "REFERENCING NEW TABLE AS new_rows",
    "delete": "REFERENCING OLD TABLE AS old_rows",
    "update": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def _pg_statements() -> list[str]:
    statements = [_PG_APPLY]
    for op, delta in _PG_DELTA.items():
        function = f"statecore_message_count_{op}"
        statements += [
            f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE statuses text[]; deltas bigint[];
            BEGIN
                SELECT array_agg(status), array_agg(n) INTO statuses, deltas
                FROM ({delta}) AS counted(status, n);
                IF statuses IS NOT NULL THEN
                    PERFORM statecore_apply_status_counts(statuses, deltas);
                END IF;
                RETURN NULL;
            END $$""",
            f"DROP TRIGGER IF EXISTS message_count_{op} ON {MESSAGES}",
            f"""CREATE TRIGGER message_count_{op} AFTER {op.upper()} ON {MESSAGES}
            {_PG_TRANSITIONS[op]} FOR EACH STATEMENT EXECUTE FUNCTION {function}()""",
        ]
    return statements


def install_triggers(connection=default_connection) -> None:
    """Create (or replace) the triggers that keep StatusCount in step with the messages."""
    statements = _SQLITE if connection.vendor == "sqlite" else _pg_statements()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def drop_triggers(connection=default_connection) -> None:
    with connection.cursor() as cursor:
        for name in TRIGGERS:
            if connection.vendor == "sqlite":
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
            else:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {MESSAGES}")
        if connection.vendor != "sqlite":
            for op in _PG_DELTA:
                cursor.execute(f"DROP FUNCTION IF EXISTS statecore_message_count_{op}()")
            cursor.execute(
                "DROP FUNCTION IF EXISTS statecore_apply_status_counts(text[], bigint[])"
            )


def installed_triggers(connection=default_connection) -> set[str]:
    """Names of the count triggers the message table has now."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [MESSAGES],
            )
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [MESSAGES],
            )
        return {name for (name,) in cursor.fetchall()} & set(TRIGGERS)


def counted_rows(connection=default_connection) -> dict[str, int]:
    """Messages per status counted from the rows: one GROUP BY over the whole table."""
    counts = dict.fromkeys(Status.values, 0)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, COUNT(*) FROM {MESSAGES} GROUP BY status")
        counts.update(cursor.fetchall())
    return counts


def stored_counts(connection=default_connection) -> dict[str, int]:
    """What the count table holds now (0 for a status without a row)."""
    counts = dict.fromkeys(Status.values, 0)
    counts.update(StatusCount.objects.using(connection.alias).values_list("status", "n"))
    return counts


def recount(connection=default_connection) -> tuple[dict[str, int], dict[str, int]]:
    """Install the triggers and set every status's count to its rows' COUNT(*), in one
    transaction that locks the message table first, so no write slips in between the
    count and the table it corrects. Returns the counts (as they were, as corrected)."""
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            if connection.vendor != "sqlite":  # SQLite's write lock is the database's
                cursor.execute(f"LOCK TABLE {MESSAGES} IN SHARE ROW EXCLUSIVE MODE")
            install_triggers(connection)
            before = stored_counts(connection)
            counts = counted_rows(connection)
            cursor.execute(f"DELETE FROM {COUNTS}")
            cursor.executemany(
                f"INSERT INTO {COUNTS} (status, n) VALUES (%s, %s)", list(counts.items())
            )
    return before, counts


@contextmanager
def suspended(connection=default_connection) -> Iterator[None]:
    """For a bulk writer inside its transaction (the import's delete and insert of a
    million rows): on SQLite, the row triggers are dropped for the block and the table
    recounted on the way out (a few µs per row saved, and a DELETE of every row is
    SQLite's truncation again); SQLite's write lock keeps every other writer out
    meanwhile. PostgreSQL's statement triggers cost nothing per row: kept."""
    if connection.vendor != "sqlite":
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("suspend the count triggers only inside the writer's transaction")
    drop_triggers(connection)
    yield
    recount(connection)


def after_migrate(sender, *, using: str = "default", **kwargs) -> None:
    """`post_migrate` (sent after `migrate` and after `flush`): the triggers in place and
    the counts right. A migration that rebuilds the message table on SQLite drops its
    triggers; a flush empties both tables in no fixed order, so the message rows deleted
    after the count rows would leave negative counts behind."""
    recount(connections[using])
