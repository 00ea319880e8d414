"""What Meta posts to our webhook for the WhatsApp Business Cloud API (GATEWAY.md section 4).

- `challenge`: Meta's GET verification of the callback URL (`hub.verify_token`).
- `verify_webhook`: `X-Hub-Signature-256`, the hex HMAC-SHA256 of the raw body with
  the app secret. Meta signs no time: a replayed body is caught by its items'
  dedupe keys.
- `parse_webhook`: one item per thing a delivery says (a batch may hold several):
  customers' messages, the statuses of our sends (`sent` settles a maybe-sent,
  `failed` is a delivery failure, 131047 the closed 24-hour window), the business
  answering from the WhatsApp Business app (`smb_message_echoes`) and
  `account_update` (a ban, a restriction, a reinstatement).

The message id is the `wamid....` string here as in a send's answer, so they can be
matched. A Graph error in a status is put in words as the client puts a refused
send's (`cloud.error_words`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import http
from .cloud import WINDOW_CLOSED_CODE, WINDOW_CLOSED_TEXT, error_words
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

SIGNATURE_HEADER = "X-Hub-Signature-256"
OBJECT = "whatsapp_business_account"
# Message types that are not a customer writing to be answered.
_NOT_ANSWERED_TYPES = {
    "reaction": "a reaction",
    "system": "a system notice (the customer changed number)",
    "request_welcome": "the customer opened the chat (no message yet)",
    "ephemeral": "a disappearing-messages notice",
}
_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Keys that hold a secret wherever they appear in a body: never stored.
SECRET_KEYS = frozenset(
    {"apikey", "access_token", "app_secret", "verify_token", "hub.verify_token"}
)


# --- webhooks: GET verification and the signature -----------------------------------


def challenge(params: Mapping[str, str], *, verify_token: str) -> str:
    """The `hub.challenge` to echo when Meta verifies our callback URL, else WebhookRefused."""
    if not verify_token:
        raise WebhookRefused(403, "GATEWAY_VERIFY_TOKEN is not set: no verification is accepted")
    if params.get("hub.mode") != "subscribe":
        raise WebhookRefused(403, "hub.mode: expected 'subscribe'")
    given = params.get("hub.verify_token") or ""
    if not hmac.compare_digest(given.encode("utf-8"), verify_token.encode("utf-8")):
        raise WebhookRefused(403, "hub.verify_token: does not match GATEWAY_VERIFY_TOKEN")
    answer = params.get("hub.challenge") or ""
    # Meta's challenge is a number; only a short printable one is echoed back.
    if not re.fullmatch(r"[\x21-\x7e]{1,256}", answer):
        raise WebhookRefused(400, "hub.challenge: expected the short token Meta sends")
    return answer


def verify_webhook(headers: Mapping[str, str], body: bytes, *, secret: str, now: datetime) -> None:
    """Raise WebhookRefused(401) unless `X-Hub-Signature-256` is `sha256=` and the hex
    HMAC-SHA256 of the raw body with the app secret. Meta signs no time (`now` is not
    used): a replayed body is caught by its items' dedupe keys."""
    if not secret:
        raise WebhookRefused(401, "no app secret is set: no webhook is trusted")
    given = http.header(headers, SIGNATURE_HEADER)
    if given is None:
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: missing; Meta signs every webhook")
    scheme, _, signature = given.strip().partition("=")
    if scheme.lower() != "sha256" or not signature:
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: expected 'sha256=<hex>'")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.lower().encode("ascii", "replace"), expected.encode()):
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: does not match the body")


# --- webhooks: what a delivery says -------------------------------------------------------


def parse_webhook(data: object, *, settings: Any) -> list[WebhookItem]:
    """One item per thing a verified delivery says; WebhookRefused(400) names a bad place.

    Only changes for `GATEWAY_PHONE_NUMBER_ID` are used; another number's are IGNORED."""
    ours = str(getattr(settings, "GATEWAY_PHONE_NUMBER_ID", "") or "")
    body = _need(data, dict, "body", "a JSON object")
    kind = _need(body.get("object"), str, "object", "a string")
    if kind != OBJECT:
        return [
            _ignored(
                _digest("object", body), kind, f"an {kind[:40]!r} object, not WhatsApp's", body
            )
        ]
    items: list[WebhookItem] = []
    for i, entry in enumerate(_need(body.get("entry"), list, "entry", "a list")):
        place = f"entry[{i}]"
        entry = _need(entry, dict, place, "an object")
        for j, change in enumerate(_need(entry.get("changes"), list, f"{place}.changes", "a list")):
            items += _change(entry, change, f"{place}.changes[{j}]", ours)
    return items


