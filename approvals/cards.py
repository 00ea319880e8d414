"""What a queue card shows, worked out in Python once per card.

A page holds 50 cards, and in a template every variable lookup, filter, `{% url %}`
and `|date` is paid per card: they were most of the page's time. So a card hands
its template plain text (numbers too: a template localizes each number it shows),
and what every card of a page shares (the action URLs, the time zone, the month
names) is worked out once per page, in `CardPage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from functools import cached_property
from typing import NamedTuple

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.dates import MONTHS_3

from statecore import chat_modes, whatsapp, window
from statecore.lifecycle import MAX_REPLY_LENGTH
from statecore.models import Message, Status
from statecore.statefile.columns import reply_address

from .present import Body, age, phone, who

# A stale card shows the last few newer messages; the rest are counted.
NEWER_SHOWN = 3
DECIDED = (Status.APPROVED, Status.REJECTED)
# The stored `type` of a media message (whatsapp-web.js's, which every adapter keeps), in words.
MEDIA_WORDS = {
    "ptt": "voice note",
    "audio": "audio recording",
    "image": "image",
    "video": "video",
    "document": "document",
    "sticker": "sticker",
    "location": "location",
    "vcard": "contact card",
}
# Under this long left of the 24-hour reply window (Cloud) the card says it in orange.
WINDOW_SHORT = timedelta(hours=2)


def mode_badge(mode: str) -> str:
    """What a card or a history entry says of its chat's mode: the mode when it is not
    the default ("auto", "off"), else ""."""
    return mode if mode and mode != chat_modes.DEFAULT else ""


class Moment(NamedTuple):
    """A time as a card shows it: ISO for `datetime=`, short for people ("Nov 3, 14:05")."""

    iso: str = ""
    short: str = ""


class Said(NamedTuple):
    """A newer message of the chat, as a stale card lists it."""

    when: Moment
    body: str


class ThreadLine(NamedTuple):
    """One message of a chat's conversation, as a card or a history entry shows it."""

    when: Moment
    # Ours: a reply or an answer from the phone; else what the customer wrote.
    ours: bool
    who: str
    # A reply's status in words ("" for the customer's messages), and for its tag.
    state: str
    status: str
    body: str
    # The reply the card or entry is about.
    current: bool


# What became of one of our replies, as the conversation says it.
REPLY_STATES = {
    Status.PENDING_APPROVAL: "draft, waiting",
    Status.APPROVED: "approved, not sent yet",
    Status.SENT: "sent",
    Status.FAILED: "failed",
}
FROM_PHONE = "From the phone"


def is_from_phone(row: Message) -> bool:
    """A person's answer from the phone (stored `sent`, marked `from_phone`)."""
    # The text test first: only the rare row holding the key is parsed.
    return window.FROM_PHONE_KEY in row.raw and row.data.get("from_phone") is True


def thread_lines(messages: list[Message], *, current: int | None = None) -> list[ThreadLine]:
    """A chat's messages (`Message.objects.thread`) as the conversation shows them."""
    page = CardPage()
    return [_thread_line(m, page, current) for m in messages]


def _thread_line(m: Message, page: CardPage, current: int | None) -> ThreadLine:
    ours = not m.sender
    if not ours:
        who_ = m.sender_name or phone(m.author or m.sender)
        state = ""
    elif is_from_phone(m):
        who_, state = FROM_PHONE, ""
    else:
        who_, state = "Reply", REPLY_STATES.get(m.status, m.get_status_display().lower())
    return ThreadLine(
        page.moment(m.timestamp), ours, who_, state, m.status, m.body, m.pk == current
    )


def thread_name(lines: list[ThreadLine], chat: str) -> str:
    """Who the conversation is with: the customer's last known name, else the number."""
    names = [line.who for line in lines if not line.ours]
    return who(names[-1] if names else "", chat)


class CardPage:
    """What the cards of one page share, worked out once (and only when a card asks):
    each action's URL, reversed with a stand-in id that each card replaces by its own;
    the current time zone and the month names."""

    STAND_IN = "2147483647"

    def __init__(self, viewer: str = "") -> None:
        # Who is looking: only their own decision of a moment ago offers them an Undo.
        self.viewer = viewer
        self._urls: dict[str, str] = {}

    def url(self, name: str, pk: int) -> str:
        if name not in self._urls:
            self._urls[name] = reverse(f"approvals:{name}", args=[self.STAND_IN])
        return self._urls[name].replace(self.STAND_IN, str(pk))

    @cached_property
    def _zone(self) -> tzinfo:
        return timezone.get_current_timezone()

    @cached_property
    def _months(self) -> list[str]:
        return [""] + [str(MONTHS_3[month]).title() for month in range(1, 13)]

    def clock_time(self, when: datetime, now: datetime) -> str:
        """ "10:42" on the day of `now` (local), "Nov 3, 10:42" on another day."""
        local, today = when.astimezone(self._zone), now.astimezone(self._zone)
        if local.date() == today.date():
            return f"{local.hour:02}:{local.minute:02}"
        return self.moment(when).short

    def moment(self, when: datetime | None) -> Moment:
        """What `|date:"c"` and `|date:"M j, H:i"` show, without their per-call lookups
        (empty without a time)."""
        if when is None:
            return Moment()
        local = when.astimezone(self._zone)
        short = f"{self._months[local.month]} {local.day}, {local.hour:02}:{local.minute:02}"
        return Moment(local.isoformat(), short)


