"""Time as the scripts write it: naive ISO-8601 in the local zone (TIME_ZONE)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo

from django.utils import timezone


def now() -> datetime:
    return timezone.now()


def local_iso(moment: datetime | None = None) -> str:
    """`datetime.now().isoformat()` as the scripts write it: naive local time."""
    moment = moment or now()
    return timezone.localtime(moment).replace(tzinfo=None).isoformat()


def parse_local_moment(text: str) -> datetime | None:
    """A day (its start) or a moment a person typed (YYYY-MM-DD, YYYY-MM-DDTHH:MM...),
    naive in the local zone (TIME_ZONE); None when it is not one the database can hold."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        moment.astimezone(UTC)  # near year 1 or 9999 the database cannot hold it
    except (ValueError, OverflowError):
        return None
    return moment


def parse_timestamp(value: object, tz: tzinfo | None = None) -> datetime | None:
    """An aware datetime from a stored timestamp (naive local ISO text or epoch
    seconds), or None when it is missing or not a time we can read. The stored
    value itself is never changed by this. `tz` (the current zone) spares the
    lookup when many timestamps are parsed at once."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz or timezone.get_current_timezone())
        if parsed.year in (1, 9999):
            # Near the ends of the calendar the same instant in UTC (as the
            # database stores it) can fall outside it: not a time we can store.
            try:
                parsed.astimezone(UTC)
            except OverflowError:
                return None
        return parsed
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None
