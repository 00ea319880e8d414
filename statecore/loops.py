"""The one loop runner every `--loop` uses (the sender, the receiving loop).

A long-running loop never dies of one failed round: whatever a round throws
(a dropped or refused database connection included) is logged, the
connections are closed so the next round opens fresh ones, and the loop waits
and carries on. Reading the interval is part of the round's risk, not outside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connections

from . import rootstate

log = logging.getLogger(__name__)

FALLBACK_INTERVAL_SECONDS = 5.0


def run_loop(
    one_round: Callable[[], object],
    *,
    interval: Callable[[], float],
    stop: threading.Event,
    name: str,
) -> int:
    """Run `one_round` every `interval()` seconds until `stop` is set; returns the rounds that failed."""
    failures = 0
    while not stop.is_set():
        # As Django does between requests: a connection that failed or grew old is replaced.
        close_old_connections()
        try:
            one_round()
        except Exception:
            failures += 1
            log.exception("%s: this round failed; trying again next round", name)
            _drop_connections()
        try:
            wait = interval()
        except Exception:
            log.exception(
                "%s: could not read the poll interval; waiting %g s",
                name,
                FALLBACK_INTERVAL_SECONDS,
            )
            _drop_connections()
            wait = FALLBACK_INTERVAL_SECONDS
        stop.wait(wait)
    return failures


def poll_interval() -> float:
    """`watcher_config.poll_interval_seconds`, or 5 s when it is not a positive number."""
    value = rootstate.watcher_config().get("poll_interval_seconds")
    return float(value) if type(value) in (int, float) and value > 0 else FALLBACK_INTERVAL_SECONDS


def _drop_connections() -> None:
    # A connection that died mid-round must not be reused: the next round opens a new one.
    try:
        connections.close_all()
    except Exception:
        log.exception("closing the database connections failed")
