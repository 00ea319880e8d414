"""From a message object (a dict as in the file) to the columns pages filter on."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import tzinfo

from .clock import parse_timestamp

# One encoder for every call: json.dumps with options builds a new one each time,
# a cost that shows on 100,000 messages.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps_compact(value: object) -> str:
    """JSON text as stored: compact, key order kept, non-ASCII as is."""
    return _COMPACT.encode(value)


def _text(value: object, limit: int = 200) -> str:
    return value[:limit] if isinstance(value, str) else ""


def chat_of(address: str) -> str:
    """The chat a number or WhatsApp address belongs to: `9230...@c.us` -> `9230...`."""
    return address.split("@", 1)[0]


# The columns message_values fills, in its order.
COLUMN_NAMES = (
    "message_id",
    "status",
    "sender",
    "sender_name",
    "author",
    "recipient",
    "chat",
    "body",
    "is_group",
    "reply_to",
    "timestamp",
    "status_updated_at",
    "raw",
)


def message_values(
    obj: dict, status: str, *, tz: tzinfo | None = None, to_time: Callable = parse_timestamp
) -> tuple:
    """The indexed columns of a Message for this object, in COLUMN_NAMES order.

    A tuple, not a dict: an import builds 100,000 of them. `to_time(value, tz)`
    turns a stored timestamp into the column's value (an import passes one that
    gives what the database stores directly)."""
    get = obj.get
    sender = _text(get("from"))
    recipient = _text(get("recipient"))
    body = get("body")
    return (
        obj["id"],
        status,
        sender,
        _text(get("fromName")),
        _text(get("author")),
        recipient,
        chat_of(sender or recipient),
        body if isinstance(body, str) else "",
        get("isGroup") is True or sender.endswith("@g.us"),
        _text(get("original_message_id"), 500),
        to_time(get("timestamp"), tz),
        to_time(get("status_updated_at"), tz),
        _COMPACT.encode(obj),
    )


def message_columns(obj: dict, status: str, *, tz: tzinfo | None = None) -> dict:
    """The indexed columns of a Message for this object (everything but position)."""
    return dict(zip(COLUMN_NAMES, message_values(obj, status, tz=tz), strict=True))


def reply_address(recipient: str, original_sender: str = "") -> str:
    """Where a reply goes: its recipient, or the address of the message it answers
    when the recipient is that chat's bare digits (the old assistant cut the `@...`
    part off, and with it whether the chat is a group or a hidden number)."""
    if "@" not in recipient and original_sender and chat_of(original_sender) == recipient:
        return original_sender
    return recipient
