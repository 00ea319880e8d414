"""Settling an uncertain send: did the gateway send our reply after all?

No gateway honours an idempotency key, so a send whose answer was lost
(`maybe_sent`) is never sent again by itself. What the gateway itself says
settles it instead (GATEWAY.md's "echo / ack"):

- an **echo**: the gateway reports a message we sent (WAHA `message.any` with
  `source: "api"`, Evolution `send.message`, Cloud's `sent` status carrying our
  reply id). Echoes usually arrive *before* the sender has the send's answer, so
  every one is stored (`GatewayMessage`), matched or not;
- a **read-back**: where the gateway can list a chat's recent messages from us.

A match is the same chat, the same text after whitespace normalisation, sent
after the reply was claimed (allowing CLOCK_SKEW), and a gateway id no other
reply holds (the guarded UPDATE of `claim_for` decides). A settled reply is
`sent`, audited as confirmed by the gateway (`confirmed_by`: echo or
read-back, with the gateway's id); no person is asked. What stays unknown goes
to a person, as before.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from django.db import transaction

from . import clock, lifecycle
from .models import GatewayMessage, Message, Source, Status
from .statefile.columns import chat_of
from .whatsapp import Echo, Gateway, GatewayUnavailable

log = logging.getLogger(__name__)

# Our clock and the gateway's may disagree this much.
CLOCK_SKEW = timedelta(minutes=2)
ACTOR = "gateway"
ECHO, READ_BACK = GatewayMessage.Source.ECHO, GatewayMessage.Source.READ_BACK


def normalise(text: str) -> str:
    """The text as compared: runs of whitespace as one space, none at the ends."""
    return re.sub(r"\s+", " ", text or "").strip()


def record(echo: Echo, source: str, *, reply_id: str = "") -> GatewayMessage:
    """Store what the gateway says we sent (once per gateway id); returns the row."""
    now = clock.now()
    row, created = GatewayMessage.objects.get_or_create(
        gateway_id=echo.gateway_id[:500],
        defaults={
            "reply_id": reply_id,
            "chat": chat_of(echo.chat)[:200],
            "text": normalise(echo.text),
            "sent_at": echo.at,
            "source": source,
            "recorded_at": now,
        },
    )
    if not created and not row.chat and echo.chat:
        # First known from a send's answer (no chat, no text): the echo fills them in.
        GatewayMessage.objects.filter(pk=row.pk).update(
            chat=chat_of(echo.chat)[:200], text=normalise(echo.text), sent_at=echo.at
        )
        row.refresh_from_db()
    return row


def note_answer(reply_id: str, gateway_id: str) -> None:
    """The send's own answer named its id: tie it to the reply (an echo may be there
    first: then one UPDATE; otherwise one INSERT)."""
    if not gateway_id:
        return
    gateway_id = gateway_id[:500]
    if GatewayMessage.objects.filter(gateway_id=gateway_id, reply_id="").update(reply_id=reply_id):
        return
    GatewayMessage.objects.bulk_create(
        [
            GatewayMessage(
                gateway_id=gateway_id,
                reply_id=reply_id,
                source=GatewayMessage.Source.ANSWER,
                recorded_at=clock.now(),
            )
        ],
        ignore_conflicts=True,
    )


def claim_for(msg: Message, rows) -> GatewayMessage | None:
    """The first of `rows` that matches `msg`, tied to it (None when none does)."""
    text = normalise(msg.body)
    since = (msg.claimed_at or msg.status_updated_at or clock.now()) - CLOCK_SKEW
    for row in rows:
        if row.reply_id not in ("", msg.message_id) or row.text != text:
            continue
        when = row.sent_at or row.recorded_at
        if when < since:
            continue
        if GatewayMessage.objects.filter(pk=row.pk, reply_id__in=("", msg.message_id)).update(
            reply_id=msg.message_id
        ):
            return row
    return None


def stored_echo(msg: Message) -> GatewayMessage | None:
    """An echo already stored that matches this reply: one that carried our reply id back
    (Cloud's statuses carry no text), else one of the same chat and text."""
    carried = (
        GatewayMessage.objects.filter(reply_id=msg.message_id)
        .exclude(source=GatewayMessage.Source.ANSWER)
        .first()
    )
    if carried is not None:
        return carried
    chat = _chat(msg)
    if not chat:
        return None
    rows = GatewayMessage.objects.filter(chat=chat, reply_id__in=("", msg.message_id)).order_by(
        "recorded_at", "pk"
    )
    return claim_for(msg, rows)


def read_back(msg: Message, gateway: Gateway, address: str) -> GatewayMessage | None:
    """Ask the gateway for the chat's recent messages from us, store them, match."""
    if not gateway.traits.can_read_back:
        return None
    since = (msg.claimed_at or clock.now()) - CLOCK_SKEW
    try:
        echoes = gateway.read_back(address, since)
    except (GatewayUnavailable, NotImplementedError) as exc:
        log.warning("%s: could not read the chat back: %s", msg.message_id, exc)
        return None
    rows = [record(echo, READ_BACK) for echo in echoes if echo.gateway_id]
    return claim_for(msg, rows)


def settle_after_send(msg: Message, gateway: Gateway, address: str) -> tuple[str, str] | None:
    """For a send that ended maybe_sent: (gateway id, "echo"|"read-back") when the
    gateway shows it went out, else None. Network only in the read-back."""
    found = stored_echo(msg)
    if found is not None:
        return found.gateway_id, "echo"
    found = read_back(msg, gateway, address)
    if found is not None:
        return found.gateway_id, "read-back"
    return None


def settle_later(row: GatewayMessage) -> str:
    """An echo that arrived after its reply was recorded "outcome unknown": settle it.
    Returns the reply's id, or "" when no uncertain reply matches."""
    if row.reply_id:
        # The gateway named the reply itself (or it was matched before): that one only.
        return _settle(row.reply_id, row) if _uncertain_failed(row.reply_id) else ""
    if not row.chat:
        return ""
    # Only replies claimed before the echo's send (with the skew) and of the same text:
    # the audit row (one query each) is read for those few, not for a chat's every failure.
    when = row.sent_at or row.recorded_at
    candidates = (
        Message.objects.filter(
            status=Status.FAILED,
            chat=row.chat,
            claimed_at__isnull=False,
            claimed_at__lte=when + CLOCK_SKEW,
        )
        .exclude(reply_to="")
        .order_by("claimed_at", "pk")
    )
    for msg in candidates:
        if normalise(msg.body) != row.text or not lifecycle.last_failure_uncertain(msg.message_id):
            continue
        with transaction.atomic():
            if claim_for(msg, [row]) is None:
                continue
            return _settle(msg.message_id, row)
    return ""


def _settle(reply_id: str, row: GatewayMessage) -> str:
    try:
        lifecycle.settle_sent(
            reply_id,
            gateway_message_id=row.gateway_id,
            confirmed_by="echo",
            actor=ACTOR,
            source=Source.GATEWAY,
        )
    except lifecycle.MoveRefused:
        return ""  # a person resolved it meanwhile
    return reply_id


def _uncertain_failed(reply_id: str) -> bool:
    failed = Message.objects.filter(message_id=reply_id, status=Status.FAILED).exists()
    return failed and lifecycle.last_failure_uncertain(reply_id)


def _chat(msg: Message) -> str:
    return msg.chat or chat_of(msg.recipient)


def prune(before: datetime) -> int:
    """Forget what the gateway said we sent before `before` (the dedupe window)."""
    return GatewayMessage.objects.filter(recorded_at__lt=before).delete()[0]
