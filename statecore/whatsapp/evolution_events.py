"""What Evolution API says about messages and sessions, and the webhooks it posts
(GATEWAY.md section 3).

- Its words in the common model: a state (`session_status`, `qr_status`), one of its
  messages (`message_parts`, then `as_inbound` or `as_echo`), a chat's address
  (`chat_key`). Its webhooks and findMessages carry the same message records, so the
  client's read-back and backfill use these too.
- Its webhooks: `verify_webhook` (the Bearer JWT below) and `parse_webhook` (one
  item per delivery, keyed by the message id, or by the time and a hash of what it
  says when it has none).

Webhooks carry no signature of the body. A per-instance webhook whose
`headers` hold a `jwt_key` makes Evolution send `Authorization: Bearer <JWT>`
(HS256 with that key, claims `iat`, `exp` = iat + 600, `app: "evolution"`,
`action: "webhook"`): that token is all `verify_webhook` can check. It does not
cover the body, so within its ten minutes a captured token would pass with
another body: only TLS keeps the body intact on the way.

No HTTP here: the client (`evolution.py`) calls Evolution and imports what it needs
from this.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from . import http
from .model import (
    DeliveryFailure,
    Echo,
    EventKind,
    InboundMessage,
    State,
    Status,
    WebhookItem,
    WebhookRefused,
)

# A webhook's Bearer token: Evolution signs it with the `jwt_key` header of the webhook.
JWT_KEY_HEADER = "jwt_key"
# Our clock and Evolution's may disagree this much when a token's expiry is checked.
JWT_CLOCK_SKEW = timedelta(seconds=30)
# Keys whose value is a secret wherever they sit in a body: the instance token Evolution
# puts in every webhook (`apikey`), the global key of its error webhook (`api_key`).
SECRET_KEYS = frozenset({"apikey", "api_key", "jwt_key"})
# Longer than any WhatsApp message id: refused in a webhook rather than stored.
MAX_ID_LENGTH = 200
# Baileys' DisconnectReason codes Evolution reports when it will not reconnect.
LOGGED_OUT, FORBIDDEN = 401, 403
# messageType -> the old watcher's `type` (whatsapp-web.js's names).
MESSAGE_TYPES = {
    "conversation": "chat",
    "extendedTextMessage": "chat",
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",  # "ptt" when it is a voice note (its `ptt` flag)
    "documentMessage": "document",
    "documentWithCaptionMessage": "document",
    "stickerMessage": "sticker",
    "locationMessage": "location",
    "liveLocationMessage": "location",
    "contactMessage": "vcard",
    "contactsArrayMessage": "multi_vcard",
    "pollCreationMessage": "poll_creation",
    "pollCreationMessageV3": "poll_creation",
}
MEDIA_TYPES = frozenset({"image", "video", "audio", "ptt", "document", "sticker"})
# Not a message to answer: a reaction to one, or a change to one.
NOT_MESSAGES = {
    "reactionMessage": "a reaction to a message",
    "protocolMessage": "a change to a message (deleted or edited)",
    "editedMessage": "an edit of a message",
    "pollUpdateMessage": "a vote in a poll",
}


# --- the session in the common model ----------------------------------------------------

_LINK = "link it again (a QR code or a pairing code)"


def session_status(state: str, *, reason: int | None = None, reconnecting: bool = False) -> Status:
    """What one of Evolution's states means (connectionState, `connection.update`).
    `reason` is its `statusReason` / `disconnectionReasonCode` (Baileys' codes)."""
    if state == "open":
        return Status(State.READY, "WhatsApp is linked and connected", code="open")
    if state == "connecting":
        why = (
            "Evolution is reconnecting to WhatsApp with the stored login"
            if reconnecting
            else "Evolution is connecting to WhatsApp"
        )
        return Status(State.STARTING, why, code="connecting")
    if state == "refused":
        return Status(
            State.FAILED,
            f"no one scanned the QR code in time and Evolution stopped trying: {_LINK}",
            code="refused",
            logged_out=True,
        )
    if state != "close":
        return Status(
            State.UNKNOWN,
            f"Evolution reports a state this dashboard does not know: {state[:50]!r}",
            code=state[:50],
        )
    # Evolution leaves `close` only when asked to connect: a new link is needed.
    code = "close" if reason is None else f"close {reason}"
    if reason == LOGGED_OUT:
        why = f"WhatsApp was logged out (on the phone, or the link was removed): {_LINK}"
    elif reason == FORBIDDEN:
        return Status(
            State.FAILED,
            "WhatsApp refused this login (403): the number may be banned or restricted",
            code=code,
            logged_out=True,
        )
    elif reason is not None:
        why = f"WhatsApp ended the session (code {reason}) and Evolution will not reconnect by itself: {_LINK}"
    else:
        why = f"WhatsApp is not connected and Evolution will not reconnect by itself: {_LINK}"
    return Status(State.DISCONNECTED, why, code=code, logged_out=True)


def qr_status(qr: str, pairing_code: str = "", *, code: str) -> Status:
    """Waiting for a link: the QR to scan, or the pairing code to enter."""
    if pairing_code:
        return Status(
            State.NEEDS_PAIRING,
            "WhatsApp is not linked: enter the pairing code on the shop's phone "
            "(WhatsApp > Linked devices > Link a device > Link with phone number instead)",
            code=code,
            qr=qr,
            pairing_code=pairing_code,
            logged_out=True,
        )
    return Status(
        State.NEEDS_QR,
        "WhatsApp is not linked: scan the QR code with the shop's phone "
        "(WhatsApp > Linked devices > Link a device)",
        code=code,
        qr=qr,
        logged_out=True,
    )


# --- webhooks: the JWT ------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def verify_webhook(headers: Mapping[str, str], body: bytes, *, secret: str, now: datetime) -> None:
    """Raise WebhookRefused(401) unless `Authorization` holds Evolution's token signed
    with `secret` (HS256 only; `exp` checked with JWT_CLOCK_SKEW of slack). The token
    does not cover `body` (see the module's docstring)."""
    value = http.header(headers, "Authorization")
    if not value:
        raise WebhookRefused(
            401,
            "Authorization: missing; Evolution sends a Bearer token when its webhook's "
            f"headers hold a {JWT_KEY_HEADER} (run setup_gateway_webhook)",
        )
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise WebhookRefused(401, "Authorization: expected 'Bearer <JWT>'")
    header_part, claims_part, signature = token.split(".")
    header = _jwt_json(header_part, "header")
    if header.get("alg") != "HS256":
        raise WebhookRefused(
            401,
            f"Authorization: the token's alg is {str(header.get('alg'))[:20]!r}; only HS256 is accepted",
        )
    if not secret:
        raise WebhookRefused(401, "no webhook secret is set: no token is trusted")
    expected = _b64url(
        hmac.new(
            secret.encode(), f"{header_part}.{claims_part}".encode("ascii"), hashlib.sha256
        ).digest()
    )
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise WebhookRefused(401, "Authorization: the token is not signed with our webhook secret")
    claims = _jwt_json(claims_part, "claims")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _is_number(exp):
        raise WebhookRefused(401, "Authorization: the token has no expiry (exp)")
    slack = JWT_CLOCK_SKEW.total_seconds()
    if now.timestamp() > exp + slack:
        raise WebhookRefused(
            401,
            f"Authorization: the token expired at {datetime.fromtimestamp(exp, UTC):%Y-%m-%d %H:%M:%S} UTC",
        )
    if _is_number(iat) and iat > now.timestamp() + slack:
        raise WebhookRefused(401, "Authorization: the token was issued in the future")
    if claims.get("app") != "evolution" or claims.get("action") != "webhook":
        raise WebhookRefused(401, "Authorization: not Evolution's webhook token (app, action)")


def _jwt_json(part: str, name: str) -> dict:
    try:
        value = json.loads(_b64url_decode(part), parse_constant=_refuse_constant)
    except (ValueError, binascii.Error):
        value = None
    if not isinstance(value, dict):
        raise WebhookRefused(401, f"Authorization: the token's {name} is not a JSON object")
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e11


# --- webhooks: the body -----------------------------------------------------------------


def parse_webhook(data: object, *, settings: Any) -> list[WebhookItem]:
    """The one item an Evolution delivery holds. WebhookRefused(400) names the place
    of a field we need that is missing or mistyped; an event we do not use, or one
    of another instance, is IGNORED."""
    if not isinstance(data, dict):
        raise WebhookRefused(400, "body: expected a JSON object (Evolution's event)")
    event = _get(data, "event", "", "a non-empty string")
    instance = _get(data, "instance", "", "a string")
    _get(data, "date_time", "", "a non-empty string")
    payload = http.without_secrets(data, SECRET_KEYS)
    ours = settings.GATEWAY_SESSION
    if instance != ours:
        return [
            _ignored(
                event, data, payload, f"an event of the instance {instance[:60]!r}, not {ours!r}"
            )
        ]
    parse = _EVENTS.get(event)
    if parse is None:
        return [_ignored(event, data, payload, f"{event[:60]} is not an event this dashboard uses")]
    return [parse(event, data, payload)]


def _message_event(event: str, data: dict, payload: dict) -> WebhookItem:
    parts = message_parts(_get(data, "data", "", "an object"), "data")
    key = f"{event}:{parts['id']}"
    if parts["not_a_message"]:
        return WebhookItem(
            EventKind.IGNORED, key, event, payload=payload, note=parts["not_a_message"]
        )
    if not parts["from_me"]:
        return WebhookItem(
            EventKind.MESSAGE, key, event, message=as_inbound(parts), payload=payload
        )
    if parts["chat"].endswith("@broadcast"):
        return WebhookItem(
            EventKind.IGNORED, key, event, payload=payload, note="the shop's own Status update"
        )
    # The same message, ours: part of the conversation, never stored as a customer's.
    answer = dataclasses.replace(as_inbound(parts), from_me=True, stored={})
    return WebhookItem(EventKind.FROM_PHONE, key, event, message=answer, payload=payload)


def _send_event(event: str, data: dict, payload: dict) -> WebhookItem:
    parts = message_parts(_get(data, "data", "", "an object"), "data")
    return WebhookItem(
        EventKind.ECHO, f"{event}:{parts['id']}", event, echo=as_echo(parts), payload=payload
    )


def _status_event(event: str, data: dict, payload: dict) -> WebhookItem:
    body = _get(data, "data", "", "an object")
    message_id = _get(body, "keyId", "data", "a non-empty string")
    status = _get(body, "status", "data", "a non-empty string")
    from_me = _get(body, "fromMe", "data", "true or false")
    _check_id(message_id, "data.keyId")
    key = f"{event}:{message_id}:{status}"
    if not from_me:
        return WebhookItem(
            EventKind.IGNORED, key, event, payload=payload, note="a status of a customer's message"
        )
    if status == "ERROR":
        failure = DeliveryFailure(
            gateway_id=message_id,
            error="WhatsApp could not deliver it (Evolution reported the status ERROR)",
            code="ERROR",
        )
        return WebhookItem(EventKind.DELIVERY_FAILED, key, event, failure=failure, payload=payload)
    return WebhookItem(
        EventKind.DELIVERED, key, event, payload=payload, note=f"status {status[:30]}"
    )


def _connection_event(event: str, data: dict, payload: dict) -> WebhookItem:
    body = _get(data, "data", "", "an object")
    state = _get(body, "state", "data", "a non-empty string")
    reason = body.get("statusReason")
    if reason is not None and not (isinstance(reason, int) and not isinstance(reason, bool)):
        raise WebhookRefused(
            400, f"data.statusReason: expected a whole number, got {_json_type(reason)}"
        )
    status = session_status(state, reason=reason if state == "close" else None)
    return WebhookItem(
        EventKind.SESSION,
        f"{event}:{data['date_time']}:{state[:30]}",
        event,
        status=status,
        payload=payload,
    )


def _qrcode_event(event: str, data: dict, payload: dict) -> WebhookItem:
    body = _get(data, "data", "", "an object")
    key = f"{event}:{data['date_time']}:{_short_hash(body)}"
    if "qrcode" not in body and isinstance(body.get("message"), str):
        # "QR code limit reached, please login again", just before `refused`.
        status = Status(
            State.FAILED,
            f"no one scanned the QR code in time and Evolution stopped trying: {_LINK}",
            code=body["message"][:100],
            logged_out=True,
        )
        return WebhookItem(EventKind.SESSION, key, event, status=status, payload=payload)
    qrcode = _get(body, "qrcode", "data", "an object")
    qr = _get(qrcode, "code", "data.qrcode", "a non-empty string")
    pairing = qrcode.get("pairingCode")
    if pairing is not None and not isinstance(pairing, str):
        raise WebhookRefused(
            400, f"data.qrcode.pairingCode: expected a string or null, got {_json_type(pairing)}"
        )
    status = qr_status(qr, pairing or "", code=event)
    return WebhookItem(EventKind.SESSION, key, event, status=status, payload=payload)


_EVENTS = {
    "messages.upsert": _message_event,
    "send.message": _send_event,
    "messages.update": _status_event,
    "connection.update": _connection_event,
    "qrcode.updated": _qrcode_event,
}


def _ignored(event: str, data: dict, payload: dict, note: str) -> WebhookItem:
    # No id of its own: the time Evolution stamped and what it says (a retry repeats both).
    key = f"{event[:60]}:{str(data.get('date_time'))[:40]}:{_short_hash(data.get('data'))}"
    return WebhookItem(EventKind.IGNORED, key, event, payload=payload, note=note)


def _short_hash(value: object) -> str:
    text = json.dumps(
        http.without_secrets(value, SECRET_KEYS),
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# --- a message (a webhook's `data`, a findMessages record) --------------------------------


def message_parts(data: object, place: str) -> dict[str, Any]:
    """The fields of one of Evolution's messages, checked; WebhookRefused(400) names
    the place of a missing or mistyped one."""
    if not isinstance(data, dict):
        raise WebhookRefused(400, f"{place}: expected an object, got {_json_type(data)}")
    key = _get(data, "key", place, "an object")
    remote = _get(key, "remoteJid", f"{place}.key", "a non-empty string")
    message_id = _get(key, "id", f"{place}.key", "a non-empty string")
    _check_id(message_id, f"{place}.key.id")
    from_me = _get(key, "fromMe", f"{place}.key", "true or false")
    alt = _optional_str(key, "remoteJidAlt", f"{place}.key") or _optional_str(
        key, "senderPn", f"{place}.key"
    )
    content = _get(data, "message", place, "an object")
    message_type = _get(data, "messageType", place, "a string")
    seconds = _timestamp(_get(data, "messageTimestamp", place, "unix seconds"))
    name = _optional_str(data, "pushName", place)
    kind = MESSAGE_TYPES.get(message_type, message_type or "unknown")
    if kind == "audio" and http.json_at(content, "audioMessage", "ptt") is True:
        kind = "ptt"
    at = datetime.fromtimestamp(seconds, UTC)
    chat = _address(remote, alt)
    return {
        "id": message_id,
        "chat": chat,
        # Every form the chat goes by here: a `@lid` id and the number behind it.
        "chats": {_normal(remote), *([_normal(alt)] if alt else [])},
        "from_me": from_me,
        "name": name,
        "text": _text(content),
        "type": kind,
        "media_kind": kind if kind in MEDIA_TYPES else "",
        "is_group": remote.endswith("@g.us"),
        "timestamp": seconds,
        "at": at,
        "not_a_message": NOT_MESSAGES.get(message_type, ""),
    }


def as_inbound(parts: dict[str, Any]) -> InboundMessage:
    # The old watcher's keys, in its order: what is stored for a customer's message.
    stored = {
        "id": parts["id"],
        "from": parts["chat"],
        "fromName": parts["name"],
        "body": parts["text"],
        "timestamp": parts["timestamp"],
        "isGroup": parts["is_group"],
        # A person's chat goes by their name; a group's subject is not in the event.
        **({} if parts["is_group"] else {"chatName": parts["name"]}),
        "type": parts["type"],
        "hasMedia": bool(parts["media_kind"]),
        "receivedAt": http.iso_z(parts["at"]),
    }
    return InboundMessage(
        id=parts["id"],
        chat=parts["chat"],
        sender_name=parts["name"],
        text=parts["text"],
        is_group=parts["is_group"],
        media_kind=parts["media_kind"],
        received_at=parts["at"],
        stored=stored,
    )


def as_echo(parts: dict[str, Any]) -> Echo:
    return Echo(gateway_id=parts["id"], chat=parts["chat"], text=parts["text"], at=parts["at"])


def _text(content: dict) -> str:
    """The text of a message: its body, or a media's caption ("" for media without one)."""
    for path in (
        ("conversation",),
        ("extendedTextMessage", "text"),
        ("imageMessage", "caption"),
        ("videoMessage", "caption"),
        ("documentMessage", "caption"),
        ("documentWithCaptionMessage", "message", "documentMessage", "caption"),
    ):
        text = http.json_at(content, *path)
        if isinstance(text, str) and text:
            return text
    return ""


def _address(jid: str, alt: str) -> str:
    """The chat to reply to, on the old watcher's form: `<digits>@c.us` for a person
    (the number rather than a `@lid` id when the event gives both), a group's or a
    hidden contact's id as it is."""
    if jid.endswith("@lid") and alt and _normal(alt).endswith("@c.us"):
        return _normal(alt)
    return _normal(jid)


def _normal(jid: str) -> str:
    user, _, domain = jid.rpartition("@")
    if domain in ("s.whatsapp.net", "c.us"):
        return f"{user}@c.us"
    return jid


def chat_key(address: str) -> str:
    """An address as `_address` writes it: bare digits and `@s.whatsapp.net` as `@c.us`."""
    if "@" not in address:
        return re.sub(r"\D", "", address) + "@c.us"
    return _normal(address)


# --- small helpers ------------------------------------------------------------------


_EXPECTED = {
    "a string": lambda v: isinstance(v, str),
    "a non-empty string": lambda v: isinstance(v, str) and bool(v),
    "an object": lambda v: isinstance(v, dict),
    "true or false": lambda v: isinstance(v, bool),
    # Unix seconds: a number (v2), or its digits as a string (v1's answers).
    "unix seconds": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1e11)
        or (isinstance(v, str) and v.isdigit() and len(v) <= 11)
    ),
}


def _get(obj: dict, key: str, place: str, expected: str) -> Any:
    path = f"{place}.{key}" if place else key
    if key not in obj:
        raise WebhookRefused(400, f"{path}: missing ({expected} expected)")
    value = obj[key]
    if not _EXPECTED[expected](value):
        raise WebhookRefused(400, f"{path}: expected {expected}, got {_json_type(value)}")
    return value


def _optional_str(obj: dict, key: str, place: str) -> str:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise WebhookRefused(
            400, f"{place}.{key}: expected a string or null, got {_json_type(value)}"
        )
    return value or ""


def _check_id(message_id: str, place: str) -> None:
    if len(message_id) > MAX_ID_LENGTH:
        raise WebhookRefused(400, f"{place}: over {MAX_ID_LENGTH} characters")


def _timestamp(value: int | str) -> int:
    return int(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        dict: "an object",
        list: "a list",
    }.get(type(value), type(value).__name__)