def _change(entry: dict, change: object, place: str, ours: str) -> list[WebhookItem]:
    change = _need(change, dict, place, "an object")
    field = _need(change.get("field"), str, f"{place}.field", "a string")
    value = _need(change.get("value"), dict, f"{place}.value", "an object")
    where = {"entry": entry.get("id"), "time": entry.get("time"), "change": change}
    if field == "account_update":
        return [_account_update(value, f"{place}.value", _digest(field, where))]
    if field not in ("messages", "smb_message_echoes"):
        return [
            _ignored(_digest(field, where), field, f"the {field[:60]} field is not used", change)
        ]
    metadata = _need(value.get("metadata"), dict, f"{place}.value.metadata", "an object")
    number_id = _need(
        metadata.get("phone_number_id"), str, f"{place}.value.metadata.phone_number_id", "a string"
    )
    if number_id != ours:
        note = f"for another phone number id ({number_id[:30]})"
        return [_ignored(_digest(field, where), field, note, value)]
    if field == "smb_message_echoes":
        echoes = _optional_list(value, "message_echoes", f"{place}.value")
        return [
            _phone_answer(e, f"{place}.value.message_echoes[{k}]", metadata)
            for k, e in enumerate(echoes)
        ]
    return _messages(value, f"{place}.value", metadata, _digest(field, where))


def _messages(value: dict, place: str, metadata: dict, key: str) -> list[WebhookItem]:
    contacts = _optional_list(value, "contacts", place)
    for k, contact in enumerate(contacts):
        _contact_name(
            _need(contact, dict, f"{place}.contacts[{k}]", "an object"), f"{place}.contacts[{k}]"
        )
    items = [
        _message(m, f"{place}.messages[{k}]", contacts, metadata)
        for k, m in enumerate(_optional_list(value, "messages", place))
    ]
    items += [
        _status(s, f"{place}.statuses[{k}]", metadata)
        for k, s in enumerate(_optional_list(value, "statuses", place))
    ]
    errors = _optional_list(value, "errors", place)
    if errors:
        words = "; ".join(_webhook_error_words(e) for e in errors if isinstance(e, dict))
        items.append(_ignored(key, "errors", f"the Cloud API reported: {words}"[:300], value))
    if not items:
        items.append(_ignored(key, "messages", "nothing this dashboard uses", value))
    return items


def _message(m: object, place: str, contacts: list, metadata: dict) -> WebhookItem:
    m = _need(m, dict, place, "an object")
    wamid = _need_id(m.get("id"), f"{place}.id")
    kind = _need(m.get("type"), str, f"{place}.type", "a string")
    at = _timestamp(m.get("timestamp"), f"{place}.timestamp")
    phone = _optional_str(m, "from", place)
    user_id = _optional_str(m, "from_user_id", place)
    group_id = _optional_str(m, "group_id", place)
    if not phone and not user_id:
        raise WebhookRefused(400, f"{place}.from: missing (neither a number nor from_user_id)")
    contact = _contact_of(contacts, phone, user_id)
    payload = http.without_secrets(
        {"metadata": metadata, "contacts": [contact] if contact else [], "messages": [m]},
        SECRET_KEYS,
    )
    if kind in _NOT_ANSWERED_TYPES:
        return _ignored(
            wamid, "messages", f"{_NOT_ANSWERED_TYPES[kind]}: nothing to answer", payload
        )
    name = _contact_name(contact, place) if contact else ""
    body, shown_type, has_media = _content(m, kind, place)
    chat = f"{group_id}@g.us" if group_id else _person(phone, user_id, f"{place}.from")
    stored: dict[str, Any] = {
        "id": wamid,
        "from": chat,
        "fromName": name,
        "body": body,
        "timestamp": int(at.timestamp()),
        "isGroup": bool(group_id),
    }
    if name and not group_id:
        stored["chatName"] = name
    stored.update(type=shown_type, hasMedia=has_media, receivedAt=http.iso_z(at))
    inbound = InboundMessage(
        id=wamid,
        chat=chat,
        sender_name=name,
        text=body,
        is_group=bool(group_id),
        media_kind=shown_type if has_media else "",
        received_at=at,
        stored=stored,
    )
    return WebhookItem(EventKind.MESSAGE, wamid, "messages", message=inbound, payload=payload)


