from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from django.core.management.base import BaseCommand, CommandError

from statecore import clock, learning
from statecore.statefile import write_atomically


def json_line(correction: dict) -> str:
    """One line of JSON Lines, UTF-8 as it is. U+2028 and U+2029 are escaped: JSON allows
    them in a string, but some readers split lines on them."""
    text = json.dumps(correction, ensure_ascii=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"


class Command(BaseCommand):
    help = (
        "Write the reviewers' decisions on the assistant's drafts as JSON Lines, newest "
        "first, one per decided draft: the customer's message and the turns before it, "
        "the draft, the text approved or the rejection and its reason, who and when."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "file", nargs="?", default="-", help="where to write; - or nothing: standard output"
        )
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="only drafts decided at or after this day (YYYY-MM-DD, local time) or "
            "moment (YYYY-MM-DDTHH:MM)",
        )
        parser.add_argument(
            "--turns",
            type=int,
            default=learning.DEFAULT_TURNS,
            metavar="N",
            help=f"earlier messages of the chat given with each (0 to {learning.MAX_TURNS}; "
            f"default {learning.DEFAULT_TURNS})",
        )

    def handle(self, *args, **options):
        since, turns = self._since(options["since"]), options["turns"]
        if not 0 <= turns <= learning.MAX_TURNS:
            raise CommandError(f"--turns: give 0 to {learning.MAX_TURNS}, got {turns}")
        corrections = learning.corrections(since=since, turns=turns)
        target = options["file"]
        if target == "-":
            for correction in corrections:
                self.stdout.write(json_line(correction), ending="")
            return
        counted = _Counted(corrections)
        try:
            write_atomically(target, counted.lines())
        except OSError as exc:
            raise CommandError(f"export failed, nothing written to {target}: {exc}") from None
        self.stderr.write(f"{counted.n:,} corrections written to {target}")

    def _since(self, text: str | None):
        if text is None:
            return None
        moment = clock.parse_local_moment(text)
        if moment is None:
            raise CommandError(
                f"--since: {text!r} is not a date; give YYYY-MM-DD (or YYYY-MM-DDTHH:MM)"
            )
        return moment


class _Counted:
    """The encoded lines of a stream of corrections, counted as they are written."""

    def __init__(self, corrections: Iterable[dict]) -> None:
        self.corrections = corrections
        self.n = 0

    def lines(self) -> Iterator[bytes]:
        for correction in self.corrections:
            self.n += 1
            yield json_line(correction).encode()
