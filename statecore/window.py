"""The Cloud API's 24-hour reply window and its text limit: the one definition of each.

A free-form reply may go only within `reply_window` (24 hours) of the customer's
last message in the chat; our own replies and a person's answers from the phone
do not extend it (GATEWAY.md §4). A chat with no customer message stored in the
window is closed: Cloud would refuse the reply with 131047. One send carries at
most `max_text_length` characters (4,096). Both come from the gateway's traits:
for a kind without them (wwebjs, WAHA, Evolution) nothing here refuses anything
and no query is made.

Who asks: the lifecycle (approve, edit_and_approve and retry refuse on a closed
window, through `open_guard` inside their compare-and-set), the sender
(`refusal_for`, just before a send), the queue's cards (`closes_at_for`, one
query a page) and the overview (`lost_to_window`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Exists, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Length

from . import whatsapp
from .lifecycle import MoveRefused, Refusal
from .models import Message, Status
from .whatsapp import cloud

# The one sentence for a reply lost to the window, whichever way it was found (refused
# here, a 131047 answer, a failed status webhook): the Cloud adapter's own.
WINDOW_CLOSED_TEXT = cloud.WINDOW_CLOSED_TEXT
# A person's answer from the phone is stored with this key in its object, and no sender.
FROM_PHONE_KEY = '"from_phone":true'


class TextTooLong(MoveRefused):
    """A reply longer than the gateway sends (Cloud: 4,096 characters). A MoveRefused, so
    every caller that reports refusals reports this one (code Refusal.TOO_LONG)."""

    def __init__(self, message_id: str, *, length: int, limit: int, actual: str) -> None:
        self.length, self.limit = length, limit
        super().__init__(
            message_id,
            actual=actual,
            wanted=Status.APPROVED,
            reason=too_long_text(length, limit),
            code=Refusal.TOO_LONG,
        )


def reply_window() -> timedelta | None:
    return whatsapp.traits().reply_window


def applies() -> bool:
    """True when the configured gateway has a reply window (Cloud)."""
    return reply_window() is not None


def text_limit() -> int | None:
    """The most characters one send may carry, None when the gateway sets no limit."""
    return whatsapp.traits().max_text_length


def too_long_text(length: int, limit: int) -> str:
    return (
        f"the reply is {length:,} characters and the WhatsApp Cloud API sends at most "
        f"{limit:,}: edit it shorter"
    )


def too_long(text: str) -> str:
    """Why `text` cannot go through the configured gateway ("" when it can)."""
    limit = text_limit()
    return too_long_text(len(text), limit) if limit is not None and len(text) > limit else ""


def customer_messages() -> QuerySet[Message]:
    """Messages a customer wrote: with a sender, and not a reply. A person's answer from
    the phone has no sender (it is stored with the customer as its recipient), so it is
    not one, nor is anything else stored without a sender.

    "Not a reply" through an expression on purpose (as queue.related_messages does):
    SQLite, without statistics, would otherwise walk the index on `reply_to` through
    every incoming message instead of reading a chat's rows off (chat, timestamp)."""
    return (
        Message.objects.alias(reply_to_length=Length("reply_to"))
        .filter(reply_to_length=0, timestamp__isnull=False)
        .exclude(sender="")
    )


def last_customer_message_at(chat: str) -> datetime | None:
    """When the customer last wrote in this chat (digits), None when nothing is stored."""
    if not chat:
        return None
    return (
        customer_messages()
        .filter(chat=chat)
        .order_by("-timestamp")
        .values_list("timestamp", flat=True)
        .first()
    )


def closes_at(chat: str) -> datetime | None:
    """When the chat's window closes (closed already if in the past); None when the
    window does not apply or the customer never wrote (then it is closed)."""
    window = reply_window()
    if window is None:
        return None
    last = last_customer_message_at(chat)
    return last + window if last else None


def is_closed(chat: str, now: datetime) -> bool:
    """True when the window applies and no customer message of the chat keeps it open."""
    if not applies():
        return False
    closes = closes_at(chat)
    return closes is None or now >= closes


def closes_at_for(chats: Iterable[str]) -> dict[str, datetime]:
    """`closes_at` for many chats in one query (a queue page): a chat the customer never
    wrote in is left out. Empty, without a query, when the window does not apply."""
    window = reply_window()
    chats = {chat for chat in chats if chat}
    if window is None or not chats:
        return {}
    rows = (
        customer_messages()
        .filter(chat__in=chats)
        .order_by()
        .values("chat")
        .annotate(last=Max("timestamp"))
        .values_list("chat", "last")
    )
    return {chat: last + window for chat, last in rows}


def chat_of_reply(msg: Message) -> str:
    """The chat a reply goes to: its own, else that of the message it answers."""
    if msg.chat or not msg.reply_to:
        return msg.chat
    answered = Message.objects.filter(message_id=msg.reply_to).values_list("chat", flat=True)
    return answered.first() or ""


def open_guard(now: datetime) -> Q | None:
    """A condition on a reply's row, true while its chat's window is open at `now` (None
    when the window does not apply): the lifecycle adds it to its compare-and-set, so the
    check and the move are one statement and no window closes between them."""
    window = reply_window()
    if window is None:
        return None
    recent = customer_messages().filter(timestamp__gt=now - window)
    answered_chat = Message.objects.filter(message_id=OuterRef(OuterRef("reply_to"))).values(
        "chat"
    )[:1]
    own_chat = Exists(recent.filter(chat=OuterRef("chat")))
    their_chat = Exists(recent.filter(chat=Subquery(answered_chat)))
    return (~Q(chat="") & own_chat) | (Q(chat="") & their_chat)


def refusal_for(msg: Message, now: datetime) -> str:
    """Why the gateway would refuse this reply now ("" when it may go): the window closed,
    or the text is too long. For the sender, just before a send: a reply approved before
    its window closed must not go out as if it could (it would fail with 131047)."""
    if not applies() and text_limit() is None:
        return ""
    if applies() and is_closed(chat_of_reply(msg), now):
        return WINDOW_CLOSED_TEXT
    return too_long(msg.body)


def lost_to_window() -> QuerySet[Message]:
    """Failed replies whose error is the closed window (however it was found: refused
    before the send, a 131047 answer, or a failed status webhook)."""
    # The sentence is in the stored `error` however it was worded around it ("not sent:
    # ...", "delivery failed after sending: ...").
    return Message.objects.filter(status=Status.FAILED, raw__contains=WINDOW_CLOSED_TEXT)
