"""What WAHA says about messages and sessions, and the webhooks it posts (GATEWAY.md section 2).

- Its words in the common model: a chat id (`chat_id`), a message's short id
  (`short_id`), a session status (`session_status`), one of its messages
  (`check_message`, `as_inbound`, `as_echo`). Its webhooks and its chat listings carry the
  same message objects, so the client's read-back and backfill use these too.
- Its webhooks: `verify_webhook` (hex HMAC-SHA512 of the raw body in
  `X-Webhook-Hmac`, and the body's own signed `timestamp` within the dedupe window)
  and `parse_webhook` (one envelope, one item, keyed by the envelope id `evt_...`).

Message ids. WAHA names one message `true_<chat>_<id>` (plus `_<participant>` in a
group) in its events; every id leaving here is the short `<id>` (`short_id`), so a
send's answer, its `message.ack` and its echo name the same message.

No HTTP here: the client (`waha.py`) calls WAHA and imports what it needs from this.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import http
from .model import (
    DEDUPE_WINDOW,
    DeliveryFailure,
    Echo,
    EventKind,
    InboundMessage,
    State,
    Status,
    WebhookItem,
    WebhookRefused,
    bare_id,
)

HMAC_HEADER = "X-Webhook-Hmac"
HMAC_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# A message's content key (Baileys' and whatsmeow's protobuf names) -> the old watcher's type.
CONTENT_TYPES = {
    "conversation": "chat",
    "extendedTextMessage": "chat",
    "imageMessage": "image",
    "videoMessage": "video",
    "audioMessage": "audio",  # "ptt" when it is a voice note
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "liveLocationMessage": "location",
    "contactMessage": "vcard",
    "contactsArrayMessage": "multi_vcard",
}
# Wrappers around the real content (disappearing, view-once, a captioned document).
CONTENT_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "documentWithCaptionMessage",
)
MEDIA_TYPES = frozenset({"image", "video", "audio", "ptt", "document", "sticker"})
# whatsapp-web.js types (WEBJS) of WhatsApp's own notices in a chat: nothing to answer.
NOTICE_TYPES = frozenset(
    {"e2e_notification", "notification_template", "gp2", "protocol", "call_log", "revoked"}
)
# Keys that hold a secret wherever they sit in a webhook body: never stored.
SECRET_KEYS = frozenset({"apikey", "api_key", "x-api-key"})


# --- ids and chats ---------------------------------------------------------------------


def chat_id(address: str) -> str:
    """The chatId WAHA is given: bare digits get `@c.us`; `@s.whatsapp.net` (engines'
    raw form) becomes `@c.us`; anything else as it is."""
    if "@" not in address:
        return re.sub(r"\D", "", address) + "@c.us"
    user, _, domain = address.rpartition("@")
    return f"{user}@c.us" if domain == "s.whatsapp.net" else address


def short_id(message_id: str) -> str:
    """A WAHA message id without its chat (and a group's participant): `bare_id`."""
    return bare_id(message_id)


def phone_chat(jid: object) -> str:
    """`9230...@s.whatsapp.net` or `9230...:12@c.us` (with a device) -> `9230...@c.us`;
    "" when `jid` is not a person's number."""
    if not isinstance(jid, str) or "@" not in jid:
        return ""
    user, _, domain = jid.rpartition("@")
    user = user.split(":", 1)[0]
    if domain in ("c.us", "s.whatsapp.net") and user.isascii() and user.isdigit():
        return f"{user}@c.us"
    return ""


# --- the session -----------------------------------------------------------------------


def session_status(code: str, data: object = None) -> Status:
    """WAHA's session status (`GET /api/sessions/<s>` or a `session.status` event) in
    the common model, with its reason in words. `data`: the event's extra (a passkey step)."""
    if code == "WORKING":
        return Status(State.READY, "WhatsApp is linked and working", code=code)
    if code == "STARTING":
        return Status(State.STARTING, "the WhatsApp session is starting: wait a moment", code=code)
    if code == "SCAN_QR_CODE":
        return Status(
            State.NEEDS_QR,
            "WhatsApp is not linked: scan the QR code with the phone "
            "(WhatsApp, Linked devices) or link it with the phone number",
            code=code,
            logged_out=True,
        )
    if code == "STOPPED":
        return Status(
            State.DISCONNECTED,
            "the WhatsApp session is stopped on the gateway: restart it",
            code=code,
        )
    if code == "FAILED":
        return Status(
            State.FAILED,
            "the WhatsApp session has failed: restart it; if that does not help, "
            "log out and link the phone again",
            code=code,
        )
    if code == "PASSKEY_REQUIRED":
        return Status(
            State.NEEDS_PAIRING,
            "WhatsApp asks for a passkey to finish linking: finish it in WAHA's dashboard",
            code=code,
            logged_out=True,
        )
    if code == "PASSKEY_CONFIRMATION_REQUIRED":
        shown = data.get("code") if isinstance(data, dict) else None
        check = f": check that the phone shows {shown}" if isinstance(shown, str | int) else ""
        return Status(
            State.NEEDS_PAIRING,
            f"WhatsApp asks to confirm the new link on the phone{check}",
            code=code,
            logged_out=True,
        )
    return Status(
        State.UNKNOWN,
        f"the gateway reports a session state we do not know: {code[:60]}",
        code=code[:60],
    )


# --- webhooks -------------------------------------------------------------------------


def verify_webhook(headers: Mapping[str, str], body: bytes, *, secret: str, now: datetime) -> None:
    """Raise WebhookRefused(401) unless WAHA signed this body with `secret` (hex HMAC-SHA512
    of the raw body in `X-Webhook-Hmac`) and the body's own `timestamp` (ms, signed) is
    within the dedupe window: an older one could be a replay whose dedupe key is forgotten."""
    given = http.header(headers, HMAC_HEADER)
    if not given:
        raise WebhookRefused(
            401,
            f"{HMAC_HEADER}: missing; set the webhook's HMAC key in WAHA "
            "(hmac.key, or WHATSAPP_HOOK_HMAC_KEY) to GATEWAY_WEBHOOK_SECRET",
        )
    algorithm = http.header(headers, HMAC_ALGORITHM_HEADER)
    if algorithm and algorithm.strip().lower() != "sha512":
        raise WebhookRefused(
            401, f"{HMAC_ALGORITHM_HEADER}: expected sha512, got {algorithm[:20]!r}"
        )
    expected = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest().encode()
    if not hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace")):
        raise WebhookRefused(
            401,
            f"{HMAC_HEADER}: does not match the body (another key than "
            "GATEWAY_WEBHOOK_SECRET, or a changed body)",
        )
    sent_ms = _signed_timestamp(body)
    oldest_ms = (now.timestamp() - DEDUPE_WINDOW.total_seconds()) * 1000
    if sent_ms is not None and sent_ms < oldest_ms:
        raise WebhookRefused(
            401,
            f"timestamp: this delivery was made at {_time_words(sent_ms / 1000)}, more than "
            f"{DEDUPE_WINDOW.days} days ago: refused, as its dedupe key may be forgotten",
        )


def parse_webhook(data: object, *, settings: Any) -> list[WebhookItem]:
    """What one verified WAHA delivery says: one item, keyed by the envelope id (`evt_...`).

    WebhookRefused(400, "<place>: <problem>") for a body without the fields we need;
    a well-formed event we do not use, or for another session, is IGNORED with a note."""
    if not isinstance(data, dict):
        raise WebhookRefused(400, "body: expected a JSON object (a WAHA event)")
    event_id = _text_field(data, "id", "")
    event = _text_field(data, "event", "")
    session = _text_field(data, "session", "")
    received_at = _event_time(data.get("timestamp"))
    base = {
        "dedupe_key": event_id,
        "event": event,
        "payload": http.without_secrets(data, SECRET_KEYS),
    }
    if session != settings.GATEWAY_SESSION:
        note = f"for WAHA session {session[:60]!r}, not ours ({settings.GATEWAY_SESSION!r})"
        return [WebhookItem(EventKind.IGNORED, note=note, **base)]
    parse = _EVENTS.get(event)
    if parse is None:
        return [
            WebhookItem(EventKind.IGNORED, note=f"WAHA's {event[:60]!r} event is not used", **base)
        ]
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "payload: expected an object")
    return [parse(payload, received_at, base)]


