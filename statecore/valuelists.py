"""A list of values handed to a query as one parameter, where an IN list would take one
parameter per value: a search's hits or a reviewer's replies may be tens of thousands,
more than a query may have parameters (SQLite's limit is 32,766), and a list the
database reads from its parameter is one whose length the planner knows."""

from __future__ import annotations

import json
from collections.abc import Sequence

from django.db import connection
from django.db.models.expressions import RawSQL


def listed(values: Sequence[int] | Sequence[str], sql_type: str) -> RawSQL:
    """A subquery that lists `values` (`sql_type`: PostgreSQL's type of one, `bigint`
    or `text`), for `field__in=`."""
    if connection.vendor == "sqlite":
        return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(list(values))])
    return RawSQL(f"SELECT unnest(%s::{sql_type}[])", [list(values)])
