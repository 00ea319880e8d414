"""The common model of GATEWAY.md: what every gateway's answers are turned into.

Nothing outside `statecore.whatsapp` sees a gateway's paths or field names;
it sees these: a session state with its reason in words, a QR or pairing code,
an account, a send outcome (`sent` / `not_sent` with what it means next /
`maybe_sent`) and inbound messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
