"""The common model of GATEWAY.md: what every gateway's answers are turned into.

Nothing outside `statecore.whatsapp` sees a gateway's paths or field names;
it sees these: a session state with its reason in words, a QR or pairing code,
an account, a send outcome (`sent` / `not_sent` with what it means next /
`maybe_sent`) and inbound messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class State(StrEnum):
    READY = "ready"
    STARTING = "starting"
    NEEDS_QR = "needs_qr"
    NEEDS_PAIRING = "needs_pairing"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Status:
    """The gateway's session as it says it is now."""

    state: State
    reason: str
    # The gateway's own word for it (`isReady=false`, `SCAN_QR_CODE`, ...), kept beside.
    code: str = ""
    qr: str = ""
    pairing_code: str = ""
    # The stored login is gone (a logout, an authentication failure): a new link is needed.
    logged_out: bool = False

    @property
    def ready(self) -> bool:
        return self.state == State.READY

    @property
    def needs_login(self) -> bool:
        """WhatsApp itself asks for a new login (a QR or a pairing code)."""
        return self.logged_out or self.state in (State.NEEDS_QR, State.NEEDS_PAIRING)


@dataclass(frozen=True)
class Account:
    number: str | None = None
    name: str | None = None
    platform: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The keys of the state file's `account_info`."""
        return {"number": self.number, "name": self.name, "platform": self.platform}


class Next(StrEnum):
    """What a certain `not_sent` means for the reply."""

    HOLD = "hold"  # the session is down: release the reply, send it when it is back
    FINAL = "final"  # this reply can never go: failed at once, no retries
    CONFIG = "config"  # our key, token or address is wrong: pause all sending
    RETRY = "retry"  # a refused connection or a rate limit: retry after a wait


class Sent(StrEnum):
    SENT = "sent"
    NOT_SENT = "not_sent"
    MAYBE_SENT = "maybe_sent"


@dataclass(frozen=True)
class SendOutcome:
    """What one send achieved. Only a `not_sent` may be retried or held by itself."""

    kind: Sent
    message_id: str = ""
    next: Next | None = None
    error: str = ""

    @classmethod
    def sent(cls, message_id: str = "") -> SendOutcome:
        return cls(Sent.SENT, message_id=message_id)

    @classmethod
    def not_sent(cls, next: Next, error: str) -> SendOutcome:
        return cls(Sent.NOT_SENT, next=next, error=error)

    @classmethod
    def maybe_sent(cls, error: str) -> SendOutcome:
        return cls(Sent.MAYBE_SENT, error=error)

    @property
    def ok(self) -> bool:
        return self.kind == Sent.SENT


@dataclass(frozen=True)
class InboundMessage:
    """A customer's message (or one of ours, echoed), as the gateway delivered it."""

    id: str
    # The chat's address as the gateway names it (`923001234567@c.us`, `...@g.us`, `...@lid`).
    chat: str
    sender_name: str = ""
    text: str = ""
    is_group: bool = False
    from_me: bool = False
    media_kind: str = ""
    # When the gateway itself received it (None when it does not say).
    received_at: datetime | None = None
    # The object to store, on the state file's (the old watcher's) keys.
    stored: dict[str, Any] = field(default_factory=dict)

    @property
    def is_status_update(self) -> bool:
        """A contact's Status update, which whatsapp-web.js delivers as a message."""
        return self.chat == "status@broadcast"


class GatewayUnavailable(Exception):
    """The gateway gave no usable answer (unreachable, timed out, garbled); `str()` reads as a sentence."""


# --- What a gateway pushes: webhooks ----------------------------------------------------

# How long a webhook's dedupe key is remembered: a delivery older than this (WAHA's own
# `timestamp`) is refused, so a captured body cannot be replayed once its key is forgotten.
DEDUPE_WINDOW = timedelta(days=7)


class WebhookRefused(Exception):
    """A webhook request we do not accept: `status` is the HTTP answer (400, 401, 403,
    404, 405); `str()` says why in words (naming the place in a malformed body)."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class EventKind(StrEnum):
    MESSAGE = "message"  # a customer's message: stored in `incoming`, then drafted
    FROM_PHONE = "from_phone"  # a person answered from the phone: part of the conversation
    ECHO = "echo"  # one of our own sends, echoed back: settles a maybe-sent reply
    DELIVERY_FAILED = "delivery_failed"  # a sent reply that WhatsApp later failed to deliver
    DELIVERED = "delivered"  # a later status that changes nothing (delivered, read)
    SESSION = "session"  # the session's state changed (a QR included)
    IGNORED = "ignored"  # signed and well-formed, of a kind we do not use


@dataclass(frozen=True)
class Echo:
    """A message the gateway says we sent (an echo event or a read-back)."""

    gateway_id: str
    chat: str  # the chat's address as the gateway names it
    text: str
    at: datetime | None = None
    # Our reply's id, when the gateway carries it back (Cloud's biz_opaque_callback_data).
    reply_id: str = ""


@dataclass(frozen=True)
class DeliveryFailure:
    """A reply the gateway accepted and WhatsApp later could not deliver."""

    gateway_id: str
    error: str
    code: str = ""  # the gateway's own error code (Cloud's 131047 ...)
    reply_id: str = ""


@dataclass(frozen=True)
class WebhookItem:
    """One thing a webhook delivery says. A delivery may hold several (a Cloud batch);
    each has its own dedupe key (WAHA: the envelope id; Evolution and Cloud: the
    message id, or the message id and status for a status)."""

    kind: EventKind
    dedupe_key: str
    # The gateway's name for the event (`message.any`, `messages.upsert`, `statuses`).
    event: str
    message: InboundMessage | None = None
    echo: Echo | None = None
    failure: DeliveryFailure | None = None
    status: Status | None = None
    # What to store for it: the item with every secret dropped (Evolution's `apikey`).
    payload: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def bare_id(message_id: str) -> str:
    """A WhatsApp message id without its chat (and a group's participant):
    `false_9230...@c.us_3EB0C7` and `false_1203...@g.us_3A1B_9230...@c.us` -> the id
    itself; an id without that prefix as it is. The last part alone would be a group
    message's participant, the same for every message that person writes."""
    parts = message_id.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false") and parts[2]:
        return parts[2]
    return message_id


class SessionAction(StrEnum):
    """What a person may ask the gateway to do with the session, from /session/."""

    PAIR = "pair"  # link with a phone number: the gateway gives a pairing code
    RESTART = "restart"
    LOGOUT = "logout"


@dataclass(frozen=True)
class Traits:
    """What a kind of gateway can do, known without asking it (pages, rules, the loop)."""

    # Customers' messages are polled from it (the scripts' service) rather than pushed.
    can_pull: bool = False
    # It posts webhooks to /gateway/webhook.
    has_webhooks: bool = False
    # It can list a chat's recent messages: ours (read-back) and the customer's (backfill).
    can_read_back: bool = False
    can_backfill: bool = False
    # STATE_FORMAT.md's session-folder rule: only whatsapp-web.js keeps its login in one here.
    needs_session_folder: bool = False
    # Cloud: a free-form reply only within this long of the customer's last message.
    reply_window: timedelta | None = None
    # The longest text one send may carry (Cloud: 4,096 characters).
    max_text_length: int | None = None
    session_actions: frozenset[SessionAction] = frozenset()
    # How the gateway is told where our webhook is: "command" (setup_gateway_webhook
    # applies it), "manual" (paste into the provider's settings), "" (no webhooks).
    webhook_setup: str = ""
