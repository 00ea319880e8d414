"""Gateway events, stored and applied to the session; the QR to show.

Each forwarded event is stored as a `GatewayEvent` (the last `KEEP_EVENTS`
are kept) and what it says goes through the session verbs. The QR lives only
on `GatewayState` (recorded there by the verbs, whether it came from an event
or from polling the gateway), never in the session object: the session is
exported to whatsapp_state.json, and a login code has no business in that file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from . import clock, session
from .models import GatewayEvent, GatewayState, Source
from .statefile.columns import dumps_compact
from .whatsapp.wwebjs_events import ForwardedEvent, detail_of

KEEP_EVENTS = 300
# whatsapp-web.js renews the QR about every 20 s; one first seen longer ago cannot be scanned.
QR_FRESH_SECONDS = 60
ACTOR = "gateway"


@dataclass(frozen=True)
class QrCode:
    text: str
    received_at: datetime

    def expires_at(self) -> datetime:
        return self.received_at + timedelta(seconds=QR_FRESH_SECONDS)


def apply_event(event: ForwardedEvent, *, now: datetime | None = None) -> GatewayEvent:
    """Store one parsed event and record what it says, in one transaction."""
    now = now or clock.now()
    with transaction.atomic():
        row = GatewayEvent.objects.create(
            event=event.kind, payload=dumps_compact(event.payload), received_at=now
        )
        if event.status is not None:
            session.record_status(event.status, actor=ACTOR, source=Source.GATEWAY)
        _trim()
    return row


def latest_qr(*, now: datetime | None = None) -> QrCode | None:
    """The QR the gateway shows, when it said so less than 60 s ago (a GET records nothing)."""
    now = now or clock.now()
    state = GatewayState.objects.filter(pk=1).first()
    # Fresh while the gateway still shows it: a QR last seen a minute ago (the loop
    # stopped, or an event never followed) may have been replaced since.
    if state is None or not state.qr or state.seen_at is None:
        return None
    if state.seen_at <= now - timedelta(seconds=QR_FRESH_SECONDS):
        return None
    return QrCode(text=state.qr, received_at=state.seen_at)


def recent(limit: int = 20) -> list[dict]:
    """The last events, newest first, each with its detail in a few words."""
    return [
        {
            "event": row.event,
            "received_at": row.received_at,
            "detail": detail_of(row.event, row.payload),
        }
        for row in GatewayEvent.objects.all()[:limit]
    ]


def _trim() -> None:
    newest_dropped = list(
        GatewayEvent.objects.order_by("-pk").values_list("pk", flat=True)[
            KEEP_EVENTS : KEEP_EVENTS + 1
        ]
    )
    if newest_dropped:
        GatewayEvent.objects.filter(pk__lte=newest_dropped[0]).delete()
