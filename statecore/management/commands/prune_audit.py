from __future__ import annotations

import getpass
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from statecore import auditlog, clock
from statecore.models import Source


def _actor() -> str:
    try:
        return getpass.getuser() or "prune_audit"
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "prune_audit"


class Command(BaseCommand):
    help = (
        "Delete the audit events created before a date: the one exception to the "
        "append-only audit log. Writes an audit event of its own saying what it removed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--before",
            required=True,
            metavar="DATE",
            help="remove events created before this day (YYYY-MM-DD, local time) or moment "
            "(YYYY-MM-DDTHH:MM); not in the future",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="only say how many would be removed"
        )

    def handle(self, *args, **options):
        bound = self._bound(options["before"])
        try:
            pruned = auditlog.prune(
                bound, actor=_actor(), source=Source.COMMAND, dry_run=options["dry_run"]
            )
        except ValueError as exc:  # a moment in the future
            raise CommandError(f"--{exc}; only past events can be removed") from None
        when = clock.local_iso(bound)
        if options["dry_run"]:
            self.stdout.write(
                f"{pruned.removed:,} audit events created before {when} would be removed "
                "(dry run: nothing changed)."
            )
        else:
            self.stdout.write(f"Removed {pruned.removed:,} audit events created before {when}.")
        for action, count in pruned.by_action.items():
            self.stdout.write(f"  {action}: {count:,}")

    def _bound(self, text: str) -> datetime:
        """The start of the day (or the moment) given, in the local zone (TIME_ZONE)."""
        moment = clock.parse_local_moment(text)
        if moment is None:
            raise CommandError(
                f"--before: {text!r} is not a date; give YYYY-MM-DD (or YYYY-MM-DDTHH:MM)"
            )
        return moment
