"""What a gateway's webhook says, applied to the state: database work only.

`POST /gateway/webhook` hands each verified, parsed item here; backfill hands
the messages a lost webhook missed. Nothing here calls the gateway or the
assistant: the receiving loop drafts what is stored, and settles what needs
the gateway.

Each item is applied once: its dedupe key is stored (`WebhookReceipt`) in the
same transaction as its effect, so a second delivery of the same item finds
the key and changes nothing, and an item whose effect failed leaves no key,
so the gateway's retry applies it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from . import clock, lifecycle, reconcile, sending, session
from .models import GatewayMessage, Message, Source, Status, WebhookReceipt
from .statefile.columns import dumps_compact
from .whatsapp import DEDUPE_WINDOW, EventKind, InboundMessage, WebhookItem

log = logging.getLogger(__name__)

ACTOR = "gateway"
PHONE_ACTOR = "phone"
# A stored outcome is a few words; an item's own text is never repeated in it.
MAX_OUTCOME = 300


@dataclass(frozen=True)
class Applied:
    dedupe_key: str
    what: str
    outcome: str
    duplicate: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"key": self.dedupe_key[:100], "what": self.what, "outcome": self.outcome}


def receive(kind: str, items: list[WebhookItem], *, now: datetime | None = None) -> list[Applied]:
    """Apply each item once (a key already stored: nothing happens)."""
    now = now or clock.now()
    return [_receive_one(kind, item, now) for item in items]


def _receive_one(kind: str, item: WebhookItem, now: datetime) -> Applied:
    key = item.dedupe_key[:500]
    if WebhookReceipt.objects.filter(kind=kind, dedupe_key=key).exists():
        return Applied(key, item.kind, "already received", duplicate=True)
    try:
        with transaction.atomic():
            outcome = apply(item)[:MAX_OUTCOME]
            WebhookReceipt.objects.create(
                kind=kind,
                dedupe_key=key,
                event=item.event[:60],
                what=item.kind,
                outcome=outcome,
                payload=dumps_compact(_without_login_codes(item.payload, item)),
                received_at=now,
            )
    except IntegrityError:
        # The same item, delivered twice at once: the other request applied it.
        if WebhookReceipt.objects.filter(kind=kind, dedupe_key=key).exists():
            return Applied(key, item.kind, "already received", duplicate=True)
        raise
    return Applied(key, item.kind, outcome)


def _without_login_codes(value: object, item: WebhookItem) -> object:
    """The payload without the QR or pairing code it carries (anyone holding a fresh one
    can link a phone to the shop's WhatsApp): kept on GatewayState while fresh, never here."""
    codes = {item.status.qr, item.status.pairing_code} - {""} if item.status else set()
    if isinstance(value, dict):
        return {key: _without_login_codes(inner, item) for key, inner in value.items()}
    if isinstance(value, list):
        return [_without_login_codes(inner, item) for inner in value]
    if isinstance(value, str) and (value in codes or value.startswith("data:image/")):
        return "(a login code, not kept)"
    return value


def apply(item: WebhookItem) -> str:
    """What the item changes; returns what was done, in a few words."""
    if item.kind == EventKind.MESSAGE and item.message is not None:
        return store_message(item.message)
    if item.kind == EventKind.FROM_PHONE and item.message is not None:
        return store_phone_answer(item.message)
    if item.kind == EventKind.ECHO and item.echo is not None:
        row = reconcile.record(item.echo, reconcile.ECHO, reply_id=_known_reply(item.echo.reply_id))
        settled = reconcile.settle_later(row)
        if settled:
            return f"settled {settled} as sent"
        return f"echo of {row.reply_id}" if row.reply_id else "echo stored, no reply waits for it"
    if item.kind == EventKind.DELIVERY_FAILED and item.failure is not None:
        return delivery_failed(item.failure)
    if item.kind == EventKind.SESSION and item.status is not None:
        session.record_status(item.status, actor=ACTOR, source=Source.GATEWAY)
        return f"session: {item.status.state}"
    if item.kind == EventKind.DELIVERED:
        return "delivery status noted"
    return f"ignored: {item.note}" if item.note else "ignored"


def store_message(inbound: InboundMessage, *, actor: str = ACTOR) -> str:
    """A customer's message into `incoming`, once (the bare id is the key)."""
    if inbound.is_status_update:
        return "ignored: a contact's Status update"
    try:
        lifecycle.add_message(
            dict(inbound.stored), Status.INCOMING, actor=actor, source=Source.GATEWAY
        )
    except ValueError as exc:
        if Message.objects.filter(message_id=inbound.id).exists():
            return "already stored"
        log.warning("%s: not stored: %s", inbound.id, exc)
        return f"refused: {exc}"
    return "stored"


def store_phone_answer(inbound: InboundMessage) -> str:
    """A person answered from the phone: kept as part of the conversation (a `sent`
    message marked `from_phone`, not counted as one of our sends)."""
    if GatewayMessage.objects.filter(gateway_id=inbound.id).exclude(reply_id="").exists():
        return "our own send"
    at = inbound.received_at or clock.now()
    data = {
        "id": inbound.id,
        "recipient": inbound.chat,
        "body": inbound.text,
        "timestamp": clock.local_iso(at),
        "from_phone": True,
    }
    if inbound.media_kind:
        data["type"] = inbound.media_kind
    try:
        lifecycle.add_message(
            data, Status.SENT, actor=PHONE_ACTOR, source=Source.GATEWAY, counted=False
        )
    except ValueError as exc:
        if Message.objects.filter(message_id=inbound.id).exists():
            return "already stored"
        return f"refused: {exc}"
    return "answer from the phone stored"


def delivery_failed(failure) -> str:
    """A sent reply WhatsApp could not deliver: `sent` -> `failed`, with the gateway's error."""
    reply_id = _known_reply(failure.reply_id) or (
        GatewayMessage.objects.filter(gateway_id=failure.gateway_id)
        .values_list("reply_id", flat=True)
        .first()
        or ""
    )
    if not reply_id:
        return "no reply of ours has this id"
    error = f"delivery failed after sending: {failure.error}"
    try:
        msg = lifecycle.delivery_failed(
            reply_id,
            error,
            actor=ACTOR,
            source=Source.GATEWAY,
            detail={"gateway_message_id": failure.gateway_id, "code": failure.code},
        )
    except lifecycle.MoveRefused as exc:
        return f"not moved: {exc.code}"
    sending.log_entry(msg, "failed", message_id=failure.gateway_id, error=error)
    return f"{reply_id} failed after sending"


def _known_reply(reply_id: str) -> str:
    """A reply id the gateway carried back, when it names one of ours."""
    if reply_id and Message.objects.filter(message_id=reply_id).exclude(reply_to="").exists():
        return reply_id
    return ""


def prune(*, now: datetime | None = None) -> int:
    """Forget receipts (and what the gateway said we sent) older than the dedupe window."""
    before = (now or clock.now()) - DEDUPE_WINDOW
    removed = WebhookReceipt.objects.filter(received_at__lt=before).delete()[0]
    return removed + reconcile.prune(before)
