"""Text search over messages, served from an index: what people type finds what they mean.

A search matches a message when one of the searched columns holds the text as typed,
compared after folding both (case and accents: `jose` finds `José`, `ZOE` finds `Zoë`);
a fragment of a number (`4567` in `923001234567`) matches too, and `%`, `_`, quotes
and backslashes are plain characters.

The index lives in the database and is kept in step there, so every writer (the
import, the lifecycle, the admin, the Python API, a script) is covered without a
line of its own:

- SQLite: the FTS5 table `statecore_message_search` (tokenizer `trigram`) over the
  folded copies of the searched columns, written by triggers on `statecore_message`
  that call `search_fold()`, the function `fold` below registered on every
  connection (`register_fold`). SQLite 3.40's trigram tokenizer cannot drop accents,
  hence the fold before it.
- PostgreSQL: a GIN `gin_trgm_ops` index over `search_doc(...)`, the columns joined
  and folded by `search_fold()` (`lower(unaccent(normalize(NFKC)))`, IMMUTABLE, since
  migration 0013), which folds a search's text too (`needle`). Migration 0009
  creates them; where the server refuses the extensions the same queries run as a
  scan (see the README).

`manage.py rebuild_search_index` rebuilds the index (`rebuild`).
"""

from __future__ import annotations

import functools
import json
import re
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat, StrIndex
from django.db.models.lookups import Contains, GreaterThan

from .models import Message
from .valuelists import listed

# The columns a search reads, in the index's order (the admin searches them all).
FIELDS = ("message_id", "sender", "sender_name", "recipient", "chat", "body")
TABLE = "statecore_message_search"
FOLD_FUNCTION = "search_fold"
# The columns of FTS5's content table that hold FIELDS, in order.
_CONTENT = tuple(f"c{i}" for i in range(len(FIELDS)))
# A trigram index finds only what has a trigram: shorter text is looked for by a scan.
MIN_INDEXED = 3
# A fragment of one or two characters is in nearly every message, so no index narrows
# it; scanning only the newest SHORT_SCAN_CAP messages keeps such a search as fast at a
# million messages as at a thousand (and finds the recent ones people look for).
SHORT_SCAN_CAP = 20_000

# Between the columns PostgreSQL's index and probes join (migration 0009).
_SEPARATOR = "\x1f"
# What a search does not hold: NUL (refused by PostgreSQL), lone surrogates (not
# UTF-8), and the separator of the columns (so no search matches across two of them).
_UNSTORABLE = re.compile("[\x00\x1f\ud800-\udfff]")


def fold(text: str | None) -> str | None:
    """`text` as the index compares it: case folded, accents and compatibility forms
    dropped (`Zoë` -> `zoe`, `ﬁ` -> `fi`, `１２３` -> `123`). Deterministic: the triggers
    call it. PostgreSQL folds with its own `search_fold()` (see `needle`)."""
    if text is None:
        return None
    if text.isascii():
        return text.lower()
    # Decomposed before the case is folded as well as after: a compatibility form may
    # stand for a capital (`𝔘` is "U", `Ⓐ` is "A"), and a folded case may decompose.
    compatible = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFKD", compatible.casefold()).translate(_marks())


@functools.cache
def _marks() -> dict[int, None]:
    """Every character that only adds an accent to the one before it (after NFKD), to
    drop: made on the first text that is not ASCII (a scan of Unicode, 40 ms)."""
    return dict.fromkeys(cp for cp in range(sys.maxunicode + 1) if unicodedata.combining(chr(cp)))


def register_fold(sender=None, connection=None, **kwargs) -> None:
    """Give a new SQLite connection `search_fold()`, which the index's triggers call:
    without it, a write to the message table fails ("no such function")."""
    if connection is not None and connection.vendor == "sqlite":
        connection.connection.create_function(FOLD_FUNCTION, 1, fold, deterministic=True)


def needle(text: str) -> str:
    """What a search looks for: `text` folded, without what no message can hold. Folded
    by the database's own fold, the one its index holds: PostgreSQL's `search_fold()`
    (`unaccent`'s rules) drops other accents than Python's fold does, and a needle
    folded one way would miss a text folded the other (ASCII folds alike: no query)."""
    cleaned = _UNSTORABLE.sub("", text)
    if connection.vendor == "sqlite" or cleaned.isascii():
        return fold(cleaned)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {FOLD_FUNCTION}(%s)", [cleaned])
        return cursor.fetchone()[0]


