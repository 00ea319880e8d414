"""Filters for the reviewer pages: durations, numbers, and folding long text.

Each returns plain text; templates escape it like any other value."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from .. import present

register = template.Library()

JUST_NOW_SECONDS = 5


@register.filter
def age(seconds) -> str:
    """12 min"""
    return present.age(seconds)


@register.filter
def ago(moment: datetime | None) -> str:
    """3 s ago"""
    if not moment:
        return ""
    seconds = (timezone.now() - moment).total_seconds()
    return "just now" if seconds < JUST_NOW_SECONDS else f"{present.age(seconds)} ago"


@register.filter
def phone(address: str) -> str:
    """923001234567@c.us -> +923001234567; anything else as it is."""
    return present.phone(address)


@register.filter
def is_long(text: str) -> bool:
    return present.is_long(text)


@register.filter
def preview(text: str) -> str:
    """The beginning of a long text (the card shows the rest behind "Show more")."""
    return present.preview(text)