@dataclass
class Card:
    """One draft with what its card shows: the message it answers and newer ones.

    Its properties are the card's values as text, read once each by the template."""

    msg: Message
    now: datetime
    incoming: Message | None = None
    newer: list[Message] = field(default_factory=list)
    # A person's answers from the phone in this chat since the draft, oldest first.
    phone: list[Message] = field(default_factory=list)
    # The card's mode: "view", "edit", "reject", "confirm" (stale approve) or "notice".
    mode: str = "view"
    notice: str = ""
    page: CardPage = field(default_factory=CardPage)
    # The reply window (Cloud), set by queue.build_cards for a pending draft: whether it
    # applies, and when it closes (None: the customer wrote nothing we have: closed).
    window: bool = False
    closes: datetime | None = None
    # Why the gateway refused this approve just now (a refusal answered on the card).
    refused: str = ""
    # The chat's mode (chat_modes), set by queue.build_cards for a pending draft.
    chat_mode: str = ""

    def __getitem__(self, name: str):
        # A template looks `card.name` up as `card["name"]` first; answering it spares
        # the exception of a failed item lookup, thousands of times a page.
        return getattr(self, name)

    @property
    def pk(self) -> str:
        return str(self.msg.pk)

    @property
    def approve_url(self) -> str:
        return self.page.url("approve", self.msg.pk)

    @property
    def edit_url(self) -> str:
        return self.page.url("edit", self.msg.pk)

    @property
    def reject_url(self) -> str:
        return self.page.url("reject", self.msg.pk)

    @property
    def undo_url(self) -> str:
        return self.page.url("undo", self.msg.pk)

    @property
    def card_url(self) -> str:
        return self.page.url("card", self.msg.pk)

    @property
    def chat_mode_url(self) -> str:
        return self.page.url("chat-mode", self.msg.pk)

    @property
    def mode_badge(self) -> str:
        """The chat's mode when it is not the default ("auto", "off"), else ""."""
        return mode_badge(self.chat_mode)

    @property
    def thread_url(self) -> str:
        return self.page.url("thread", self.msg.pk)

    @property
    def pending(self) -> bool:
        return self.msg.status == Status.PENDING_APPROVAL

    @property
    def live(self) -> bool:
        """Still waiting for this reviewer: the page's script and the poll act on it."""
        return self.mode != "notice" and self.pending

    @property
    def css_class(self) -> str:
        classes = ["card", f"card-{self.mode}"]
        if self.mode != "notice" and not self.pending:
            classes.append("card-done")
        if self.pending and self.stale:
            classes.append("is-stale")
        if self.overdue:
            classes.append("is-overdue")
        return " ".join(classes)

    @property
    def stale(self) -> bool:
        """Something happened in the chat since the draft: approving asks to confirm."""
        return bool(self.newer or self.phone)

    @property
    def answered_from_phone(self) -> str:
        """When a person last answered this chat from the phone since the draft ("10:42"),
        "" when nobody did."""
        last = self.phone[-1] if self.phone else None
        return self.page.clock_time(last.timestamp, self.now) if last and last.timestamp else ""

    @property
    def phone_shown(self) -> list[Said]:
        return [Said(self.page.moment(m.timestamp), m.body) for m in self.phone[-NEWER_SHOWN:]]

    @property
    def newer_shown(self) -> list[Said]:
        return [Said(self.page.moment(m.timestamp), m.body) for m in self.newer[-NEWER_SHOWN:]]

    @property
    def newer_count(self) -> str:
        return str(len(self.newer))

    @property
    def newer_hidden(self) -> int:
        return max(0, len(self.newer) - NEWER_SHOWN)

    @property
    def newest_newer_pk(self) -> int:
        """The newest (last stored) message the stale mark shows, 0 without one."""
        return max((m.pk for m in [*self.newer, *self.phone]), default=0)

    @property
    def shown(self) -> str:
        """The poll's `shown` value: this card, and the newest newer message it shows."""
        return f"{self.msg.pk}-{self.newest_newer_pk}"

    @property
    def waited_seconds(self) -> int | None:
        if self.msg.timestamp is None:
            return None
        return max(0, int((self.now - self.msg.timestamp).total_seconds()))

    @property
    def waited_data(self) -> str:
        """`data-age` for the page's script ("" without a timestamp)."""
        seconds = self.waited_seconds
        return "" if seconds is None else str(seconds)

    @property
    def waited(self) -> str:
        return age(self.waited_seconds) or "—"

    @cached_property
    def drafted(self) -> Moment:
        return self.page.moment(self.msg.timestamp)

    @cached_property
    def received(self) -> Moment:
        return self.page.moment(self.incoming.timestamp if self.incoming else None)

    @property
    def drafted_iso(self) -> str:
        return self.drafted.iso

    @property
    def drafted_text(self) -> str:
        return self.drafted.short

    @property
    def received_iso(self) -> str:
        return self.received.iso

    @property
    def received_text(self) -> str:
        return self.received.short

    @cached_property
    def incoming_media(self) -> str:
        """What the customer sent besides text, in words ("voice note", "image"), "" for text.
        The stored object is read only when it says it has media (a substring test)."""
        if self.incoming is None or '"hasMedia":true' not in self.incoming.raw:
            return ""
        kind = self.incoming.data.get("type")
        return MEDIA_WORDS.get(kind, "file") if isinstance(kind, str) else "file"

    @property
    def incoming_body(self) -> Body | None:
        return Body.of(self.incoming.body) if self.incoming else None

    @property
    def draft_body(self) -> Body:
        return Body.of(self.msg.body)

    @property
    def window_state(self) -> str:
        """ "open", "short" (under WINDOW_SHORT left), "closed", or "" when no window
        applies (then the card says nothing of it)."""
        if not (self.window and self.pending):
            return ""
        left = self.window_left_seconds
        if left <= 0:
            return "closed"
        return "short" if left < WINDOW_SHORT.total_seconds() else "open"

    @property
    def window_left_seconds(self) -> int:
        return int((self.closes - self.now).total_seconds()) if self.closes else 0

    @property
    def window_left(self) -> str:
        return age(self.window_left_seconds)

    @property
    def customer_waited_seconds(self) -> int | None:
        """Since the customer's last message (the one the window counts from)."""
        if self.closes is None:
            return None
        wrote = self.closes - window.reply_window()
        return max(0, int((self.now - wrote).total_seconds()))

    @property
    def customer_waited(self) -> str:
        return age(self.customer_waited_seconds)

    @property
    def customer_waited_data(self) -> str:
        seconds = self.customer_waited_seconds
        return "" if seconds is None else str(seconds)

    @property
    def text_limit(self) -> int:
        """The edit box's maxlength: the gateway's limit (Cloud: 4,096), else ours."""
        return window.text_limit() or MAX_REPLY_LENGTH

    @property
    def text_limit_text(self) -> str:
        """The limit said in the edit box, "" when it is only our own."""
        limit = window.text_limit()
        return f"{limit:,}" if limit else ""

    @cached_property
    def cannot_approve(self) -> str:
        """Why the gateway would refuse this draft (Approve is disabled), "" when it can go."""
        if not self.pending:
            return ""
        if self.window_state == "closed":
            return window.WINDOW_CLOSED_TEXT
        return window.too_long(self.msg.body)

    @property
    def approve_refusal(self) -> str:
        return self.refused or self.cannot_approve

    @property
    def overdue(self) -> bool:
        waited = self.waited_seconds
        return self.pending and waited is not None and waited >= settings.OVERDUE_MINUTES * 60

    @property
    def is_group(self) -> bool:
        return self.msg.is_group or bool(self.incoming and self.incoming.is_group)

    @property
    def chat(self) -> str:
        return self.msg.chat or (self.incoming.chat if self.incoming else "")

    @property
    def where(self) -> str:
        """The number, or "+<author> in group +<group>"."""
        if not self.is_group:
            return phone(self.chat)
        author = self.incoming.author if self.incoming else ""
        group = f"group {phone(self.chat)}"
        return f"{phone(author)} in {group}" if author else group

    @property
    def recipient(self) -> str:
        return phone(self.msg.recipient) or "(no recipient)"

    @cached_property
    def unreachable(self) -> str:
        """Why the gateway in use cannot deliver this reply, "" when it can: said on the
        card before anyone approves it (from the message it answers, already loaded)."""
        original = self.incoming.sender if self.incoming else ""
        return whatsapp.cannot_reach(reply_address(self.msg.recipient, original))

    @property
    def sender_name(self) -> str:
        return self.incoming.sender_name if self.incoming else ""

    @property
    def display_name(self) -> str:
        return who(self.sender_name, self.chat)

    @property
    def sort_key(self) -> str:
        """The queue's order as text, for the page's script to place cards that arrive later."""
        stamp = self.msg.timestamp.timestamp() if self.msg.timestamp else 99_999_999_999
        return f"{stamp:017.6f}:{self.msg.position:020d}:{self.msg.pk:012d}"

    @property
    def undo_seconds_left(self) -> int:
        """The Undo window: the sender claims an approved reply after the grace period.
        Only for the viewer's own decision: the lifecycle refuses anyone else's undo."""
        if self.msg.status not in DECIDED or self.msg.claimed_at or not self.msg.status_updated_at:
            return 0
        if not self.page.viewer or self.msg.status_changed_by != self.page.viewer:
            return 0
        passed = (self.now - self.msg.status_updated_at).total_seconds()
        return max(0, int(settings.APPROVAL_GRACE_SECONDS - passed))
