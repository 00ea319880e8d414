"""The Message table's columns, declared once: those that follow from a message
object as the file holds it, and those an import sets the same for every message.

An import's INSERT names its columns by the keys of `import_row` and takes each
row's values from the same dict, so a column added here is written by the
import, in its place, with nothing else to change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import tzinfo

from ..clock import parse_timestamp

# One encoder for every call: json.dumps with options builds a new one each time,
# a cost that shows on 100,000 messages.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# The columns only the database keeps, as an import writes them: a message just
# read from a file is held by no sender and was moved by nobody here.
DATABASE_ONLY = {
    "status_changed_by": "",
    "claimed_by": "",
    "claimed_at": None,
    "lease_until": None,
}


def dumps_compact(value: object) -> str:
    """JSON text as stored: compact, key order kept, non-ASCII as is."""
    return _COMPACT.encode(value)


def _text(value: object, limit: int = 200) -> str:
    return value[:limit] if isinstance(value, str) else ""


def chat_of(address: str) -> str:
    """The chat a number or WhatsApp address belongs to: `9230...@c.us` -> `9230...`."""
    return address.split("@", 1)[0]


def message_columns(
    obj: dict, status: str, *, tz: tzinfo | None = None, to_time: Callable = parse_timestamp
) -> dict:
    """The columns that follow from a message object in the `status` list, by name:
    the one place each is derived, for an import, a move and an edit alike.

    `to_time(value, tz)` turns a stored timestamp into the column's value (an
    import passes one that gives what the database stores directly)."""
    get = obj.get
    sender = _text(get("from"))
    recipient = _text(get("recipient"))
    body = get("body")
    return {
        "message_id": obj["id"],
        "status": status,
        "sender": sender,
        "sender_name": _text(get("fromName")),
        "author": _text(get("author")),
        "recipient": recipient,
        "chat": chat_of(sender or recipient),
        "body": body if isinstance(body, str) else "",
        "is_group": get("isGroup") is True or sender.endswith("@g.us"),
        "reply_to": _text(get("original_message_id"), 500),
        "timestamp": to_time(get("timestamp"), tz),
        "status_updated_at": to_time(get("status_updated_at"), tz),
        "raw": _COMPACT.encode(obj),
    }


def import_row(obj: dict, status: str, position: int, *, tz: tzinfo, to_time: Callable) -> dict:
    """Every column an import writes for one message, by name: the derived ones,
    its place in its list (the export's order), and DATABASE_ONLY."""
    return {
        **message_columns(obj, status, tz=tz, to_time=to_time),
        "position": position,
        **DATABASE_ONLY,
    }


def reply_address(recipient: str, original_sender: str = "") -> str:
    """Where a reply goes: its recipient, or the address of the message it answers
    when the recipient is that chat's bare digits (the old assistant cut the `@...`
    part off, and with it whether the chat is a group or a hidden number)."""
    if "@" not in recipient and original_sender and chat_of(original_sender) == recipient:
        return original_sender
    return recipient
