"""The search's fold takes compatibility forms apart before folding case, on both
databases, and the index is written again with it.

SQLite: `search.fold` folded `𝔘𝔫𝔦𝔠𝔬𝔡𝔢` to "Unicode" (its capital kept); the index is
built again with the fold that decomposes first. PostgreSQL: `search_fold()` kept
full-width letters and digits (`１２３`) and decomposed accents as they were; it now
normalizes to NFKC first (composed, as `unaccent`'s rules expect). `normalize()` needs
a UTF-8 database; another encoding keeps the old fold.
"""

from django.db import migrations

TABLE = "statecore_message_search"
FIELDS = ("message_id", "sender", "sender_name", "recipient", "chat", "body")
COLUMNS = ", ".join(FIELDS)


def _quoted(name: str) -> str:
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


def _sqlite_forward(cursor) -> None:
    # search_fold() is the application's fold (registered on the connection): the index
    # written again with it. Dropped and made again: deleting rows one by one is slower.
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [TABLE])
    (definition,) = cursor.fetchone()
    cursor.execute(f"DROP TABLE {TABLE}")
    cursor.execute(definition)
    folded = ", ".join(f"search_fold({name})" for name in FIELDS)
    cursor.execute(
        f"INSERT INTO {TABLE} (rowid, {COLUMNS}) SELECT id, {folded} FROM statecore_message"
    )


def _extension_schema(cursor, extension: str) -> str | None:
    cursor.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = %s",
        [extension],
    )
    row = cursor.fetchone()
    return _quoted(row[0]) if row else None


def _postgresql_fold(cursor, *, normalized: bool) -> None:
    cursor.execute("SELECT current_schema()")
    here = _quoted(cursor.fetchone()[0])
    unaccent = _extension_schema(cursor, "unaccent")
    text = "normalize($1, NFKC)" if normalized else "$1"
    folded = (
        f"lower({unaccent}.unaccent('{unaccent}.unaccent'::regdictionary, {text}))"
        if unaccent
        else f"lower({text})"
    )
    cursor.execute(
        f"CREATE OR REPLACE FUNCTION {here}.search_fold(text) RETURNS text "
        f"LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ SELECT {folded} $$"
    )
    # Only the rows whose folded text changes are written (those holding such forms:
    # 3% of the benchmark's messages): writing every row would leave the table twice
    # its size until a VACUUM FULL, each search reading twice the pages (the admin's
    # searches 3x slower).
    doc = f"{here}.search_doc({COLUMNS})"
    cursor.execute(
        f"UPDATE statecore_message SET search_text = {doc} WHERE search_text IS DISTINCT FROM {doc}"
    )


def _utf8(cursor) -> bool:
    cursor.execute("SHOW server_encoding")
    return cursor.fetchone()[0].upper() in ("UTF8", "UTF-8")


def forward(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            _sqlite_forward(cursor)
        elif connection.vendor == "postgresql" and _utf8(cursor):
            _postgresql_fold(cursor, normalized=True)


def backward(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and _utf8(cursor):
            _postgresql_fold(cursor, normalized=False)
    # SQLite: the index stays as the application's fold wrote it.


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0012_reply_to_index"),
    ]

    operations = [migrations.RunPython(forward, backward, elidable=False)]
