"""Error mail: off unless ERROR_MAIL=1, and then one mail per distinct error an hour.

Every error is on stderr anyway (settings.LOGGING); the mail only says that one happened.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback

from django.conf import settings

WINDOW_SECONDS = 3600

# In this process's memory, not Django's cache: the filter runs while an error is being
# handled, perhaps because the database or the cache is what failed, and a dict cannot
# fail. The price: each web process mails a given error once an hour.
_sent: dict[tuple, float] = {}
_lock = threading.Lock()


def error_key(record: logging.LogRecord) -> tuple:
    """The exception's type and where it was raised (the innermost frame), else where it
    was logged: the same fault on any request or with any message is one error."""
    if record.exc_info and record.exc_info[0] is not None:
        exc_type, _, tb = record.exc_info
        frames = traceback.extract_tb(tb)
        where = (frames[-1].filename, frames[-1].lineno) if frames else (None, None)
        return (f"{exc_type.__module__}.{exc_type.__qualname__}", *where)
    return (record.name, record.pathname, record.lineno)


def forget() -> None:
    """Forget what was mailed (tests)."""
    with _lock:
        _sent.clear()


class OncePerError(logging.Filter):
    """Lets a record through to the mail handler only with ERROR_MAIL on, and only the
    first of each error (error_key) in WINDOW_SECONDS."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not settings.ERROR_MAIL:
            return False
        key, now = error_key(record), time.monotonic()
        with _lock:
            for old in [k for k, at in _sent.items() if now - at >= WINDOW_SECONDS]:
                del _sent[old]
            if key in _sent:
                return False
            _sent[key] = now
        return True