def matches(text: str, fields: Sequence[str] = FIELDS) -> Q:
    """Messages one of whose `fields` holds `text` (folded, as a fragment), found from
    the index: the way for a list in the table's own order (the admin's)."""
    wanted = needle(text)
    if not wanted:
        return Q()
    if len(wanted) < MIN_INDEXED:
        return _short_scan(wanted, fields)
    if connection.vendor == "sqlite":
        # As for the replies (replies_matching): a rare text's hits listed, a common
        # one's rows tested as the list is read in its order (every hit of "9230",
        # nine in ten messages, listed and sorted took 160 ms at a million).
        ids = _fts_ids(wanted, fields)
        return Q(_Holds(wanted, fields)) if ids is None else Q(pk__in=_id_list(ids))
    held = Q(Contains(_SearchText(), wanted))
    return held if set(fields) == set(FIELDS) else held & _any_field(wanted, fields)


def replies_matching(text: str, own: Sequence[str], answered: Sequence[str]) -> Q:
    """Replies whose `own` fields hold `text`, or that answer a message whose `answered`
    fields hold it, for a list read in an order of its own (the queue's, the history's).

    The index is asked for the text's hits, up to SPARSE of them. A rarer text: its
    replies are found from those hits, and handed to the list's queries as a list of ids
    (the index is read once, not again by the count and the page). A commoner one: each
    row tested as the list is walked in its order, which finds a page within a few
    thousand rows. A text too short for the index: the newest SHORT_SCAN_CAP messages
    holding it, found as a rare text's hits are."""
    wanted = needle(text)
    if not wanted:
        return Q()
    if len(wanted) < MIN_INDEXED:
        found = _newest_hits(wanted, own, answered)
    else:
        found = _sparse_hits(wanted, own, answered)
    if found is None:
        return _held(wanted, own) | _answers_holding(wanted, answered)
    return Q(pk__in=_id_list(sorted({*found.holding, *_replies_to(found.answering)})))


def _replies_to(ids: list[int]) -> list[int]:
    """The ids of the replies to these messages (none asked for: no query)."""
    if not ids:
        return []
    originals = Message.objects.filter(pk__in=_id_list(ids)).values("message_id")
    return list(Message.objects.filter(reply_to__in=originals).values_list("pk", flat=True))


def _held(wanted: str, fields: Sequence[str]) -> Q:
    """Whether this row's `fields` hold `wanted`: tested on the row itself."""
    if connection.vendor == "sqlite":
        return Q(_Holds(wanted, fields))
    return _any_field(wanted, fields, common=True)


def _answers_holding(wanted: str, fields: Sequence[str]) -> Q:
    """Whether the message this reply answers holds `wanted`: a probe of its unique id.
    On PostgreSQL a scalar subquery, as an EXISTS would become one hashed pass over
    every message, folding each."""
    if connection.vendor == "sqlite":
        original = Message.objects.filter(_Holds(wanted, fields), message_id=OuterRef("reply_to"))
        return Q(Exists(original))
    return _holds(_answered_text(fields), wanted)


def _answered_text(fields: Sequence[str]) -> Subquery:
    """PostgreSQL: the folded `fields` of the message a reply answers, joined by a
    character no search holds."""
    parts = [_SearchText(name) for name in fields]
    joined = parts[0]
    for part in parts[1:]:
        joined = Concat(joined, Value(_SEPARATOR), part, output_field=TextField())
    original = Message.objects.filter(message_id=OuterRef("reply_to"))
    return Subquery(original.values(text=joined)[:1], output_field=TextField())


# Up to this many hits a text's replies are found from its hits; past it, by walking the
# list. Where the two cost the same, measured at a million messages: a hit costs SQLite
# little (the index holds the folded text) and a walked row much more (two probes);
# PostgreSQL reads each hit's row from the table (about 10 us) and tests a walked row in
# about 5 us. At 20,000 (2% of a million) a walk finds a page of 50 within 2,500 rows.
SPARSE = 20_000
SPARSE_POSTGRESQL = 5_000


def _sparse_limit() -> int:
    return SPARSE if connection.vendor == "sqlite" else min(SPARSE, SPARSE_POSTGRESQL)


class Hits(NamedTuple):
    """The messages a reply search found in the index, by id."""

    holding: list[int]  # those whose own fields (a reply's) hold the text
    answering: list[int]  # those whose answered fields (a customer's message's) hold it


def _sparse_hits(wanted: str, own: Sequence[str], answered: Sequence[str]) -> Hits | None:
    """The messages whose `own` or `answered` fields hold `wanted`; None when the index
    holds it more than the sparse limit."""
    if connection.vendor != "sqlite":
        limit = _sparse_limit()
        # The planner's estimate comes from a sample of about a hundred texts: far past
        # the limit it is sure enough, and spares reading thousands of rows to know. A
        # rare text it misjudges would be walked for, through the whole list.
        if _estimated_hits(wanted) > 10 * limit:
            return None
        held = Message.objects.filter(Contains(_SearchText(), wanted))
        return _row_hits(held, wanted, own, answered, limit=limit)
    # The index's list of ids first (cheap, even for a common text), then the content
    # of the few, for which fields hold it.
    ids = _fts_ids(wanted, list(dict.fromkeys((*own, *answered))))
    return None if ids is None else _content_hits(_id_list(ids), wanted, own, answered)