def _message_item(payload: dict, received_at: datetime, base: dict) -> WebhookItem:
    check_message(payload, "payload")
    if _message_type(payload) in NOTICE_TYPES:
        return WebhookItem(EventKind.IGNORED, note="a WhatsApp notice, not a message", **base)
    if not payload["fromMe"]:
        chat = _customer_chat(payload)
        if chat.endswith("@newsletter"):
            return WebhookItem(EventKind.IGNORED, note="a channel's post", **base)
        return WebhookItem(EventKind.MESSAGE, message=as_inbound(payload, received_at), **base)
    source = payload.get("source")
    if source == "api":
        return WebhookItem(EventKind.ECHO, echo=as_echo(payload), **base)
    if source == "app":
        echo = as_echo(payload)
        kind = _message_type(payload)
        answer = InboundMessage(
            id=echo.gateway_id,
            chat=echo.chat,
            text=echo.text,
            from_me=True,
            media_kind="" if kind == "chat" else kind,
            received_at=echo.at or received_at,
        )
        return WebhookItem(EventKind.FROM_PHONE, message=answer, **base)
    # WAHA before `source` existed: our echo and a reply typed on the phone look alike.
    return WebhookItem(
        EventKind.IGNORED,
        note="a message from this account that WAHA does not say is ours or the phone's",
        **base,
    )


