"""A STAND-IN assistant for `make run`: a canned draft, labelled, so a new user sees one appear.

Not an assistant: it answers every customer's text with the same sentence
(and nothing for a message without text). Set `ASSISTANT` to your own
`draft_reply` (README: "Drafting: bring your own assistant") to replace it.
"""

from __future__ import annotations

REPLY = "STAND-IN assistant: thanks for your message, we will get back to you soon."


def draft_reply(message: dict) -> str | None:
    """The canned reply, or None when the message has no text."""
    body = message.get("body")
    if not isinstance(body, str) or not body.strip():
        return None
    return REPLY
