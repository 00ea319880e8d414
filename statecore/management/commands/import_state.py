from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from statecore.models import Source
from statecore.statefile import DUPLICATE_RULES, StateFileError, import_bytes


class Command(BaseCommand):
    help = "Replace the whole state with a whatsapp_state.json file (- reads standard input)."

    def add_arguments(self, parser):
        parser.add_argument("file", help="the state file, or - for standard input")
        parser.add_argument(
            "--duplicates",
            choices=DUPLICATE_RULES,
            default="refuse",
            help="what to do with an id found in two places (default: refuse the file)",
        )
        parser.add_argument("--actor", default="import_state", help="who is named in the audit log")

    def handle(self, *args, **options):
        data = self._read(options["file"])
        try:
            summary = import_bytes(
                data,
                actor=options["actor"],
                source=Source.COMMAND,
                on_duplicate=options["duplicates"],
                progress=self._progress if self.stdout.isatty() else None,
            )
        except StateFileError as exc:
            raise CommandError(f"{options['file']} refused, nothing changed:\n{exc}") from None
        if self.stdout.isatty():
            self.stdout.write("")
        after = ", ".join(f"{name} {n}" for name, n in summary.after.items())
        self.stdout.write(self.style.SUCCESS(f"Imported {options['file']}: {after}."))
        if summary.dropped_duplicates and options["duplicates"] != "refuse":
            self.stdout.write(
                f"Kept one copy ({options['duplicates']}) of: {', '.join(summary.dropped_duplicates)}"
            )

    def _read(self, name: str) -> bytes:
        if name == "-":
            return sys.stdin.buffer.read()
        try:
            return Path(name).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from None

    def _progress(self, done: int, total: int) -> None:
        self.stdout.write(f"\r  {done:,} / {total:,} messages", ending="")
        self.stdout.flush()
