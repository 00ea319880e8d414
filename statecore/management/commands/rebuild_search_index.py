from __future__ import annotations

from django.core.management.base import BaseCommand

from statecore import search


class Command(BaseCommand):
    help = (
        "Build the text search's index again from the messages (after restoring a backup "
        "made without it, or writes made where search_fold() was missing)."
    )

    def handle(self, *args, **options):
        count = search.rebuild()
        self.stdout.write(f"Search index rebuilt: {count} messages.")
