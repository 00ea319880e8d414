"""How the reviewer pages say things, written once for the queue's cards, the history's
entries, the overview and the template filters: durations, phone numbers, who the
customer is, and folding long text."""

from __future__ import annotations

from typing import NamedTuple

from statecore.statefile.columns import chat_of

# A body longer than this (characters or lines) is shown folded, behind "Show more".
PREVIEW_CHARS = 400
PREVIEW_LINES = 6
NOBODY = "Unknown sender"


def age(seconds: float | None) -> str:
    """A short human duration: "3 s", "12 min", "2 h 5 min", "3 d 4 h"."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def phone(address: str) -> str:
    """923001234567@c.us -> +923001234567; anything else as it is."""
    number = chat_of(address or "")
    return f"+{number}" if number.isdigit() else number


def who(name: str, chat: str) -> str:
    """Who the customer is: their name, else their number, else that nobody knows."""
    return name or phone(chat) or NOBODY


def is_long(text: str) -> bool:
    text = text or ""
    return len(text) > PREVIEW_CHARS or text.count("\n") >= PREVIEW_LINES


def preview(text: str) -> str:
    """The beginning of a long text (the page shows the rest behind "Show more")."""
    text = text or ""
    lines = text.split("\n")
    if len(lines) > PREVIEW_LINES:
        text = "\n".join(lines[:PREVIEW_LINES])
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS].rstrip()
    return text + "…"


class Body(NamedTuple):
    """A message's text, and its beginning when it is long (then shown folded)."""

    text: str
    preview: str = ""

    @classmethod
    def of(cls, text: str) -> Body:
        return cls(text, preview(text) if is_long(text) else "")
