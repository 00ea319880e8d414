"""whatsapp-web.js client events, forwarded by the gateway, applied to the session.

Each event is stored as a `GatewayEvent` (the last `KEEP_EVENTS` are kept) and
changes the session as GATEWAY.md says it means. The QR string lives only in
its event row, never in the session object: the session is exported to
whatsapp_state.json, and a login code has no business in that file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from . import clock, rootstate, session
from .messagedata import dumps_compact
from .models import GatewayEvent, Source

EVENTS = ("qr", "authenticated", "ready", "auth_failure", "disconnected", "change_state")
KEEP_EVENTS = 300
# whatsapp-web.js renews the QR about every 20 s; an older one cannot be scanned.
QR_FRESH_SECONDS = 60
MAX_BODY_BYTES = 16_384
MAX_TEXT = 2_000
ACTOR = "gateway"


class EventRefused(ValueError):
    """An event that cannot be applied; the text names the place and the problem."""


@dataclass(frozen=True)
class QrCode:
    text: str
    received_at: datetime

    def expires_at(self) -> datetime:
        return self.received_at + timedelta(seconds=QR_FRESH_SECONDS)


def parse_event(body: bytes) -> dict:
    """The event object from a request body, checked against GATEWAY.md's format."""
    if len(body) > MAX_BODY_BYTES:
        raise EventRefused(f"body: over {MAX_BODY_BYTES} bytes")
    try:
        event = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventRefused(f"body: not valid JSON ({exc})") from None
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
    return event


def apply_event(event: dict, *, now: datetime | None = None) -> GatewayEvent:
    """Store one parsed event and change the session as it means, in one transaction."""
    now = now or clock.now()
    with transaction.atomic():
        row = GatewayEvent.objects.create(
            event=event["event"], payload=dumps_compact(event), received_at=now
        )
        _EFFECTS[event["event"]](event)
        _trim()
    return row


def latest_qr(*, now: datetime | None = None) -> QrCode | None:
    """The QR to show: the newest of the qr/authenticated/ready events is a qr under 60 s old."""
    now = now or clock.now()
    last = GatewayEvent.objects.filter(event__in=["qr", "authenticated", "ready"]).first()
    if last is None or last.event != "qr":
        return None
    if last.received_at <= now - timedelta(seconds=QR_FRESH_SECONDS):
        return None
    return QrCode(text=json.loads(last.payload)["qr"], received_at=last.received_at)


def recent(limit: int = 20) -> list[GatewayEvent]:
    return list(GatewayEvent.objects.all()[:limit])


# --- What each event means -------------------------------------------------------


def _on_qr(event: dict) -> None:
    current = session.current()
    # Already waiting for a scan: keep the reason that got us here (a LOGOUT,
    # an auth failure), which says more than "a QR is shown".
    if current.get("session_valid") is False and current.get("requires_qr") is True:
        return
    _invalidate("the gateway shows a QR code: WhatsApp is not logged in", needs_qr=True)


def _on_ready(event: dict) -> None:
    session.record_login(True, actor=ACTOR, source=Source.GATEWAY)


def _on_auth_failure(event: dict) -> None:
    reason = f"authentication failed: {event.get('message') or 'no reason given'}"
    _invalidate(reason, needs_qr=True, logged_out=True)


def _on_disconnected(event: dict) -> None:
    reason = event.get("reason") or "no reason given"
    # Only a LOGOUT throws the stored login away; after any other disconnect
    # whatsapp-web.js can come back from .wwebjs_auth without a scan.
    logged_out = reason == "LOGOUT"
    _invalidate(f"disconnected: {reason}", needs_qr=logged_out, logged_out=logged_out)


def _on_change_state(event: dict) -> None:
    """Recorded as an event only: a state like OPENING or PAIRING says nothing final."""


_EFFECTS = {
    "qr": _on_qr,
    "authenticated": _on_ready,
    "ready": _on_ready,
    "auth_failure": _on_auth_failure,
    "disconnected": _on_disconnected,
    "change_state": _on_change_state,
}


def _invalidate(reason: str, *, needs_qr: bool, logged_out: bool = False) -> None:
    current = session.current()
    # The same news twice (a gateway repeating itself) writes one audit row, not two.
    if (
        current.get("session_valid") is False
        and current.get("invalidation_reason") == reason
        and (not needs_qr or current.get("requires_qr") is True)
        and (not logged_out or current.get("authenticated") is False)
    ):
        return
    stamp = clock.local_iso()

    def change(old: object) -> dict:
        data = dict(old) if isinstance(old, dict) else {}
        data.update(session_valid=False, invalidation_reason=reason, invalidated_at=stamp)
        if needs_qr:
            data["requires_qr"] = True
        if logged_out:
            data["authenticated"] = False
        return data

    rootstate.update_part(
        "session", change, actor=ACTOR, source=Source.GATEWAY, action="session_invalid", note=reason
    )


def _trim() -> None:
    newest_dropped = list(
        GatewayEvent.objects.order_by("-pk").values_list("pk", flat=True)[
            KEEP_EVENTS : KEEP_EVENTS + 1
        ]
    )
    if newest_dropped:
        GatewayEvent.objects.filter(pk__lte=newest_dropped[0]).delete()


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


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")
