"""Filters for the reviewer pages: durations, numbers, and folding long text.

Each returns plain text; templates escape it like any other value."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from statecore.messagedata import chat_of

from ..queue import age as _age

register = template.Library()

PREVIEW_CHARS = 400
PREVIEW_LINES = 6
JUST_NOW_SECONDS = 5


@register.filter
def age(seconds) -> str:
    """12 min"""
    return _age(seconds)


@register.filter
def ago(moment: datetime | None) -> str:
    """3 s ago"""
    if not moment:
        return ""
    seconds = (timezone.now() - moment).total_seconds()
    return "just now" if seconds < JUST_NOW_SECONDS else f"{_age(seconds)} ago"


@register.filter
def phone(address: str) -> str:
    """923001234567@c.us -> +923001234567; anything else as it is."""
    number = chat_of(address or "")
    return f"+{number}" if number.isdigit() else number


@register.filter
def is_long(text: str) -> bool:
    text = text or ""
    return len(text) > PREVIEW_CHARS or text.count("\n") >= PREVIEW_LINES


@register.filter
def preview(text: str) -> str:
    """The beginning of a long text (the card shows the rest behind "Show more")."""
    text = text or ""
    lines = text.split("\n")
    if len(lines) > PREVIEW_LINES:
        text = "\n".join(lines[:PREVIEW_LINES])
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS].rstrip()
    return text + "…"
