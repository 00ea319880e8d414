"""whatsapp-web.js client events, as a gateway of ours may forward them (GATEWAY.md section 1).

`POST /gateway/events` with one JSON event: `{"event": "qr", "qr": "2@..."}`,
`ready`, `authenticated`, `auth_failure` (`message`), `disconnected`
(`reason`), `change_state` (`state`), each with an optional `at`. Here they
are checked and turned into the common model's status; the session verbs do
the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import segno

from .. import clock
from ..statefile.parse import StateFileError, parse_json
from .model import State, Status

EVENTS = ("qr", "authenticated", "ready", "auth_failure", "disconnected", "change_state")
MAX_BODY_BYTES = 16_384
MAX_TEXT = 2_000


class EventRefused(ValueError):
    """An event that cannot be applied; the text names the place and the problem."""


@dataclass(frozen=True)
class ForwardedEvent:
    kind: str
    payload: dict
    # None: recorded only (a `change_state` says nothing final).
    status: Status | None

    @property
    def detail(self) -> str:
        """The event in a few words, for the page's list of events."""
        return _detail(self.kind, self.payload)


def parse_event(body: bytes) -> ForwardedEvent:
    """The event from a request body, checked against GATEWAY.md's format."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRefused(f"body: over {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise EventRefused('body: empty; expected a JSON object like {"event": "ready"}')
    try:
        # As strict as a state file: a key twice, NaN, deep nesting, NUL, lone surrogates.
        event = parse_json(body)
    except StateFileError as exc:
        raise EventRefused(f"body: {'; '.join(str(exc).splitlines())}") from None
    if not isinstance(event, dict):
        raise EventRefused('body: expected a JSON object like {"event": "ready"}')
    kind = event.get("event")
    if not isinstance(kind, str):
        raise EventRefused("event: expected a string naming the event")
    if kind not in EVENTS:
        raise EventRefused(
            f"event: unknown event {kind[:50]!r}; expected one of {', '.join(EVENTS)}"
        )
    required = {"qr": "qr", "change_state": "state"}.get(kind)
    if required:
        _text(event, required, required=True)
    for key in ("reason", "message", "at"):
        _text(event, key, required=False)
    if kind == "qr":
        _drawable(event["qr"])
    # `authenticated` and `ready` also come when whatsapp-web.js restores a saved
    # login on a restart: a new login only when they follow a QR (the verbs tell).
    return ForwardedEvent(kind, event, _status(kind, event))


def detail_of(kind: str, payload_text: str) -> str:
    """The few words for a stored event (its payload as stored JSON text)."""
    try:
        payload = json.loads(payload_text)
    except ValueError:
        payload = {}
    return _detail(kind, payload if isinstance(payload, dict) else {})


def _status(kind: str, event: dict) -> Status | None:
    if kind in ("authenticated", "ready"):
        return Status(State.READY, "WhatsApp is logged in and connected", code=kind)
    if kind == "qr":
        return Status(
            State.NEEDS_QR,
            "WhatsApp is logged out: scan the QR code to link it again",
            code="qr",
            qr=event["qr"],
            logged_out=True,
        )
    if kind == "auth_failure":
        reason = f"authentication failed: {event.get('message') or 'no reason given'}"
        return Status(State.FAILED, reason, code="auth_failure", logged_out=True)
    if kind == "disconnected":
        reason = event.get("reason") or "no reason given"
        # Only a LOGOUT throws the stored login away; after any other disconnect
        # whatsapp-web.js can come back from .wwebjs_auth without a scan.
        return Status(
            State.DISCONNECTED,
            f"disconnected: {reason}",
            code=reason[:100],
            logged_out=reason == "LOGOUT",
        )
    return None


def _detail(kind: str, payload: dict) -> str:
    detail = {
        "qr": "a QR code to scan",
        "disconnected": payload.get("reason"),
        "auth_failure": payload.get("message"),
        "change_state": payload.get("state"),
    }.get(kind)
    return detail if isinstance(detail, str) else ""


def _text(event: dict, key: str, *, required: bool) -> None:
    if key not in event:
        if required:
            raise EventRefused(f"{key}: missing (a {event['event']} event needs it)")
        return
    value = event[key]
    if not isinstance(value, str) or (required and not value):
        raise EventRefused(
            f"{key}: expected a non-empty string" if required else f"{key}: expected a string"
        )
    if len(value) > MAX_TEXT:
        raise EventRefused(f"{key}: over {MAX_TEXT} characters")
    if key == "at" and clock.parse_timestamp(value) is None:
        raise EventRefused(f"at: {value[:50]!r} is not an ISO-8601 time")


def _drawable(qr: str) -> None:
    # Drawn as the session page draws it: a QR no code can hold is refused here rather
    # than stored for the page to show as text (2,000 emoji are 8,000 bytes; a code, 2,953).
    try:
        segno.make(qr, error="l")
    except (segno.DataOverflowError, ValueError) as exc:
        raise EventRefused(f"qr: cannot be drawn as a QR code ({exc})") from None
