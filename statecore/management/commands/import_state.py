from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from statecore.models import Source
from statecore.statefile import DUPLICATE_RULES, StateFileError, import_path


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
        name = options["file"]
        if name == "-":
            # Read twice (checked, then inserted): standard input is kept in a
            # private temporary file first, removed on the way out.
            with tempfile.NamedTemporaryFile(prefix="import_state-", suffix=".json") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
                spool.flush()
                summary = self._import(spool.name, name, options)
        else:
            self._check_readable(name)
            summary = self._import(name, name, options)
        if self.stdout.isatty():
            self.stdout.write("")
        after = ", ".join(f"{list_name} {n}" for list_name, n in summary.after.items())
        self.stdout.write(self.style.SUCCESS(f"Imported {name}: {after}."))
        if summary.dropped_duplicates and options["duplicates"] != "refuse":
            self.stdout.write(
                f"Kept one copy ({options['duplicates']}) of: {', '.join(summary.dropped_duplicates)}"
            )

    def _import(self, path: str, name: str, options: dict):
        try:
            return import_path(
                path,
                actor=options["actor"],
                source=Source.COMMAND,
                on_duplicate=options["duplicates"],
                progress=self._progress if self.stdout.isatty() else None,
            )
        except StateFileError as exc:
            raise CommandError(f"{name} refused, nothing changed:\n{exc}") from None
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from None

    def _check_readable(self, name: str) -> None:
        try:
            with Path(name).open("rb"):
                pass
        except OSError as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror}") from None

    def _progress(self, done: int, total: int) -> None:
        self.stdout.write(f"\r  {done:,} / {total:,} messages", ending="")
        self.stdout.flush()