def _content(m: dict, kind: str, place: str) -> tuple[str, str, bool]:
    """(body, the old watcher's `type`, has media) of one message."""
    if kind == "text":
        text = _need(m.get("text"), dict, f"{place}.text", "an object")
        return _need(text.get("body"), str, f"{place}.text.body", "a string"), "chat", False
    if kind in _MEDIA_TYPES:
        media = _need(m.get(kind), dict, f"{place}.{kind}", "an object")
        caption = _optional_str(media, "caption", f"{place}.{kind}")
        voice = media.get("voice")
        if voice is not None and not isinstance(voice, bool):
            raise WebhookRefused(400, f"{place}.{kind}.voice: expected true or false")
        shown = "ptt" if kind == "audio" and voice else kind
        return caption, shown, True
    if kind == "interactive":
        answer = _need(m.get("interactive"), dict, f"{place}.interactive", "an object")
        chosen = answer.get("button_reply") or answer.get("list_reply")
        title = chosen.get("title") if isinstance(chosen, dict) else None
        shown = "list_response" if "list_reply" in answer else "buttons_response"
        return (title if isinstance(title, str) else ""), shown, False
    if kind == "button":
        button = _need(m.get("button"), dict, f"{place}.button", "an object")
        return (
            _need(button.get("text"), str, f"{place}.button.text", "a string"),
            "buttons_response",
            False,
        )
    if kind == "contacts":
        cards = _need(m.get("contacts"), list, f"{place}.contacts", "a list")
        return "", "multi_vcard" if len(cards) > 1 else "vcard", False
    if kind == "order":
        order = _need(m.get("order"), dict, f"{place}.order", "an object")
        return _optional_str(order, "text", f"{place}.order"), "order", False
    if kind == "unsupported":
        return "", "unknown", False
    return "", kind[:40], False  # location and kinds added later: no text to show


def _status(s: object, place: str, metadata: dict) -> WebhookItem:
    s = _need(s, dict, place, "an object")
    wamid = _need_id(s.get("id"), f"{place}.id")
    state = _need(s.get("status"), str, f"{place}.status", "a string")
    at = _timestamp(s.get("timestamp"), f"{place}.timestamp")
    reply_id = _optional_str(s, "biz_opaque_callback_data", place)
    recipient = _optional_str(s, "recipient_id", place)
    user_id = _optional_str(s, "recipient_user_id", place)
    if s.get("recipient_type") == "group" and recipient:
        chat = f"{recipient}@g.us"
    else:
        chat = _person(recipient, user_id, f"{place}.recipient_id") if recipient or user_id else ""
    key, payload = (
        f"{wamid}:{state}",
        http.without_secrets({"metadata": metadata, "statuses": [s]}, SECRET_KEYS),
    )
    if state == "sent":
        echo = Echo(gateway_id=wamid, chat=chat, text="", at=at, reply_id=reply_id)
        return WebhookItem(EventKind.ECHO, key, "statuses", echo=echo, payload=payload)
    if state == "failed":
        errors = _optional_list(s, "errors", place)
        first = _need(errors[0], dict, f"{place}.errors[0]", "an object") if errors else {}
        code = first.get("code")
        if first and (not isinstance(code, int) or isinstance(code, bool)):
            raise WebhookRefused(400, f"{place}.errors[0].code: expected a number")
        words = (
            _failure_words(first) if first else "WhatsApp could not deliver it (no reason given)"
        )
        failure = DeliveryFailure(
            gateway_id=wamid, error=words, code=str(code) if first else "", reply_id=reply_id
        )
        return WebhookItem(
            EventKind.DELIVERY_FAILED, key, "statuses", failure=failure, payload=payload
        )
    if state in ("delivered", "read", "played"):
        return WebhookItem(EventKind.DELIVERED, key, "statuses", payload=payload, note=state)
    return _ignored(key, "statuses", f"a {state[:30]!r} status is not used", payload)


def _phone_answer(e: object, place: str, metadata: dict) -> WebhookItem:
    """The business answered from the WhatsApp Business app (or a linked device)."""
    e = _need(e, dict, place, "an object")
    wamid = _need_id(e.get("id"), f"{place}.id")
    kind = _need(e.get("type"), str, f"{place}.type", "a string")
    at = _timestamp(e.get("timestamp"), f"{place}.timestamp")
    to = _optional_str(e, "to", place)
    user_id = _optional_str(e, "to_user_id", place)
    if not to and not user_id:
        raise WebhookRefused(400, f"{place}.to: missing (neither a number nor to_user_id)")
    body, shown_type, has_media = _content(e, kind, place)
    inbound = InboundMessage(
        id=wamid,
        chat=_person(to, user_id, f"{place}.to"),
        text=body,
        from_me=True,
        media_kind=shown_type if has_media else "",
        received_at=at,
    )
    payload = http.without_secrets({"metadata": metadata, "message_echoes": [e]}, SECRET_KEYS)
    return WebhookItem(
        EventKind.FROM_PHONE, wamid, "smb_message_echoes", message=inbound, payload=payload
    )