def _ack_item(payload: dict, received_at: datetime, base: dict) -> WebhookItem:
    message_id = _text_field(payload, "id", "payload.")
    from_me = payload.get("fromMe")
    if not isinstance(from_me, bool):
        if message_id.startswith(("true_", "false_")):
            from_me = message_id.startswith("true_")
        else:
            raise WebhookRefused(400, "payload.fromMe: expected true or false")
    name = payload.get("ackName")
    if not isinstance(name, str) or not name:
        ack = payload.get("ack")
        if not (isinstance(ack, int) and not isinstance(ack, bool) and ack in ACK_NAMES):
            raise WebhookRefused(
                400, f"payload.ackName: expected one of {', '.join(ACK_NAMES.values())}"
            )
        name = ACK_NAMES[ack]
    if not from_me:
        return WebhookItem(
            EventKind.IGNORED, note="an acknowledgement of a customer's message", **base
        )
    if name == "ERROR":
        failure = DeliveryFailure(
            gateway_id=short_id(message_id),
            error="WhatsApp could not deliver the message (WAHA reported its status as ERROR)",
            code="ERROR",
        )
        return WebhookItem(EventKind.DELIVERY_FAILED, failure=failure, **base)
    return WebhookItem(EventKind.DELIVERED, note=f"status {name[:20]}", **base)


def _session_item(payload: dict, received_at: datetime, base: dict) -> WebhookItem:
    code = _text_field(payload, "status", "payload.")
    # The event carries no QR: the receiving loop's status() fetches it.
    return WebhookItem(EventKind.SESSION, status=session_status(code, payload.get("data")), **base)


_EVENTS = {
    "message": _message_item,
    "message.any": _message_item,
    "message.ack": _ack_item,
    "session.status": _session_item,
}


# --- messages in the common model --------------------------------------------------------------


