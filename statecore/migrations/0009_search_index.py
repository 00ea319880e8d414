"""The text search's index (statecore/search.py), kept in step by the database itself.

SQLite: an FTS5 trigram table over the folded searched columns, written by triggers
that call `search_fold()` (registered on every connection by the app). PostgreSQL:
the extensions pg_trgm and unaccent, `search_fold()` and `search_doc()`, the column
`search_text` (not in the model) kept by a trigger, and a GIN index over it; where the server refuses an extension, the search still
works as a scan (without accents folded when unaccent is missing) and says so here.
"""

from django.db import migrations, transaction

TABLE = "statecore_message_search"
FIELDS = ("message_id", "sender", "sender_name", "recipient", "chat", "body")
COLUMNS = ", ".join(FIELDS)


def _folded(row: str) -> str:
    return ", ".join(f"search_fold({row}.{name})" for name in FIELDS)


SQLITE_FORWARD = [
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5({COLUMNS}, tokenize='trigram')",
    f"""CREATE TRIGGER {TABLE}_insert AFTER INSERT ON statecore_message BEGIN
        INSERT INTO {TABLE} (rowid, {COLUMNS}) VALUES (new.id, {_folded("new")});
    END""",
    f"""CREATE TRIGGER {TABLE}_delete AFTER DELETE ON statecore_message BEGIN
        DELETE FROM {TABLE} WHERE rowid = old.id;
    END""",
    # Only a change of a searched column rewrites the row's entry: a status move does not.
    f"""CREATE TRIGGER {TABLE}_update AFTER UPDATE OF id, {COLUMNS} ON statecore_message BEGIN
        DELETE FROM {TABLE} WHERE rowid = old.id;
        INSERT INTO {TABLE} (rowid, {COLUMNS}) VALUES (new.id, {_folded("new")});
    END""",
    f"""INSERT INTO {TABLE} (rowid, {COLUMNS})
        SELECT id, {_folded("statecore_message")} FROM statecore_message""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER IF EXISTS {TABLE}_insert",
    f"DROP TRIGGER IF EXISTS {TABLE}_delete",
    f"DROP TRIGGER IF EXISTS {TABLE}_update",
    f"DROP TABLE IF EXISTS {TABLE}",
]


def _created(cursor, extension: str) -> str | None:
    """The schema of `extension`, created if missing; None where the server refuses it."""
    try:
        with transaction.atomic():
            cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    except Exception as exc:  # noqa: BLE001 (any refusal: no permission, not installed)
        print(
            f"\n  Text search: CREATE EXTENSION {extension} was refused ({exc}).\n"
            "  Searches work, by a slower scan; see the README (Operating at scale)."
        )
        return None
    cursor.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = %s",
        [extension],
    )
    return _quoted(cursor.fetchone()[0])


def _quoted(name: str) -> str:
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


def _postgresql_forward(cursor) -> None:
    unaccent = _created(cursor, "unaccent")
    trgm = _created(cursor, "pg_trgm")
    cursor.execute("SELECT current_schema()")
    here = _quoted(cursor.fetchone()[0])
    # Schema-qualified throughout: an index expression is also evaluated where the
    # search_path is empty (pg_dump's restore, autovacuum).
    folded = (
        f"lower({unaccent}.unaccent('{unaccent}.unaccent'::regdictionary, $1))"
        if unaccent
        else "lower($1)"
    )
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {here}.search_fold(text) RETURNS text "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ SELECT {folded} $$"
    )
    # A unit separator between columns (none inside them): no fragment a person types
    # spans two, and split_part finds each column again.
    parts = ", ".join(f"replace(${i}, E'\\x1f', ' ')" for i in range(1, len(FIELDS) + 1))
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {here}.search_doc(text, text, text, text, text, text) "
        "RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS "
        f"$$ SELECT {here}.search_fold(concat_ws(E'\\x1f', {parts})) $$"
    )
    # The folded text kept in a column of its own (by a trigger, so that a later change
    # of a searched column's type is not refused as a generated column's would be): the
    # index's re-check and a search walking a list read it instead of folding again.
    new_row = ", ".join(f"NEW.{name}" for name in FIELDS)
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {here}.{TABLE}_text() RETURNS trigger LANGUAGE plpgsql "
        f"AS $$ BEGIN NEW.search_text := {here}.search_doc({new_row}); RETURN NEW; END $$"
    )
    cursor.execute("ALTER TABLE statecore_message ADD COLUMN search_text text")
    cursor.execute(
        f"CREATE TRIGGER {TABLE}_text BEFORE INSERT OR UPDATE OF {COLUMNS} ON statecore_message "
        f"FOR EACH ROW EXECUTE FUNCTION {here}.{TABLE}_text()"
    )
    cursor.execute(f"UPDATE statecore_message SET search_text = {here}.search_doc({COLUMNS})")
    if trgm:
        cursor.execute(
            f"CREATE INDEX {TABLE}_trgm ON statecore_message USING gin "
            f"(search_text {trgm}.gin_trgm_ops)"
        )


def forward(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for statement in SQLITE_FORWARD:
                cursor.execute(statement)
        elif connection.vendor == "postgresql":
            _postgresql_forward(cursor)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)
        elif connection.vendor == "postgresql":
            # The extensions stay: other databases of the server may use them.
            cursor.execute(f"DROP INDEX IF EXISTS {TABLE}_trgm")
            cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_text ON statecore_message")
            cursor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_text()")
            cursor.execute("ALTER TABLE statecore_message DROP COLUMN IF EXISTS search_text")
            cursor.execute("DROP FUNCTION IF EXISTS search_doc(text, text, text, text, text, text)")
            cursor.execute("DROP FUNCTION IF EXISTS search_fold(text)")


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0008_chat_modes"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