def _fts_ids(wanted: str, fields: Sequence[str]) -> list[int] | None:
    """SQLite: the ids of the messages one of whose `fields` holds `wanted`, read from
    the index; None when there are more than the sparse limit."""
    limit = _sparse_limit()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH %s LIMIT %s",
            [_fts_query(wanted, fields), limit + 1],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
    return None if len(ids) > limit else ids


def _newest_hits(wanted: str, own: Sequence[str], answered: Sequence[str]) -> Hits:
    """As `_sparse_hits`, for a text the index cannot find: of the newest SHORT_SCAN_CAP
    messages, those that hold it."""
    if connection.vendor != "sqlite":
        newest = Message.objects.filter(_short_scan(wanted, (*own, *answered)))
        return _row_hits(newest, wanted, own, answered)
    return _content_hits(_newest_holding(wanted, (*own, *answered)), wanted, own, answered)


def _content_hits(ids: RawSQL, wanted: str, own: Sequence[str], answered: Sequence[str]) -> Hits:
    """SQLite: which of these messages (`ids`, a subquery) hold `wanted` in which fields,
    read from the index's content table (folded already)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, ({_tests(own, 'c')}), ({_tests(answered, 'c')}) "
            f"FROM {TABLE}_content c WHERE c.id IN ({ids.sql})",
            [*[wanted] * (len(own) + len(answered)), *ids.params],
        )
        return _split(cursor.fetchall())


def _row_hits(
    messages: QuerySet,
    wanted: str,
    own: Sequence[str],
    answered: Sequence[str],
    *,
    limit: int | None = None,
) -> Hits | None:
    """PostgreSQL: which of `messages` hold `wanted` in which fields; None past `limit`."""

    def holds(fields: Sequence[str]) -> ExpressionWrapper:
        return ExpressionWrapper(_any_field(wanted, fields, common=True), BooleanField())

    flagged = messages.annotate(o=holds(own), a=holds(answered)).values_list("pk", "o", "a")
    rows = list(flagged if limit is None else flagged[: limit + 1])
    return None if limit is not None and len(rows) > limit else _split(rows)


def _split(rows) -> Hits:
    """Rows of (id, own fields hold it, answered fields hold it), as Hits."""
    return Hits([pk for pk, own, _ in rows if own], [pk for pk, _, answers in rows if answers])


def _estimated_hits(wanted: str) -> float:
    """PostgreSQL: how many messages the planner expects to hold `wanted` (from the
    index's statistics), read from EXPLAIN without running the query."""
    held = Message.objects.filter(Contains(_SearchText(), wanted)).values("pk")
    sql, params = held.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return plan[0]["Plan"]["Plan Rows"]


def _id_list(ids: list[int]) -> RawSQL:
    return listed(ids, "bigint")


def _tests(fields: Sequence[str], table: str) -> str:
    """SQL true when one of `fields` in `table`, the index's content table (its columns
    c0, c1... hold FIELDS folded), holds the parameter: `instr` compares exactly."""
    return " OR ".join(f"instr({table}.{_CONTENT[FIELDS.index(name)]}, %s) > 0" for name in fields)


def _fts_query(wanted: str, fields: Sequence[str]) -> str:
    """A phrase of FTS5's query language: quoted, so every character is literal."""
    phrase = '"' + wanted.replace('"', '""') + '"'
    columns = " ".join(fields)
    return phrase if set(fields) == set(FIELDS) else f"{{{columns}}} : {phrase}"


def _short_scan(wanted: str, fields: Sequence[str]) -> Q:
    if connection.vendor == "sqlite":
        return Q(pk__in=_newest_holding(wanted, fields))
    # The bound as a number, not a subquery: PostgreSQL's planner then knows the range
    # is small, and joins the replies of its few hits instead of scanning for them.
    newest = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    return Q(pk__gt=newest - SHORT_SCAN_CAP) & _any_field(wanted, fields)


def _newest_holding(wanted: str, fields: Sequence[str]) -> RawSQL:
    """SQLite: a range of the index's content table (folded already), read once."""
    content = f"{TABLE}_content"
    return RawSQL(
        f"SELECT c.id FROM {content} c WHERE c.id > (SELECT max(id) FROM {content}) - %s "
        f"AND ({_tests(fields, 'c')})",
        [SHORT_SCAN_CAP, *[wanted] * len(fields)],
    )


def _any_field(wanted: str, fields: Sequence[str], *, common: bool = False) -> Q:
    """PostgreSQL: one of `fields`, as the folded column holds it, holds `wanted`. For a
    common text `strpos`, which the planner takes to hold for a third of the rows, so it
    walks a list's index for a page; for a rare one LIKE, taken to hold for few, so it
    starts from the index's hits."""
    if common:
        return Q.create([_holds(_SearchText(name), wanted) for name in fields], connector=Q.OR)
    tests = [Q(Contains(_SearchText(name), wanted)) for name in fields]
    return Q.create(tests, connector=Q.OR)


def _holds(text, wanted: str) -> Q:
    return Q(GreaterThan(StrIndex(text, Value(wanted)), 0))


class _Holds(Func):
    """SQLite: whether the row's folded columns, as the index stores them (its content
    table, by rowid), hold `wanted`: `instr` compares them exactly, at C speed."""

    output_field = BooleanField()

    def __init__(self, wanted: str, fields: Sequence[str]) -> None:
        super().__init__(F("pk"))
        self.wanted, self.fields = wanted, tuple(fields)

    def as_sql(self, compiler, connection, **extra_context):
        pk, params = compiler.compile(self.source_expressions[0])
        tests = _tests(self.fields, "c")
        sql = f"EXISTS (SELECT 1 FROM {TABLE}_content c WHERE c.id = {pk} AND ({tests}))"
        return sql, (*params, *[self.wanted] * len(self.fields))


class _SearchText(Func):
    """PostgreSQL: the message's folded text (the column `search_text` of migration 0009,
    which the model does not declare), or one column's part of it. Written after the
    row's id, so the name follows the query's alias for the table (U0 in a subquery)."""

    output_field = TextField()

    def __init__(self, field: str | None = None) -> None:
        super().__init__(F("pk"))
        self.column = field

    def as_sql(self, compiler, connection, **extra_context):
        pk, params = compiler.compile(self.source_expressions[0])
        column = pk[: -len(connection.ops.quote_name("id"))] + connection.ops.quote_name(
            "search_text"
        )
        if self.column is None:
            return column, params
        return f"split_part({column}, E'\\x1f', {FIELDS.index(self.column) + 1})", params


@contextmanager
def deferred() -> Iterator[None]:
    """Leave the index alone while the caller replaces many messages, and build it once
    on the way out, inside the caller's transaction: row by row, the triggers would
    make a bulk import several times slower (SQLite; PostgreSQL's index is one of the
    secondary indexes an import already builds again)."""
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            [Message._meta.db_table],
        )
        triggers = [row for row in cursor.fetchall() if row[0].startswith(TABLE)]
        for name, _ in triggers:
            cursor.execute(f"DROP TRIGGER {name}")
        yield
        rebuild()
        for _, definition in triggers:
            cursor.execute(definition)


