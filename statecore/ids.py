"""A database id from text a stranger typed (a form, a query string)."""

from __future__ import annotations

from .statefile.rules import INT64_MAX

_ID_DIGITS = len(str(INT64_MAX))


def db_id(text: str) -> int | None:
    """The database id written in `text` (1 to 2^63-1, ASCII digits only), or None.

    `str.isdigit()` also says yes to "²" (which `int()` refuses) and to "١٢" (which it
    reads), and neither SQLite nor PostgreSQL holds an integer past 64 bits."""
    if not (0 < len(text) <= _ID_DIGITS and text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= INT64_MAX else None
