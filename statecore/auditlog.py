"""The audit log itself: recording a read of the whole state, and pruning.

The log is append-only (AuditEvent.save and .delete refuse): `prune` is the one
deliberate exception, reached only through `manage.py prune_audit`, never the
admin, and it leaves a row of its own saying what it removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import Count

from . import clock
from .models import AuditEvent

MAX_ACTOR_LENGTH = AuditEvent._meta.get_field("actor").max_length


def record_download(size: int, *, actor: str, source: str) -> AuditEvent:
    """One row for a download of the whole state: who, when, how many bytes (never
    what they held: every customer's number and message)."""
    return AuditEvent.objects.create(
        action="state_download",
        actor=actor[:MAX_ACTOR_LENGTH],
        source=source,
        note=f"whole state downloaded, {size:,} bytes",
        detail={"bytes": size},
        created_at=clock.now(),
    )


@dataclass
class Pruned:
    removed: int
    by_action: dict[str, int] = field(default_factory=dict)


def prune(before: datetime, *, actor: str, source: str, dry_run: bool = False) -> Pruned:
    """Delete every audit event created before `before` (an aware moment in the
    past), in one transaction with the row that records it. `dry_run`: count only."""
    if before > clock.now():
        raise ValueError(f"before: {clock.local_iso(before)} is in the future")
    with transaction.atomic():
        old = AuditEvent.objects.filter(created_at__lt=before)
        by_action = {
            row["action"]: row["n"]
            for row in old.order_by("action").values("action").annotate(n=Count("pk"))
        }
        if dry_run:
            return Pruned(sum(by_action.values()), by_action)
        # A queryset delete: AuditEvent.delete(), which refuses, is never called.
        removed, _ = old.delete()
        AuditEvent.objects.create(
            action="prune_audit",
            actor=actor[:MAX_ACTOR_LENGTH],
            source=source,
            note=f"removed {removed:,} audit events created before {clock.local_iso(before)}",
            detail={"removed": removed, "before": clock.local_iso(before), "by_action": by_action},
            created_at=clock.now(),
        )
    return Pruned(removed, by_action)