def check_message(payload: dict, place: str) -> None:
    """WebhookRefused(400) naming the first field we need that is missing or mistyped."""
    _text_field(payload, "id", f"{place}.")
    _text_field(payload, "from", f"{place}.")
    if not isinstance(payload.get("fromMe"), bool):
        raise WebhookRefused(400, f"{place}.fromMe: expected true or false")
    for key, kinds, what in (
        ("body", (str,), "a string or null"),
        ("to", (str,), "a string or null"),
        ("source", (str,), "a string"),
        ("hasMedia", (bool,), "true or false"),
    ):
        if payload.get(key) is not None and not isinstance(payload[key], kinds):
            raise WebhookRefused(400, f"{place}.{key}: expected {what}")
    stamp = payload.get("timestamp")
    if stamp is not None and _unix_seconds(stamp) is None:
        raise WebhookRefused(400, f"{place}.timestamp: expected unix seconds")


def as_inbound(payload: dict, received_at: datetime | None) -> InboundMessage:
    """A customer's message (checked by `check_message`) on the old watcher's keys."""
    chat = _customer_chat(payload)
    seconds = _unix_seconds(payload.get("timestamp"))
    if seconds is None:
        seconds = int((received_at or datetime.now(UTC)).timestamp())
    # The gateway's time: the event's when it came by webhook, else the message's own.
    at = received_at or datetime.fromtimestamp(seconds, UTC)
    name = _sender_name(payload)
    is_group = chat.endswith("@g.us")
    kind = _message_type(payload)
    has_media = payload.get("hasMedia") is True or kind in MEDIA_TYPES
    body = payload.get("body") if isinstance(payload.get("body"), str) else ""
    stored: dict[str, Any] = {
        "id": short_id(payload["id"]),
        "from": chat,
        "fromName": name,
        "body": body,
        "timestamp": seconds,
        "isGroup": is_group,
    }
    if name and not is_group:
        stored["chatName"] = (
            name  # a person's chat is named after them; a group's subject is not sent
        )
    stored.update({"type": kind, "hasMedia": has_media, "receivedAt": http.iso_z(at)})
    return InboundMessage(
        id=stored["id"],
        chat=chat,
        sender_name=name,
        text=body,
        is_group=is_group,
        media_kind="" if kind == "chat" else kind,
        received_at=at,
        stored=stored,
    )


def as_echo(payload: dict) -> Echo:
    """A message from this account (checked by `check_message`) as an Echo."""
    seconds = _unix_seconds(payload.get("timestamp"))
    body = payload.get("body")
    return Echo(
        gateway_id=short_id(payload["id"]),
        chat=_own_chat(payload),
        text=body if isinstance(body, str) else "",
        at=datetime.fromtimestamp(seconds, UTC) if seconds is not None else None,
    )


def _customer_chat(payload: dict) -> str:
    """Where a customer's message came from: the group, or the person, by number when the
    engine gives one beside a hidden (`@lid`) id (NOWEB `remoteJidAlt`, GOWS `SenderAlt`)."""
    return _by_number(payload, chat_id(payload["from"]), "SenderAlt")


def _own_chat(payload: dict) -> str:
    """The chat a message of ours went to. Its id names it (`true_<chat>_<id>`) whatever
    the engine; `from` is us on WEBJS and the chat on NOWEB."""
    parts = payload["id"].split("_")
    if len(parts) >= 3 and parts[0] == "true" and "@" in parts[1]:
        chat = parts[1]
    elif isinstance(payload.get("to"), str) and "@" in payload["to"]:
        chat = payload["to"]
    else:
        chat = payload["from"]
    return _by_number(payload, chat_id(chat), "RecipientAlt")


