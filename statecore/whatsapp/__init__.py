"""Everything that speaks to a WhatsApp gateway, and nothing else does.

One adapter per kind turns that gateway's wire format into the common model
(`model.py`); `gateway()` is the one factory every caller uses (the sender,
the receiving loop, `check_session`, the session page, `run_dashboard`).
The kind is the setting `GATEWAY_KIND`; for `wwebjs`, the scripts' own
service, the address is the state's `api_endpoint`.
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings

from . import wwebjs
from .model import (
    Account,
    GatewayUnavailable,
    InboundMessage,
    Next,
    SendOutcome,
    Sent,
    State,
    Status,
)

KINDS = {wwebjs.KIND: wwebjs}


class Gateway(Protocol):
    """What every adapter offers (GATEWAY.md's common model)."""

    kind: str
    can_pull: bool

    @property
    def address(self) -> str: ...

    def status(self) -> Status: ...

    def account(self) -> Account | None: ...

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome: ...

    def cannot_reach(self, address: str) -> str: ...

    def pull_messages(self) -> list[InboundMessage]: ...

    def mark_processed(self, message_id: str) -> None: ...

    def buffer_overflowed(self, count: int) -> bool: ...

    def close(self) -> None: ...

    def __enter__(self) -> Gateway: ...

    def __exit__(self, *exc_info: object) -> None: ...


def kind() -> str:
    return settings.GATEWAY_KIND


def gateway(*, status_timeout: float = 5.0, send_timeout: float = 30.0) -> Gateway:
    """The adapter of the configured kind, with GATEWAY.md's timeouts by default."""
    from statecore import rootstate

    return wwebjs.WwebjsGateway(
        rootstate.api_endpoint(), status_timeout=status_timeout, send_timeout=send_timeout
    )


def address() -> str:
    """Where the configured gateway is, for pages and logs."""
    from statecore import rootstate

    return rootstate.api_endpoint()


def cannot_reach(address: str) -> str:
    """Why the configured gateway cannot deliver to `address` ("" when it can); no network call."""
    return KINDS[kind()].cannot_reach(address)


__all__ = [
    "Account",
    "Gateway",
    "GatewayUnavailable",
    "InboundMessage",
    "Next",
    "SendOutcome",
    "Sent",
    "State",
    "Status",
    "address",
    "cannot_reach",
    "gateway",
    "kind",
]
