"""Plain factory functions for tests: each goes through the lifecycle, as real callers do."""

from __future__ import annotations

import itertools

from statecore import clock, lifecycle
from statecore.models import Message, Source, Status

_numbers = itertools.count(1)


def make_incoming(
    *, number: str | None = None, name: str = "Customer", body: str = "Hello", **extra
) -> Message:
    n = next(_numbers)
    number = number or f"92300{n:07d}"
    data = {
        "id": f"false_{number}@c.us_3EB0{n:010X}",
        "from": f"{number}@c.us",
        "fromName": name,
        "body": body,
        "timestamp": clock.local_iso(),
        "isGroup": False,
        **extra,
    }
    return lifecycle.add_message(data, Status.INCOMING, actor="factory", source=Source.API)


def make_reply(
    status: str = Status.PENDING_APPROVAL,
    *,
    incoming: Message | None = None,
    body: str = "Thanks, we will reply soon.",
    **extra,
) -> Message:
    """A drafted reply (and the incoming message it answers), put in `status` directly."""
    incoming = incoming or make_incoming()
    data = {
        "id": f"reply_{incoming.message_id}",
        "recipient": incoming.chat,
        "body": body,
        "original_message_id": incoming.message_id,
        "timestamp": clock.local_iso(),
        **extra,
    }
    return lifecycle.add_message(data, status, actor="factory", source=Source.API)


def make_message(status: str = Status.PENDING_APPROVAL, **overrides) -> Message:
    return make_reply(status, **overrides)