def _account_update(value: dict, place: str, key: str) -> WebhookItem:
    """WhatsApp banned, restricted or reinstated the business account."""
    event = _need(value.get("event"), str, f"{place}.event", "a string")
    ban = value.get("ban_info")
    ban_state = ban.get("waba_ban_state") if isinstance(ban, dict) else None
    restrictions = value.get("restriction_info")
    kinds = [
        r.get("restriction_type")
        for r in (restrictions if isinstance(restrictions, list) else [])
        if isinstance(r, dict)
    ]
    code = f"{event}:{ban_state}" if isinstance(ban_state, str) else event
    status = None
    if ban_state == "DISABLE" or event in ("ACCOUNT_DELETED", "PARTNER_REMOVED"):
        status = Status(
            State.FAILED, "WhatsApp disabled this business account: no reply can go", code=code
        )
    elif ban_state == "REINSTATE":
        status = Status(State.READY, "WhatsApp reinstated the business account", code=code)
    elif event == "ACCOUNT_RESTRICTION" and "RESTRICTED_CUSTOMER_INITIATED_MESSAGING" in kinds:
        status = Status(
            State.FAILED,
            "WhatsApp restricted this business account: it cannot answer customers",
            code=code,
        )
    payload = http.without_secrets(value, SECRET_KEYS)
    if status is None:
        return _ignored(
            key, "account_update", f"account update {code[:60]}: replies can still go", payload
        )
    return WebhookItem(EventKind.SESSION, key, "account_update", status=status, payload=payload)


def _contact_of(contacts: list, phone: str, user_id: str) -> dict | None:
    for contact in contacts:
        if (phone and contact.get("wa_id") == phone) or (
            user_id and contact.get("user_id") == user_id
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def _contact_name(contact: dict, place: str) -> str:
    profile = contact.get("profile")
    if profile is None:
        return ""
    profile = _need(profile, dict, f"{place}.profile", "an object")
    return _optional_str(profile, "name", f"{place}.profile")


def _person(phone: str, user_id: str, place: str) -> str:
    """The chat of one person: the phone number when known, else the hidden id (`@lid`)."""
    if phone:
        digits = re.sub(r"\D", "", phone)
        if not digits:
            raise WebhookRefused(400, f"{place}: expected a phone number (digits)")
        return f"{digits}@c.us"
    return f"{user_id}@lid"


def _failure_words(error: dict) -> str:
    if error.get("code") == WINDOW_CLOSED_CODE:
        return WINDOW_CLOSED_TEXT
    return f"WhatsApp could not deliver it: {_webhook_error_words(error)}"


def _webhook_error_words(error: dict) -> str:
    """A webhook's `errors[]` item: `{"code", "title", "message", "error_data": {"details"}}`."""
    error_data = error.get("error_data")
    flattened = {
        "code": error.get("code") if isinstance(error.get("code"), int) else None,
        "message": error.get("title") or error.get("message") or "",
        "details": error_data.get("details") if isinstance(error_data, dict) else "",
    }
    return error_words(flattened)


def _ignored(key: str, event: str, note: str, payload: dict) -> WebhookItem:
    return WebhookItem(
        EventKind.IGNORED,
        key,
        event[:60],
        payload=http.without_secrets(payload, SECRET_KEYS),
        note=note,
    )


def _digest(prefix: str, what: object) -> str:
    """A dedupe key for what has no id of its own: the same delivery, the same key."""
    text = json.dumps(what, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{prefix[:60]}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


# --- reading a body strictly ------------------------------------------------------------

_TYPES = {dict: "object", list: "list", str: "string"}


def _need(value: object, kind: type, place: str, what: str) -> Any:
    if value is None:
        raise WebhookRefused(400, f"{place}: missing; expected {what}")
    if not isinstance(value, kind):
        raise WebhookRefused(400, f"{place}: expected {what}, got {_type_name(value)}")
    return value


def _need_id(value: object, place: str) -> str:
    found = _need(value, str, place, "the message id (a string)")
    if not found.strip():
        raise WebhookRefused(400, f"{place}: empty; expected the message id")
    return found


def _optional_str(parent: dict, key: str, place: str) -> str:
    value = parent.get(key)
    if value is None:
        return ""
    return _need(value, str, f"{place}.{key}", "a string")


def _optional_list(parent: dict, key: str, place: str) -> list:
    value = parent.get(key)
    if value is None:
        return []
    return _need(value, list, f"{place}.{key}", "a list")


def _timestamp(value: object, place: str) -> datetime:
    """Meta's `timestamp`: unix seconds as a string of digits."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    text = _need(text, str, place, "unix seconds as a string")
    if not re.fullmatch(r"\d{1,11}", text):
        raise WebhookRefused(400, f"{place}: expected unix seconds, got {text[:30]!r}")
    return datetime.fromtimestamp(int(text), UTC)


def _type_name(value: object) -> str:
    if value is True or value is False:
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return _TYPES.get(type(value), type(value).__name__)
