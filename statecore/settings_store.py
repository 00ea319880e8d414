"""The settings and the counters: what a person or a script changes in the one StateRoot
row besides the session, each change audited here, whoever asks (the admin, the
Python API).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from . import clock, rootstate
from .lifecycle import Conflict
from .models import AuditEvent, StateRoot
from .statefile.columns import dumps_compact

SET_CONFIG = "set_config"
RESET_COUNTERS = "reset_statistics"


def update_settings(
    changes: Mapping[str, object],
    *,
    actor: str,
    source: str,
    seen: Mapping[str, object] | None = None,
) -> None:
    """Set top-level keys, all or none, one audit row each with before and after.

    `seen`: what the caller's page showed for each key; a key whose stored value is no
    longer that raises Conflict (someone changed it meanwhile) and nothing is saved.
    A value an import would refuse raises ValueError (rootstate keeps the file importable)."""
    with transaction.atomic():
        for key, value in changes.items():
            if key in rootstate.COLUMN_KEYS:
                rootstate.update_part(
                    key, _replace(key, value, seen), actor=actor, source=source, action=SET_CONFIG
                )
            else:
                if seen is not None:
                    raise ValueError(f"{key}: the `seen` check covers the settings only")
                rootstate.update_extra(key, value, actor=actor, source=source, action=SET_CONFIG)


def _replace(key: str, value: object, seen: Mapping[str, object] | None):
    def change(old: object) -> object:
        if seen is not None and old != seen[key]:
            raise Conflict(
                f"{key} was changed since you opened this page; nothing saved. "
                "It is shown as it is now."
            )
        return value

    return change


def reset_counters(*, actor: str, source: str) -> None:
    """Every counter to 0 and the last-message times to null, audited with the
    statistics as they were."""
    with transaction.atomic():
        rootstate.get_root()
        # Under the row lock: a move counting meanwhile is in `before` or after the reset.
        root = StateRoot.objects.select_for_update().get(pk=1)
        before = rootstate.statistics(root)
        StateRoot.objects.filter(pk=1).update(
            **{name: 0 for name in rootstate.COUNTERS},
            **{name: "null" for name in rootstate.LAST_TIMES},
            last_updated=dumps_compact(clock.local_iso()),
        )
        AuditEvent.objects.create(
            action=RESET_COUNTERS,
            actor=actor,
            source=source,
            note="all counters 0",
            detail={"before": before},
            created_at=clock.now(),
        )
