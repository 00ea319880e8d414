from __future__ import annotations

from django.core.management.base import BaseCommand

from statecore import status_counts


class Command(BaseCommand):
    help = (
        "Recount the messages of each status into the count table the queue's header and "
        "the overview read, and install its triggers again (after restoring a database "
        "without them, or a migration that rebuilt the message table on SQLite)."
    )

    def handle(self, *args, **options):
        before, after = status_counts.recount()
        for status, n in after.items():
            self.stdout.write(self._line(status, before[status], n))
        fixed = sum(before[status] != n for status, n in after.items())
        self.stdout.write(
            f"{fixed} count(s) corrected." if fixed else "The counts were right already."
        )

    @staticmethod
    def _line(status: str, was: int, now: int) -> str:
        if was == now:
            return f"{status}: {now:,}"
        return f"{status}: {now:,} (was {was:,})"
