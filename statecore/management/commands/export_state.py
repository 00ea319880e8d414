from __future__ import annotations

import argparse
import re
import sys

from django.core.management.base import BaseCommand, CommandError

from statecore.statefile import backup_state, export_bytes, write_atomically


def file_mode(text: str) -> int:
    """`640`, `0640` or `0o640`: permission bits only (no setuid, setgid or sticky)."""
    match = re.fullmatch(r"(?:0o?)?([0-7]{3})", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a file mode: give three octal digits such as 600 or 640"
        )
    return int(match[1], 8)


class Command(BaseCommand):
    help = "Write the whole state as the canonical whatsapp_state.json (- for standard output)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="where to write, or - for standard output")
        parser.add_argument(
            "--backup",
            action="store_true",
            help="also write a timestamped copy in the backup folder",
        )
        parser.add_argument(
            "--mode",
            type=file_mode,
            help="the permissions of the files written, in octal (e.g. 640 to let the file's "
            "group read it); without it a new file is 0600 and a replaced file keeps its mode",
        )

    def handle(self, *args, **options):
        target, mode = options["file"], options["mode"]
        if not target and not options["backup"]:
            raise CommandError("name a file (or - for standard output), or use --backup")
        if mode is not None and target == "-" and not options["backup"]:
            raise CommandError("--mode applies to files, not to standard output")
        data = export_bytes()
        try:
            if target == "-":
                sys.stdout.buffer.write(data)  # nothing added: no trailing newline
                sys.stdout.buffer.flush()
            elif target:
                write_atomically(target, data, mode=mode)
                self.stderr.write(f"Exported to {target}")
            if options["backup"]:
                path = backup_state(mode=mode)
                self.stderr.write(f"Backup written to {path}")
        except OSError as exc:
            raise CommandError(f"export failed, the old file is left as it was: {exc}") from None
