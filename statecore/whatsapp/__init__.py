"""Everything that speaks to a WhatsApp gateway, and nothing else does.

One adapter per kind turns that gateway's wire format into the common model
(`model.py`); `gateway()` is the one factory every caller uses (the sender,
the receiving loop, `check_session`, the session page, `run_dashboard`).
A kind that posts webhooks has its events module beside its adapter
(`waha_events`, `evolution_events`, `cloud_events`): `verify_webhook`,
`parse_webhook` and `challenge` here dispatch to it. What all adapters share
over HTTP is written once in `http.py`.
The kind is the setting `GATEWAY_KIND`; for `wwebjs`, the scripts' own
service, the address is the state's `api_endpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import ModuleType
from typing import Protocol

from django.conf import settings

from . import (
    cloud,
    cloud_events,
    config,
    evolution,
    evolution_events,
    waha,
    waha_events,
    wwebjs,
)
from .model import (
    DEDUPE_WINDOW,
    Account,
    DeliveryFailure,
    Echo,
    EventKind,
    GatewayUnavailable,
    InboundMessage,
    Next,
    SendOutcome,
    Sent,
    SessionAction,
    State,
    Status,
    Traits,
    WebhookItem,
    WebhookRefused,
    bare_id,
)

# Each adapter module offers: KIND, TRAITS, cannot_reach(address) and a client class built
# by `client(settings, status_timeout=, send_timeout=)`.
KINDS: dict[str, ModuleType] = {m.KIND: m for m in (wwebjs, waha, evolution, cloud)}
# Where a kind posts webhooks, its events module reads them: `verify_webhook(headers, body,
# *, secret, now)`, `parse_webhook(data, *, settings)` and (Cloud) `challenge(params, *,
# verify_token)`. The scripts' service posts none (its forwarded events: wwebjs_events).
EVENTS: dict[str, ModuleType] = {
    waha.KIND: waha_events,
    evolution.KIND: evolution_events,
    cloud.KIND: cloud_events,
}


class Gateway(Protocol):
    """What every adapter's client offers (GATEWAY.md's common model). A method a kind
    has no use for raises NotImplementedError; its TRAITS say which ones it has."""

    kind: str
    traits: Traits
    status_timeout: float
    send_timeout: float

    @property
    def address(self) -> str: ...

    def status(self) -> Status: ...

    def account(self) -> Account | None: ...

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome: ...

    def cannot_reach(self, address: str) -> str: ...

    # Polling (traits.can_pull): the scripts' service.
    def pull_messages(self) -> list[InboundMessage]: ...

    def mark_processed(self, message_id: str) -> None: ...

    def buffer_overflowed(self, count: int) -> bool: ...

    # Reading a chat back (traits.can_read_back / can_backfill); GatewayUnavailable on no answer.
    def read_back(self, chat: str, since: datetime) -> list[Echo]: ...

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]: ...

    # The session from the dashboard (traits.session_actions).
    def request_pairing_code(self, number: str) -> str: ...

    def restart(self) -> None: ...

    def logout(self) -> None: ...

    # setup_gateway_webhook (traits.webhook_setup == "command").
    def webhook_config(self) -> dict: ...

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict: ...

    def apply_webhook(self, plan: dict) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Gateway: ...

    def __exit__(self, *exc_info: object) -> None: ...


def kind() -> str:
    return settings.GATEWAY_KIND


def module() -> ModuleType:
    return KINDS[kind()]


def traits() -> Traits:
    """What the configured gateway can do (no network call)."""
    return module().TRAITS


def gateway(*, status_timeout: float = 5.0, send_timeout: float = 30.0) -> Gateway:
    """The client of the configured kind, with GATEWAY.md's timeouts by default."""
    return module().client(settings, status_timeout=status_timeout, send_timeout=send_timeout)


def address() -> str:
    """Where the configured gateway is, for pages and logs (never a secret)."""
    if kind() == wwebjs.KIND:
        # Imported here: the settings import this package before the models are ready.
        from statecore import rootstate

        return rootstate.api_endpoint()
    return config.shown_address(
        kind(), settings.GATEWAY_URL, settings.GATEWAY_SESSION, settings.GATEWAY_PHONE_NUMBER_ID
    )


def cannot_reach(address: str) -> str:
    """Why the configured gateway cannot deliver to `address` ("" when it can); no network call."""
    return module().cannot_reach(address)


def verify_webhook(headers: Mapping[str, str], body: bytes, *, now: datetime) -> None:
    """Raise WebhookRefused unless this delivery is signed by the configured gateway."""
    events = _events()
    if not settings.GATEWAY_WEBHOOK_SECRET:
        raise WebhookRefused(401, "GATEWAY_WEBHOOK_SECRET is not set: no webhook is trusted")
    events.verify_webhook(headers, body, secret=settings.GATEWAY_WEBHOOK_SECRET, now=now)


def parse_webhook(data: object) -> list[WebhookItem]:
    """What a verified delivery says, item by item; WebhookRefused(400) names a bad place."""
    return _events().parse_webhook(data, settings=settings)


def challenge(params: Mapping[str, str]) -> str:
    """Cloud's GET verification: the `hub.challenge` to echo, or WebhookRefused."""
    answer = getattr(EVENTS.get(kind()), "challenge", None)
    if answer is None:
        raise WebhookRefused(405, "use POST: only the Cloud API verifies with a GET")
    return answer(params, verify_token=settings.GATEWAY_VERIFY_TOKEN)


def _events() -> ModuleType:
    """The configured kind's events module; WebhookRefused(404) when it posts no webhooks."""
    events = EVENTS.get(kind())
    if events is None:
        raise WebhookRefused(
            404, f"the {kind()} gateway posts no webhooks (its events go to /gateway/events)"
        )
    return events


__all__ = [
    "DEDUPE_WINDOW",
    "EVENTS",
    "KINDS",
    "Account",
    "DeliveryFailure",
    "Echo",
    "EventKind",
    "Gateway",
    "GatewayUnavailable",
    "InboundMessage",
    "Next",
    "SendOutcome",
    "Sent",
    "SessionAction",
    "State",
    "Status",
    "Traits",
    "WebhookItem",
    "WebhookRefused",
    "address",
    "bare_id",
    "cannot_reach",
    "challenge",
    "gateway",
    "kind",
    "module",
    "parse_webhook",
    "traits",
    "verify_webhook",
]