def _by_number(payload: dict, chat: str, gows_key: str) -> str:
    """`chat`, or the person's number when `chat` is a hidden (`@lid`) id and the engine
    gives the number beside it (NOWEB `key.remoteJidAlt`, GOWS `Info.<gows_key>`)."""
    if not chat.endswith("@lid"):
        return chat
    data = payload.get("_data") if isinstance(payload.get("_data"), dict) else {}
    key = data.get("key") if isinstance(data.get("key"), dict) else {}
    info = data.get("Info") if isinstance(data.get("Info"), dict) else {}
    return phone_chat(key.get("remoteJidAlt")) or phone_chat(info.get(gows_key)) or chat


def _sender_name(payload: dict) -> str:
    """The sender's own name: WEBJS `notifyName`, NOWEB `pushName`, GOWS `Info.PushName`."""
    data = payload.get("_data") if isinstance(payload.get("_data"), dict) else {}
    info = data.get("Info") if isinstance(data.get("Info"), dict) else {}
    for name in (data.get("notifyName"), data.get("pushName"), info.get("PushName")):
        if isinstance(name, str) and name:
            return name
    return ""


def _message_type(payload: dict) -> str:
    """The old watcher's `type`: "chat" for text, else the media kind ("image", "ptt" ...)."""
    data = payload.get("_data") if isinstance(payload.get("_data"), dict) else {}
    if isinstance(data.get("type"), str) and data["type"]:
        return data["type"]  # WEBJS: whatsapp-web.js's own type
    content = data.get("message") or data.get("Message")  # NOWEB, GOWS
    for _ in range(3):  # unwrap disappearing, view-once, captioned-document wrappers
        if not isinstance(content, dict):
            break
        inner = next(
            (content[w] for w in CONTENT_WRAPPERS if isinstance(content.get(w), dict)), None
        )
        if inner is None or not isinstance(inner.get("message"), dict):
            break
        content = inner["message"]
    if isinstance(content, dict):
        for key, kind in CONTENT_TYPES.items():
            if isinstance(content.get(key), dict | str):
                audio = content[key] if kind == "audio" and isinstance(content[key], dict) else {}
                return "ptt" if audio.get("ptt") is True or audio.get("PTT") is True else kind
    if isinstance(payload.get("location"), dict):
        return "location"
    if payload.get("hasMedia") is True:
        media = payload.get("media") if isinstance(payload.get("media"), dict) else {}
        mimetype = media.get("mimetype") if isinstance(media.get("mimetype"), str) else ""
        major = mimetype.partition("/")[0]
        return {"image": "image", "video": "video", "audio": "audio"}.get(
            major, "document" if mimetype else "unknown"
        )
    return "chat"


# --- small helpers --------------------------------------------------------------------------


def _signed_timestamp(body: bytes) -> float | None:
    """The signed body's own `timestamp` (ms); None when it has none to read (not strict
    JSON, or no number there): the body is then refused 400 naming the place by the
    endpoint's parser or by `parse_webhook`, which needs the timestamp too."""
    # Imported here: the settings import this package before the models are ready.
    from ..statefile.parse import StateFileError, parse_json

    try:
        data = parse_json(body)
    except StateFileError:
        return None
    stamp = data.get("timestamp") if isinstance(data, dict) else None
    return float(stamp) if _is_number(stamp) else None


def _event_time(value: object) -> datetime:
    """The envelope's `timestamp` (ms) as a time; WebhookRefused(400) when it is none."""
    try:
        if _is_number(value):
            return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        pass
    raise WebhookRefused(400, "timestamp: expected the event's time in milliseconds")


def _text_field(data: dict, key: str, prefix: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        what = "missing" if value is None else "expected a non-empty string"
        raise WebhookRefused(400, f"{prefix}{key}: {what}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unix_seconds(value: object) -> int | None:
    """A message's `timestamp`: unix seconds, a number or (NOWEB's longs) a string of digits."""
    if _is_number(value):
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _time_words(seconds: float) -> str:
    """A signed time as `iso_z` writes it, or the number itself when it is no time a
    calendar holds (a body may say anything)."""
    try:
        return http.iso_z(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s after 1970"