# FTS5 gathers the terms of the rows written in memory and writes them out as one more
# segment each time they pass this many bytes (its option `hashsize`, 1 MB unless set).
# A build written in a few large segments spares merging a hundred small ones: at
# 100,000 messages it takes 1.45 s instead of 2.0 s, for up to this much memory.
_BUILD_HASHSIZE = 32 * 1024 * 1024
_HASHSIZE = 1024 * 1024  # FTS5's own, for the row-by-row writes of the triggers


def rebuild() -> int:
    """Build the index again from the messages; returns how many it holds."""
    # One transaction: never an index dropped and not made again.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            _emptied(cursor)
            _filled(cursor)
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
        else:
            columns = ", ".join(FIELDS)
            cursor.execute(
                f"UPDATE {Message._meta.db_table} SET search_text = search_doc({columns})"
            )
            cursor.execute(f"SELECT count(*) FROM {Message._meta.db_table}")
        return cursor.fetchone()[0]


def _emptied(cursor) -> None:
    """SQLite: the index dropped and made again, empty, as its migration declared it.
    Deleting its rows instead costs more than building it: FTS5 takes each row's
    every trigram out of the index one by one (1.2 s for 100,000 messages)."""
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [TABLE])
    (definition,) = cursor.fetchone()
    cursor.execute(f"DROP TABLE {TABLE}")
    cursor.execute(definition)


def _filled(cursor) -> None:
    """SQLite: every message's searched columns, folded as the triggers fold them,
    written into the empty index in one statement."""
    columns = ", ".join(FIELDS)
    folded = ", ".join(f"{FOLD_FUNCTION}({name})" for name in FIELDS)
    _set_option(cursor, "hashsize", _BUILD_HASHSIZE)
    cursor.execute(
        f"INSERT INTO {TABLE} (rowid, {columns}) SELECT id, {folded} FROM {Message._meta.db_table}"
    )
    _set_option(cursor, "hashsize", _HASHSIZE)


def _set_option(cursor, name: str, value: int) -> None:
    """SQLite: one of FTS5's options of the index, kept in the index's own table."""
    cursor.execute(f"INSERT INTO {TABLE} ({TABLE}, rank) VALUES (%s, %s)", [name, value])
