from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from statecore.statefile import backup_state, export_bytes, write_atomically


class Command(BaseCommand):
    help = "Write the whole state as the canonical whatsapp_state.json (- for standard output)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="where to write, or - for standard output")
        parser.add_argument(
            "--backup",
            action="store_true",
            help="also write a timestamped copy in the backup folder",
        )

    def handle(self, *args, **options):
        target = options["file"]
        if not target and not options["backup"]:
            raise CommandError("name a file (or - for standard output), or use --backup")
        data = export_bytes()
        try:
            if target == "-":
                sys.stdout.buffer.write(data)  # nothing added: no trailing newline
                sys.stdout.buffer.flush()
            elif target:
                write_atomically(target, data)
                self.stderr.write(f"Exported to {target}")
            if options["backup"]:
                path = backup_state()
                self.stderr.write(f"Backup written to {path}")
        except OSError as exc:
            raise CommandError(f"export failed, the old file is left as it was: {exc}") from None
