"""A stand-in for the Evolution API (v2.3, Baileys): it speaks its API, sends nothing.

Run it on a machine without a real Evolution::

    python -m statecore.whatsapp.standin_evolution --port 8080 --api-key K \\
        --webhook-url http://127.0.0.1:8000/gateway/webhook --webhook-secret S [--show-qr]

Without ``--api-key`` and ``--webhook-secret`` it reads ``GATEWAY_API_KEY`` and
``GATEWAY_WEBHOOK_SECRET`` from its environment, so no secret need stand on a
command line (``ps`` shows those to anyone on the machine).

Every route the adapter uses answers as Evolution's own code does (read in
EvolutionAPI/evolution-api: its routers, guards, controllers, its error
handler's `{"status", "error", "response": {"message"}}`): the instance check
before the `apikey` check, status codes and bodies included. Its webhooks are
posted as Evolution posts them (the envelope with `apikey`, `Authorization:
Bearer <JWT>` from the webhook's `jwt_key` header, only the events enabled in
the instance's webhook), once each (Evolution retries; this does not). Every
send is printed, labelled STAND-IN, and nothing reaches WhatsApp. A person
steers it from the control page at ``/_standin/``; tests steer the same class
(``tests/fake_evolution.py``), so the stand-in and the tests cannot drift apart. The
server itself (its life, send modes, records, webhook posting, control page plumbing) is
``standin_server``'s, shared by every stand-in.

What a send mode means for ``SendCall.delivered`` (would a customer have got it?):

- ``"ok"``: 201 with the message, delivered while the session is ``open``;
  otherwise Evolution's number check meets the closed connection first: a 500
  "Connection Closed", nothing delivered.
- delivered, the answer lost or useless: ``"closed_after_send"`` (400
  "Error: Connection Closed" thrown after the message went out: Evolution's save
  failed, so no echo and nothing stored for read-back), ``"hang"`` (no answer
  until released or stopped) and ``"drop"`` (the connection closed without an
  answer). Both of these finished on Evolution's side: echoed (per
  ``echo_mode``) and stored.
- not delivered: ``"not_on_whatsapp"`` (400 ``exists: false``), ``"schema"``
  (400 naming a property), ``"closed_before_send"`` (the same 400 as
  ``closed_after_send``: the adapter cannot tell them apart), ``"unauthorized"``
  (401), ``"no_instance"`` (404), ``"error500"`` (Evolution's own 500: it is
  thrown before its send, by the number check) and ``"down"`` (the port stops
  listening: connection refused).

``echo_mode``: ``"before_answer"`` (default: the ``send.message`` webhook of our
own send is posted, and answered, before the send's HTTP answer, as Evolution
emits it inside the request), ``"after_answer"`` or ``"never"``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import html
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import segno

from .standin_server import (
    ECHO_MODES,
    StandinHandler,
    WebhookStandin,
    add_show_qr,
    add_webhook_options,
    bullets,
    check,
    checkbox,
    command_line,
    counted,
    iso_z,
    js_json,
    knob,
    new_inbound_id,
    new_qr_string,
    page,
    post,
    select,
    send_mode_form,
    serve,
    table,
    text_field,
    webhook_standin_options,
    yes_no,
)

SEND_MODES = (
    "ok",
    "not_on_whatsapp",
    "schema",
    "closed_after_send",
    "closed_before_send",
    "unauthorized",
    "no_instance",
    "error500",
    "hang",
    "drop",
    "down",
)
# Modes that deliver whatever the session (see the docstring); "ok" delivers while open.
DELIVERING_MODES = ("closed_after_send", "hang", "drop")
# How another route can be told to fail instead of answering.
FAILURE_MODES = ("error500", "garbage", "hang", "drop")
ROUTES = (
    "connection_state",
    "connect",
    "fetch_instances",
    "restart",
    "logout",
    "send_text",
    "find_messages",
    "set_webhook",
    "find_webhook",
)
STATES = ("open", "connecting", "close")
MEDIA_KINDS = ("image", "ptt", "audio", "video", "document", "sticker", "location")
# Evolution's event names as /webhook/set takes them (EventController.events).
EVENTS = (
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
)
# What a webhook set up for this dashboard listens to (the adapter's WEBHOOK_EVENTS).
DEFAULT_EVENTS = (
    "MESSAGES_UPSERT",
    "SEND_MESSAGE",
    "MESSAGES_UPDATE",
    "CONNECTION_UPDATE",
    "QRCODE_UPDATED",
)
DEFAULT_OWNER = "923009876543"
DEFAULT_OWNER_NAME = "Stand-in shop"
DEFAULT_CUSTOMER = "923001234567"
DEFAULT_CUSTOMER_NAME = "Ayesha Khan"
VERSION = "2.3.6"
SERVER_URL = "http://localhost:8080"
# Baileys' codes: DisconnectReason.loggedOut, .badSession, .connectionClosed.
LOGGED_OUT, BAD_SESSION, CONNECTION_CLOSED = 401, 500, 428
QR_LIMIT_MESSAGE = "QR code limit reached, please login again"
CONNECTION_CLOSED_ERROR = "Error: Connection Closed"
# axios's own headers on every webhook Evolution posts.
AXIOS_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "Content-Type": "application/json",
    "User-Agent": "axios/1.7.9",
}


@dataclass(frozen=True)
class SendCall:
    """One /message/sendText that got past the checks, whatever it answered.

    ``gateway_id`` is the ``key.id`` WhatsApp would hold for it: set when
    ``delivered``, even when the caller never saw it (a hang, a drop), else None."""

    number: str  # as the request gave it
    text: str
    chat: str  # the jid Evolution sends to
    mode: str
    gateway_id: str | None
    delivered: bool


@dataclass(frozen=True)
class WebhookPost:
    """One webhook the stand-in posted (or lost on purpose, `lose_webhooks`)."""

    event: str
    url: str
    status: int | None  # the receiver's HTTP status; None: no answer (or lost)
    lost: bool = False


# -- what Evolution posts: JWTs, envelopes, event bodies --------------------------------


def jwt_token(
    secret: str,
    *,
    now: float | None = None,
    lifetime: int = 600,
    alg: str = "HS256",
    claims: dict[str, Any] | None = None,
) -> str:
    """The token Evolution puts in `Authorization: Bearer` (jsonwebtoken's HS256, claims
    iat, exp = iat + 600, app, action). `alg` "none" or "HS512" and `claims` make the
    wrong ones a test needs."""
    iat = int(time.time() if now is None else now)
    payload = {"iat": iat, "exp": iat + lifetime, "app": "evolution", "action": "webhook"}
    payload.update(claims or {})
    signing_input = f"{_b64url(js_json(dict(alg=alg, typ='JWT')))}.{_b64url(js_json(payload))}"
    digests = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}
    if alg == "none":
        signature = ""
    elif alg in digests:
        raw = hmac.new(secret.encode(), signing_input.encode("ascii"), digests[alg]).digest()
        signature = _b64url(raw)
    else:
        raise ValueError(f"no such alg here: {alg!r}")
    return f"{signing_input}.{signature}"


def sign(body: bytes, secret: str, *, now: float | None = None) -> dict[str, str]:
    """The headers Evolution sends with a webhook whose headers hold `jwt_key: secret`.

    The token does not depend on `body` (Evolution's does not cover it); the body is
    taken so a caller signs a delivery the way the other gateways' stand-ins do."""
    headers = dict(AXIOS_HEADERS)
    if secret:
        headers["Authorization"] = f"Bearer {jwt_token(secret, now=now)}"
    return headers


def envelope(
    event: str,
    data: object,
    *,
    instance: str = "default",
    apikey: str | None = None,
    destination: str = "",
    date_time: str | None = None,
    sender: str = f"{DEFAULT_OWNER}@s.whatsapp.net",
    server_url: str = SERVER_URL,
) -> dict[str, Any]:
    """A webhook body as Evolution posts it. `apikey` is the instance token when
    Evolution exposes it (AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES, on by default)."""
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": destination,
        "date_time": date_time or iso_z(time.time()),
        "sender": sender,
        "server_url": server_url,
        "apikey": apikey,
    }


def message_data(
    text: str = "Hello",
    *,
    sender: str = DEFAULT_CUSTOMER,
    name: str | None = DEFAULT_CUSTOMER_NAME,
    id: str | None = None,
    timestamp: int | None = None,
    media: str | None = None,
    lid: str | None = None,
    group: str | None = None,
    from_me: bool = False,
    instance_id: str = "",
) -> dict[str, Any]:
    """A `messages.upsert` data (Evolution's messageRaw) of a message that arrived.

    `sender`: digits, or a full jid (`...@lid` alone: a contact whose number is
    hidden). `lid`: the message is addressed by that `@lid` id with the number as
    `remoteJidAlt` (Baileys 7). `group`: a group's jid (`sender` is the member).
    `media`: one of MEDIA_KINDS (`text` is then the caption, "" for none).
    `from_me`: sent from the shop's phone."""
    if media is not None and media not in MEDIA_KINDS:
        raise ValueError(f"unknown media {media!r}; expected one of {', '.join(MEDIA_KINDS)}")
    person = _jid(sender)
    message_id = id or (new_phone_id() if from_me else new_inbound_id())
    if group:
        key: dict[str, Any] = {"remoteJid": group, "fromMe": from_me, "id": message_id}
        key["participant"] = f"{lid}@lid" if lid else person
        if lid:
            key["participantAlt"] = person
    elif lid:
        key = {"remoteJid": f"{lid}@lid", "remoteJidAlt": person, "fromMe": from_me}
        key |= {"id": message_id, "addressingMode": "lid"}
    else:
        key = {"remoteJid": person, "fromMe": from_me, "id": message_id}
    content, message_type = _content(text, media)
    data: dict[str, Any] = {
        "key": key,
        "pushName": name,
        "status": "SERVER_ACK" if from_me else "DELIVERY_ACK",
        "message": content,
        "messageType": message_type,
        "messageTimestamp": int(time.time()) if timestamp is None else timestamp,
        "instanceId": instance_id,
        "source": get_device(message_id),
    }
    if name is None:
        del data["pushName"]
    return data


def reaction_data(gateway_id: str, emoji: str = "👍", **fields: Any) -> dict[str, Any]:
    """A `messages.upsert` data of a reaction to message ``gateway_id`` (one of ours by
    default; ``fields`` as message_data's)."""
    data = message_data("", **fields)
    target = {"remoteJid": data["key"]["remoteJid"], "fromMe": True, "id": gateway_id}
    data["message"] = {
        "reactionMessage": {
            "key": target,
            "text": emoji,
            "senderTimestampMs": str(int(time.time() * 1000)),
        }
    }
    data["messageType"] = "reactionMessage"
    return data


def sent_data(
    text: str,
    *,
    to: str = DEFAULT_CUSTOMER,
    id: str | None = None,
    timestamp: int | None = None,
    instance_id: str = "",
) -> dict[str, Any]:
    """What sendText answers with (201) and `send.message` carries: our own text."""
    message_id = id or new_sent_id()
    return {
        "key": {"remoteJid": _jid(to), "fromMe": True, "id": message_id},
        "pushName": "Você",  # Evolution's default for a message of ours without a name
        "status": "PENDING",
        "message": {"conversation": text},
        "contextInfo": {"mentionedJid": [], "groupMentions": []},
        "messageType": "conversation",
        "messageTimestamp": int(time.time()) if timestamp is None else timestamp,
        "instanceId": instance_id,
        "source": get_device(message_id),
    }


def status_data(
    gateway_id: str,
    status: str = "ERROR",
    *,
    chat: str = DEFAULT_CUSTOMER,
    from_me: bool = True,
    instance_id: str = "",
    record_id: str = "",
) -> dict[str, Any]:
    """A `messages.update` data: a later status of one message (ERROR, DELIVERY_ACK, READ...)."""
    return {
        "keyId": gateway_id,
        "remoteJid": _jid(chat),
        "fromMe": from_me,
        "status": status,
        "instanceId": instance_id,
        "messageId": record_id or _cuid(),
    }


def connection_data(
    state: str,
    *,
    reason: int = 200,
    instance: str = "default",
    owner: str = DEFAULT_OWNER,
    owner_name: str = DEFAULT_OWNER_NAME,
) -> dict[str, Any]:
    """A `connection.update` data as Evolution sends it for each state."""
    if state == "open":
        return {
            "instance": instance,
            "wuid": f"{owner}@s.whatsapp.net",
            "profileName": owner_name,
            "profilePictureUrl": None,
            "state": "open",
            "statusReason": reason,
        }
    if state == "refused":
        return {
            "instance": instance,
            "state": "refused",
            "statusReason": CONNECTION_CLOSED,
            "wuid": f"{owner}@s.whatsapp.net",
            "profileName": owner_name,
            "profilePictureUrl": None,
        }
    return {"instance": instance, "state": state, "statusReason": reason}


def qrcode_data(
    code: str | None = None, *, pairing_code: str | None = None, instance: str = "default"
) -> dict[str, Any]:
    """A `qrcode.updated` data: the raw QR string, its PNG and the pairing code (or null)."""
    code = code if code is not None else new_qr_string()
    return {
        "qrcode": {
            "instance": instance,
            "pairingCode": pairing_code,
            "code": code,
            "base64": qr_png(code),
        }
    }


def qr_limit_data() -> dict[str, Any]:
    """The `qrcode.updated` data Evolution sends when no one scanned in time."""
    return {"message": QR_LIMIT_MESSAGE, "statusCode": BAD_SESSION}


def message_event(
    text: str = "Hello", *, instance: str = "default", apikey: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A whole `messages.upsert` body (`fields` as message_data's)."""
    return envelope(
        "messages.upsert", message_data(text, **fields), instance=instance, apikey=apikey
    )


def send_message_event(
    text: str, *, instance: str = "default", apikey: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A whole `send.message` body: the echo of one of our sends (`fields` as sent_data's)."""
    return envelope("send.message", sent_data(text, **fields), instance=instance, apikey=apikey)


def status_event(
    gateway_id: str,
    status: str = "ERROR",
    *,
    instance: str = "default",
    apikey: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A whole `messages.update` body."""
    return envelope(
        "messages.update",
        status_data(gateway_id, status, **fields),
        instance=instance,
        apikey=apikey,
    )


def session_event(
    state: str, *, instance: str = "default", apikey: str | None = None, **fields: Any
) -> dict[str, Any]:
    """A whole `connection.update` body (`state`: open, connecting, close, refused)."""
    data = connection_data(state, instance=instance, **fields)
    return envelope("connection.update", data, instance=instance, apikey=apikey)


def qrcode_event(
    code: str | None = None,
    *,
    pairing_code: str | None = None,
    instance: str = "default",
    apikey: str | None = None,
) -> dict[str, Any]:
    """A whole `qrcode.updated` body with a QR (and a pairing code when given)."""
    data = qrcode_data(code, pairing_code=pairing_code, instance=instance)
    return envelope("qrcode.updated", data, instance=instance, apikey=apikey)


def qr_limit_event(*, instance: str = "default", apikey: str | None = None) -> dict[str, Any]:
    """The `qrcode.updated` body of "QR code limit reached"."""
    return envelope("qrcode.updated", qr_limit_data(), instance=instance, apikey=apikey)


class EvolutionStandin(WebhookStandin):
    """An HTTP server on 127.0.0.1 answering like Evolution for the instance ``session``.

    ``port=0`` picks a free port; ``url`` is the GATEWAY_URL to use. ``api_key`` is
    the only key it takes (global key and instance token at once). With a
    ``webhook_url`` the instance starts with a webhook set as setup_gateway_webhook
    sets it (DEFAULT_EVENTS, `jwt_key` = ``webhook_secret``). ``logged_in=False``
    starts waiting for a QR scan, as a fresh instance does.
    Thread-safe: knobs can be turned and records read while requests run.
    """

    kind = "evolution"
    label = "STAND-IN Evolution"
    send_modes = SEND_MODES
    send_words = ("sendText mode", "sendText calls")
    failing_routes = ROUTES
    failure_modes = FAILURE_MODES
    check_word = ""
    echo_said = None

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str,
        webhook_url: str | None = None,
        webhook_secret: str = "",
        session: str = "default",
        host: str = "127.0.0.1",
        announce: bool = False,
        hang_seconds: float = 60.0,
        logged_in: bool = True,
    ) -> None:
        if not api_key:
            raise ValueError("api_key: Evolution always wants one")
        super().__init__(host, port, handler=_Handler, announce=announce, hang_seconds=hang_seconds)
        self.api_key = api_key
        self.session = session
        self.instance_id = str(uuid.uuid4())
        self._created = iso_z(time.time())
        # The session: Evolution's in-memory state, the instance's saved
        # connectionStatus, and whether a login is stored (Baileys' creds).
        self._state = "open"
        self._saved = "open"
        self._reason: int | None = None
        self._linked = True
        # Evolution's `instance.qrcode`: only the keys it has set (JSON drops the rest),
        # kept after a link as Evolution keeps it.
        self._qr: dict[str, Any] = {"count": 0}
        self._phone: str | None = None
        self._owner, self._owner_name = DEFAULT_OWNER, DEFAULT_OWNER_NAME
        self._secret = webhook_secret
        self._webhook: dict[str, Any] | None = None
        self._store: list[dict[str, Any]] = []
        self._posts: list[WebhookPost] = []
        if webhook_url:
            self.webhook_url = webhook_url
        if not logged_in:
            self._state, self._saved, self._linked = "connecting", "connecting", False
            self._qr = {"pairingCode": None, "code": new_qr_string(), "count": 1}
            self._qr["base64"] = qr_png(self._qr["code"])

    # -- the session --------------------------------------------------------

    @property
    def state(self) -> str:
        """What connectionState answers: open, connecting or close."""
        with self._lock:
            return self._state

    @property
    def qr(self) -> str | None:
        """The QR string /instance/connect shows (Evolution keeps it after a link)."""
        with self._lock:
            return self._qr.get("code")

    @property
    def pairing_code(self) -> str | None:
        with self._lock:
            return self._qr.get("pairingCode")

    def set_state(self, state: str, *, reason: int | None = None) -> None:
        """The session becomes ``state``, posting `connection.update`.

        "open": linked and connected (as after a scan). "connecting": a reconnect
        with the stored login. "close": WhatsApp ended it and Evolution does not
        reconnect (``reason``: Baileys' code, 401 logged out by default; 401 and 403
        drop the stored login)."""
        _check(state, STATES)
        if state == "open":
            self.scan()
            return
        if state == "connecting":
            with self._lock:
                self._state = "connecting"
            self._say("reconnecting")
            self._emit("connection.update", self._connection("connecting"))
            return
        self._closed(LOGGED_OUT if reason is None else reason)

    def show_qr(self, text: str | None = None) -> str:
        """Not linked, waiting for a scan: a new QR (``text`` or a made-up one), posted
        as `qrcode.updated` (with a pairing code when a number asked for one). Returns it."""
        with self._lock:
            was = self._state
        if was != "connecting":
            with self._lock:
                self._state = "connecting"
            self._emit("connection.update", self._connection("connecting"))
        with self._lock:
            self._state, self._saved, self._linked = "connecting", "connecting", False
            code = text if text is not None else new_qr_string()
            pairing = new_pairing_code() if self._phone else None
            self._qr = {
                "pairingCode": pairing,
                "code": code,
                "base64": qr_png(code),
                "count": self._qr.get("count", 0) + 1,
            }
        self._say(
            f"waiting for a scan, QR {code[:24]}..."
            + (f", pairing code {pairing}" if pairing else "")
        )
        self._emit("qrcode.updated", qrcode_data(code, pairing_code=pairing, instance=self.session))
        return code

    def scan(self) -> None:
        """The phone linked (a QR scanned or a pairing code entered): open."""
        with self._lock:
            self._state, self._saved, self._linked = "open", "open", True
            self._phone = None
        self._say("linked: open")
        self._emit("connection.update", self._connection("open"))

    def set_qr_limit_reached(self) -> None:
        """No one scanned in time: "QR code limit reached", then `refused`; Evolution
        logs the socket out and the session is `close` with no stored login."""
        self._emit("qrcode.updated", qr_limit_data())
        self._emit("connection.update", self._connection("refused"))
        with self._lock:
            self._state, self._saved, self._linked = "close", "close", False
            self._qr, self._phone = {"count": 0}, None
        self._say("QR code limit reached: refused, now close")

    def set_account(self, number: str | None = None, name: str | None = None) -> None:
        """The linked account (fetchInstances' ownerJid and profileName); None keeps one."""
        with self._lock:
            self._owner = number if number is not None else self._owner
            self._owner_name = name if name is not None else self._owner_name
        self._say(f"account is now +{self._owner} ({self._owner_name})")

    def _closed(self, reason: int) -> None:
        with self._lock:
            self._state, self._saved, self._reason = "close", "close", reason
            if reason in (LOGGED_OUT, 403):
                self._linked = False
        self._say(f"closed ({reason})")
        self._emit(
            "status.instance",
            {
                "instance": self.session,
                "status": "closed",
                "disconnectionAt": iso_z(time.time()),
                "disconnectionReasonCode": reason,
                "disconnectionObject": json.dumps({"error": {"output": {"statusCode": reason}}}),
            },
        )
        self._emit("connection.update", self._connection("close", reason=reason))

    def _connection(self, state: str, *, reason: int = 200) -> dict[str, Any]:
        with self._lock:
            owner, name = self._owner, self._owner_name
        return connection_data(
            state, reason=reason, instance=self.session, owner=owner, owner_name=name
        )

    def set_failure(self, route: str, mode: str | None) -> None:
        """``route`` (one of ROUTES) fails as ``mode`` (FAILURE_MODES), or answers again (None)."""
        self._set_failure(route, mode)

    # -- inbound and later statuses ------------------------------------------------

    def add_customer_message(
        self,
        text: str = "Hello",
        *,
        sender: str = DEFAULT_CUSTOMER,
        name: str | None = DEFAULT_CUSTOMER_NAME,
        media: str | None = None,
        lid: str | None = None,
        group: str | None = None,
        id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A customer's message arrives (the fields as message_data's): kept in the chat
        store (findMessages) and posted as `messages.upsert` unless ``lose_webhooks``.
        Returns its data."""
        data = message_data(
            text,
            sender=sender,
            name=name,
            media=media,
            lid=lid,
            group=group,
            id=id,
            timestamp=timestamp,
            instance_id=self.instance_id,
        )
        self._keep(data)
        self._say(
            f"customer message {data['key']['id']} in {data['key']['remoteJid']}: {text[:60]!r}"
        )
        self._emit("messages.upsert", data)
        return copy.deepcopy(data)

    def answer_from_phone(
        self, text: str, chat: str = DEFAULT_CUSTOMER, **fields: Any
    ) -> dict[str, Any]:
        """Someone answers ``chat`` from the shop's phone: `messages.upsert`, fromMe."""
        with self._lock:
            name = self._owner_name
        fields.setdefault("name", name)
        data = message_data(text, sender=chat, from_me=True, instance_id=self.instance_id, **fields)
        self._keep(data)
        self._say(f"answered from the phone in {data['key']['remoteJid']}: {text[:60]!r}")
        self._emit("messages.upsert", data)
        return copy.deepcopy(data)

    def react(self, gateway_id: str, emoji: str = "👍", **fields: Any) -> dict[str, Any]:
        """A customer reacts to message ``gateway_id`` (``fields`` as message_data's):
        Evolution posts it as `messages.upsert` and keeps it, though it is no message."""
        data = reaction_data(gateway_id, emoji, instance_id=self.instance_id, **fields)
        self._keep(data)
        self._say(f"reaction {emoji} to {gateway_id}")
        self._emit("messages.upsert", data)
        return copy.deepcopy(data)

    def report_status(self, gateway_id: str, status: str) -> dict[str, Any]:
        """A later status of a message we sent (DELIVERY_ACK, READ, ERROR...), posted as
        `messages.update`. Returns its data."""
        with self._lock:
            record = next((r for r in self._store if r["key"]["id"] == gateway_id), None)
            chat = record["key"]["remoteJid"] if record else _jid(DEFAULT_CUSTOMER)
            if record is not None:
                record["MessageUpdate"].append({"status": status})
        data = status_data(
            gateway_id,
            status,
            chat=chat,
            instance_id=self.instance_id,
            record_id=record["id"] if record else "",
        )
        self._say(f"message {gateway_id}: {status}")
        self._emit("messages.update", data)
        return data

    def fail_delivery(self, gateway_id: str) -> dict[str, Any]:
        """WhatsApp could not deliver a message it had accepted: status ERROR."""
        return self.report_status(gateway_id, "ERROR")

    def messages(self) -> list[dict[str, Any]]:
        """The chat store (what findMessages reads), oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._store)

    def _keep(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._store.append({"id": _cuid(), **copy.deepcopy(data), "MessageUpdate": []})

    # -- the webhook ----------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        with self._lock:
            return self._webhook["url"] if self._webhook else None

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        """Where the instance's webhook posts (None: no webhook set). A new one is set
        as setup_gateway_webhook sets it."""
        with self._lock:
            if url is None:
                self._webhook = None
            elif self._webhook is None:
                self._webhook = self._webhook_record(
                    url=url,
                    enabled=True,
                    events=list(DEFAULT_EVENTS),
                    headers={"jwt_key": self._secret} if self._secret else {},
                )
            else:
                self._webhook["url"] = url

    @property
    def webhook_secret(self) -> str:
        with self._lock:
            return self._secret

    @webhook_secret.setter
    def webhook_secret(self, secret: str) -> None:
        with self._lock:
            self._secret = secret
            if self._webhook is not None:
                headers = dict(self._webhook.get("headers") or {})
                headers.pop("jwt_key", None)
                self._webhook["headers"] = {**headers, **({"jwt_key": secret} if secret else {})}

    @property
    def webhook(self) -> dict[str, Any] | None:
        """The instance's webhook record, as /webhook/find answers it (a copy)."""
        with self._lock:
            return copy.deepcopy(self._webhook)

    @property
    def webhooks(self) -> list[WebhookPost]:
        """Every webhook posted (or lost), oldest first."""
        with self._lock:
            return list(self._posts)

    def post_webhook(self, body: dict[str, Any]) -> int:
        """Post ``body`` to the webhook's URL with the headers Evolution sends; the status."""
        with self._lock:
            hook = copy.deepcopy(self._webhook)
        if not hook:
            raise RuntimeError("no webhook_url is set")
        response = self._poster.wait(post, hook["url"], js_json(body), _webhook_headers(hook))
        with self._lock:
            self._posts.append(
                WebhookPost(str(body.get("event")), hook["url"], response.status_code)
            )
        return response.status_code

    def _emit(self, event: str, data: object) -> None:
        """Post one event as Evolution's WebhookController.emit does."""
        with self._lock:
            hook = copy.deepcopy(self._webhook)
            lose = self.lose_webhooks
            owner = self._owner
        name = re.sub(r"[.-]", "_", event).upper()
        if not hook or not hook.get("enabled") or name not in (hook.get("events") or []):
            return
        url = hook["url"]
        if not re.match(r"^https?://", url):
            return
        if hook.get("webhookByEvents"):
            url = f"{url}/{name.replace('_', '-').lower()}"
        if lose:
            with self._lock:
                self._posts.append(WebhookPost(event, url, None, lost=True))
            self._say(f"webhook {event} LOST on purpose")
            return
        body = envelope(
            event,
            data,
            instance=self.session,
            apikey=self.api_key,
            destination=hook["url"],
            sender=f"{owner}@s.whatsapp.net",
            server_url=self.url,
        )
        try:
            # Evolution posts while the request or knob that caused it waits.
            response = self._poster.wait(post, url, js_json(body), _webhook_headers(hook))
            status: int | None = response.status_code
        except httpx.HTTPError as exc:
            status = None
            self._say(f"webhook {event} to {url}: no answer ({type(exc).__name__})")
        with self._lock:
            self._posts.append(WebhookPost(event, url, status))

    def _webhook_record(self, **fields: Any) -> dict[str, Any]:
        now = iso_z(time.time())
        record = {
            "id": _cuid(),
            "url": "",
            "headers": None,
            "enabled": True,
            "events": [],
            "webhookByEvents": False,
            "webhookBase64": False,
            "createdAt": now,
            "updatedAt": now,
            "instanceId": self.instance_id,
        }
        record.update(fields)
        return record

    # -- used by the handler ---------------------------------------------------

    def _connect(self, number: str | None) -> dict[str, Any]:
        """GET /instance/connect: the state when open, the QR while connecting; from
        close it starts linking (with a pairing code for ``number``)."""
        with self._lock:
            state, linked = self._state, self._linked
        if state == "open":
            return {"instance": {"instanceName": self.session, "state": "open"}}
        if state == "close":
            with self._lock:
                self._phone = number or None
            if linked:
                self.set_state("connecting")
                self.scan()
            else:
                self.show_qr()
        with self._lock:
            return dict(self._qr)

    def _restart(self) -> dict[str, Any]:
        with self._lock:
            state, linked = self._state, self._linked
        if state == "close":
            # Its BadRequestException, caught and flattened to a string.
            return {"error": True, "message": "[object Object]"}
        self._say("restart asked")
        if not linked:
            self.show_qr()
            with self._lock:
                return dict(self._qr)
        self.set_state("connecting")
        self.scan()
        return {"instance": {"instanceName": self.session, "state": "open"}}

    def _logout(self) -> bool:
        with self._lock:
            if self._state == "close":
                return False
            self._phone = None
        self._say("logged out")
        self._closed(LOGGED_OUT)
        return True

    def _instance_record(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.instance_id,
                "name": self.session,
                "connectionStatus": self._saved,
                "ownerJid": f"{self._owner}@s.whatsapp.net",
                "profileName": self._owner_name,
                "profilePicUrl": None,
                "integration": "WHATSAPP-BAILEYS",
                "number": None,
                "businessId": None,
                # The instance token: Evolution lists it here.
                "token": self.api_key,
                "clientName": "evolution_exchange",
                "disconnectionReasonCode": self._reason,
                "disconnectionObject": None,
                "disconnectionAt": None,
                "createdAt": self._created,
                "updatedAt": iso_z(time.time()),
                "Chatwoot": None,
                "Proxy": None,
                "Rabbitmq": None,
                "Nats": None,
                "Sqs": None,
                "Websocket": None,
                "Setting": None,
                "_count": {"Message": len(self._store), "Contact": 0, "Chat": 0},
            }

    def _send(self, number: str, text: str) -> tuple[SendCall, dict[str, Any] | None]:
        """Decide and record one sendText that passed the checks; its message when delivered."""
        chat = _jid(number)
        with self._lock:
            mode = self._next_send_mode()
            delivered = (mode == "ok" and self._state == "open") or mode in DELIVERING_MODES
            data = sent_data(text, to=chat, instance_id=self.instance_id) if delivered else None
            call = SendCall(
                number, text, chat, mode, data["key"]["id"] if data else None, delivered
            )
            self._sends.append(call)
            if data is not None and mode != "closed_after_send":
                self._store.append({"id": _cuid(), **copy.deepcopy(data), "MessageUpdate": []})
        if delivered:
            self._announce_send(chat, call.gateway_id, mode, text)
        return call, data

    def _find(self, query: dict[str, Any]) -> dict[str, Any]:
        """findMessages, filtered as Evolution's fetchMessages filters (see the adapter)."""
        where = query.get("where") if isinstance(query.get("where"), dict) else {}
        key = where.get("key") if isinstance(where.get("key"), dict) else {}
        stamp = (
            where.get("messageTimestamp") if isinstance(where.get("messageTimestamp"), dict) else {}
        )
        with self._lock:
            records = copy.deepcopy(self._store)
        for field in ("id", "fromMe", "remoteJid", "participant"):
            if key.get(field):  # a falsy filter (fromMe: false) is no filter
                records = [r for r in records if r["key"].get(field) == key[field]]
        if stamp.get("gte") and stamp.get("lte"):
            low, high = _js_seconds(stamp["gte"]), _js_seconds(stamp["lte"])
            if low is not None and high is not None:
                records = [r for r in records if low <= r["messageTimestamp"] <= high]
        records.sort(key=lambda r: r["messageTimestamp"], reverse=True)
        offset = query.get("offset") or 50
        page = query.get("page") or 1
        start = offset * (0 if page == 1 else page - 1)
        shown = [_record_view(r) for r in records[start : start + offset]]
        return {
            "messages": {
                "total": len(records),
                "pages": math.ceil(len(records) / offset),
                "currentPage": page,
                "records": shown,
            }
        }

    def _set_webhook(self, given: dict[str, Any]) -> dict[str, Any]:
        """The upsert of /webhook/set: a field not given keeps its stored value."""
        with self._lock:
            enabled = given.get("enabled")
            events = given.get("events") or []
            if not enabled:
                events = []
            elif not events:
                events = list(EVENTS)
            update = {"enabled": enabled, "events": events, "url": given.get("url")}
            for ours, theirs in (
                ("headers", "headers"),
                ("webhookByEvents", "byEvents"),
                ("webhookBase64", "base64"),
            ):
                if theirs in given:
                    update[ours] = given[theirs]
            if self._webhook is None:
                self._webhook = self._webhook_record(**update)
            else:
                self._webhook.update(update, updatedAt=iso_z(time.time()))
            secret = (self._webhook.get("headers") or {}).get("jwt_key")
            self._secret = secret if isinstance(secret, str) else ""
            return copy.deepcopy(self._webhook)

    def _state_for_page(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._shared_page_state(),
                "state": self._state,
                "saved": self._saved,
                "reason": self._reason,
                "linked": self._linked,
                "qr": self._qr.get("code"),
                "pairing_code": self._qr.get("pairingCode"),
                "owner": self._owner,
                "owner_name": self._owner_name,
                "webhook_url": self._webhook["url"] if self._webhook else None,
                "webhook_events": list(self._webhook["events"]) if self._webhook else [],
                "signed": bool(self._secret),
                "messages": copy.deepcopy(self._store[-20:]),
                "posts": list(self._posts[-20:]),
            }


# -- ids, QRs and jids as Evolution and Baileys make them ------------------------------------


def new_sent_id() -> str:
    """A message id Baileys makes for a send (3EB0 + 18 hex: Evolution's source "web")."""
    return "3EB0" + secrets.token_hex(9).upper()


def new_phone_id() -> str:
    """A message id as an Android phone makes them (32 hex)."""
    return secrets.token_hex(16).upper()


def new_pairing_code() -> str:
    """Eight characters of Baileys' pairing alphabet (no 0, O, I, U)."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(8))


def qr_png(code: str) -> str:
    """The QR as Evolution shows it beside the string: a PNG data URL."""
    return segno.make(code, error="h").png_data_uri(scale=4, border=3)


def get_device(message_id: str) -> str:
    """Baileys' getDevice: where a message id was made (Evolution's `source`)."""
    if re.fullmatch(r"3A.{18}", message_id):
        return "ios"
    if re.fullmatch(r"3E.{20}", message_id):
        return "web"
    if re.fullmatch(r".{21}|.{32}", message_id):
        return "android"
    if re.match(r"3F|.{18}$", message_id):
        return "desktop"
    return "unknown"


def _jid(number: str) -> str:
    """Evolution's createJid (without its Brazilian and Mexican number rules)."""
    number = re.sub(r":\d+", "", number, count=1)
    if any(d in number for d in ("@g.us", "@s.whatsapp.net", "@lid", "@broadcast")):
        return number
    number = re.sub(r"[\s+()]", "", number).split(":")[0].split("@")[0]
    if "-" in number and len(number) >= 24:
        return re.sub(r"[^\d-]", "", number) + "@g.us"
    number = re.sub(r"\D", "", number)
    return f"{number}@g.us" if len(number) >= 18 else f"{number}@s.whatsapp.net"


def _content(text: str, media: str | None) -> tuple[dict[str, Any], str]:
    """A message's `message` and `messageType` as Baileys and Evolution give them."""
    context = {"messageContextInfo": {"deviceListMetadataVersion": 2}}
    if media is None:
        return {"conversation": text, **context}, "conversation"
    path = "/v/t62.7118-24/" + secrets.token_hex(8)
    common = {
        "url": f"https://mmg.whatsapp.net{path}?ccb=11-4",
        "fileSha256": base64.b64encode(secrets.token_bytes(32)).decode(),
        "fileLength": "48213",
        "mediaKey": base64.b64encode(secrets.token_bytes(32)).decode(),
        "directPath": path,
        "mediaKeyTimestamp": str(int(time.time())),
    }
    caption = {"caption": text} if text else {}
    if media == "image":
        body = {**common, "mimetype": "image/jpeg", **caption, "height": 1280, "width": 960}
        return {"imageMessage": body, **context}, "imageMessage"
    if media == "video":
        body = {**common, "mimetype": "video/mp4", **caption, "seconds": 7}
        return {"videoMessage": body, **context}, "videoMessage"
    if media in ("ptt", "audio"):
        body = {**common, "mimetype": "audio/ogg; codecs=opus", "seconds": 4, "ptt": media == "ptt"}
        return {"audioMessage": body, **context}, "audioMessage"
    if media == "document":
        body = {
            **common,
            "mimetype": "application/pdf",
            "title": "invoice.pdf",
            "fileName": "invoice.pdf",
            **caption,
        }
        return {"documentMessage": body, **context}, "documentMessage"
    if media == "sticker":
        return {
            "stickerMessage": {**common, "mimetype": "image/webp", "isAnimated": False},
            **context,
        }, "stickerMessage"
    location = {
        "degreesLatitude": 24.8607,
        "degreesLongitude": 67.0011,
        **({"name": text} if text else {}),
    }
    return {"locationMessage": location, **context}, "locationMessage"


def _record_view(record: dict[str, Any]) -> dict[str, Any]:
    """A stored message as findMessages selects it."""
    push = record.get("pushName") or ("Você" if record["key"].get("fromMe") else None)
    return {
        "id": record["id"],
        "key": record["key"],
        "pushName": push,
        "messageType": record["messageType"],
        "message": record["message"],
        "messageTimestamp": record["messageTimestamp"],
        "instanceId": record["instanceId"],
        "source": record["source"],
        "contextInfo": record.get("contextInfo"),
        "MessageUpdate": record["MessageUpdate"],
    }


def _js_seconds(value: object) -> int | None:
    """Math.floor(new Date(value).getTime() / 1000) for what JSON carries; None for NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.floor(value / 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return math.floor((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())
    return None


def _cuid() -> str:
    """An id shaped like Prisma's cuid()."""
    return "c" + secrets.token_hex(12)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _webhook_headers(hook: dict[str, Any]) -> dict[str, str]:
    """axios's headers, the webhook's own, and the JWT in place of its `jwt_key`."""
    headers = dict(AXIOS_HEADERS)
    custom = dict(hook.get("headers") or {})
    jwt_key = custom.pop("jwt_key", None)
    headers.update({str(k): str(v) for k, v in custom.items()})
    if jwt_key:
        headers["Authorization"] = f"Bearer {jwt_token(str(jwt_key))}"
    return headers


def _check(value: str, allowed: tuple[str, ...]) -> None:
    check(value, allowed, "")


# -- the control page --------------------------------------------------------------------


def _act_state(standin: EvolutionStandin, form: dict[str, str]) -> None:
    reason = form.get("reason", "").strip()
    standin.set_state(form.get("state", ""), reason=int(reason) if reason.isdigit() else None)


def _act_account(standin: EvolutionStandin, form: dict[str, str]) -> None:
    standin.set_account(number=form.get("number") or None, name=form.get("name") or None)


def _act_customer(standin: EvolutionStandin, form: dict[str, str]) -> None:
    standin.add_customer_message(
        form.get("text", ""),
        sender=form.get("sender") or DEFAULT_CUSTOMER,
        name=form.get("name") or DEFAULT_CUSTOMER_NAME,
        media=form.get("media") or None,
    )


def _act_phone(standin: EvolutionStandin, form: dict[str, str]) -> None:
    standin.answer_from_phone(form.get("text", ""), chat=form.get("chat") or DEFAULT_CUSTOMER)


def _act_fail(standin: EvolutionStandin, form: dict[str, str]) -> None:
    gateway_id = form.get("gateway_id", "").strip()
    if not gateway_id:
        raise ValueError("a message id is needed")
    standin.fail_delivery(gateway_id)


_ACTIONS: dict[str, Callable[[EvolutionStandin, dict[str, str]], object]] = {
    "state": _act_state,
    "show-qr": lambda standin, form: standin.show_qr(),
    "scan": lambda standin, form: standin.scan(),
    "qr-limit": lambda standin, form: standin.set_qr_limit_reached(),
    "account": _act_account,
    "send-mode": lambda standin, form: standin.set_send_mode_from_page(form.get("mode", "")),
    "echo-mode": lambda standin, form: setattr(standin, "echo_mode", form.get("mode", "")),
    "lose-webhooks": lambda standin, form: setattr(
        standin, "lose_webhooks", form.get("lose") == "on"
    ),
    "customer-message": _act_customer,
    "phone-answer": _act_phone,
    "fail-delivery": _act_fail,
}


def _render_page(standin: EvolutionStandin) -> str:
    """The control page: every value escaped, every control a plain form, no secret shown."""
    s = standin._state_for_page()
    e = html.escape
    failures = ", ".join(f"{k}: {v}" for k, v in s["failures"].items()) or "none"
    webhook = (
        f"{e(s['webhook_url'])} ({'signed with a JWT' if s['signed'] else 'NOT signed: no jwt_key'}; "
        f"events {e(', '.join(s['webhook_events']))})"
        if s["webhook_url"]
        else "none set"
    )
    shown = bullets(
        f"Session: <strong>{e(s['state'])}</strong> (saved: {e(s['saved'])}; "
        f"reason code: {e(str(s['reason']))}; login stored: {yes_no(s['linked'])})",
        f"QR: <code>{e(s['qr'] or 'none')}</code>; "
        f"pairing code: <code>{e(s['pairing_code'] or 'none')}</code>",
        f"Account: +{e(s['owner'])} ({e(s['owner_name'])})",
        f"sendText mode: <strong>{e(s['send_mode'])}</strong>; "
        f"queued: {e(', '.join(s['queued']) or 'none')}; echo: {e(s['echo_mode'])}",
        f"Webhook: {webhook}; "
        + ("webhooks are LOST on purpose" if s["lose_webhooks"] else "webhooks are posted"),
        f"Failing routes: {e(failures)}",
        f"Calls: {e(counted(s['calls']))}",
    )
    state = knob(
        "state",
        "Set the state",
        select("state", STATES, s["state"]),
        "reason " + text_field("reason", size=4, placeholder="401"),
        inline=True,
    )
    buttons = " ".join(
        knob(action, label, inline=True)
        for action, label in (
            ("show-qr", "Show a new QR"),
            ("scan", "Scan it: open"),
            ("qr-limit", "QR code limit reached"),
        )
    )
    account = knob(
        "account",
        "Set the account",
        text_field("number", placeholder="923009876543"),
        text_field("name", placeholder="Shop name"),
        inline=True,
    )
    sends = " ".join(
        (
            send_mode_form(
                SEND_MODES,
                s["send_mode"],
                submit="Set the sendText mode",
                label=None,
                inline=True,
            ),
            knob(
                "echo-mode", "Set the echo", select("mode", ECHO_MODES, s["echo_mode"]), inline=True
            ),
            knob(
                "lose-webhooks",
                "Set",
                checkbox("lose", s["lose_webhooks"], "lose webhooks"),
                inline=True,
            ),
        )
    )
    customer = knob(
        "customer-message",
        "Add",
        text_field("sender", DEFAULT_CUSTOMER),
        text_field("name", DEFAULT_CUSTOMER_NAME),
        text_field("text", size=40),
        select("media", MEDIA_KINDS, blank="text"),
        inline=True,
    )
    phone = knob(
        "phone-answer",
        "Answer",
        text_field("chat", DEFAULT_CUSTOMER),
        text_field("text", size=40),
        inline=True,
    )
    fail = knob(
        "fail-delivery",
        "Fail it (status ERROR)",
        text_field("gateway_id", size=30, placeholder="3EB0..."),
        inline=True,
    )
    sent = table(
        ("To", "Text", "Mode", "Message id", "Would be delivered"),
        [
            (c.chat, c.text, c.mode, c.gateway_id or "", yes_no(c.delivered))
            for c in reversed(s["sends"])
        ],
    )
    stored = table(
        ("Id", "Chat", "From", "Type", "Text"),
        [
            (
                m["key"]["id"],
                m["key"]["remoteJid"],
                "us" if m["key"]["fromMe"] else m.get("pushName") or "",
                m["messageType"],
                _shown_text(m["message"]),
            )
            for m in reversed(s["messages"])
        ],
    )
    posts = table(
        ("Event", "To", "Answer"),
        [
            (p.event, p.url, "lost on purpose" if p.lost else p.status or "no answer")
            for p in reversed(s["posts"])
        ],
    )
    body = f"""<p>API: <code>{e(standin.url)}</code>, instance <code>{e(standin.session)}</code></p>
<h2>State</h2>
{shown}
<h2>Session</h2>
<p>{state}
{buttons}</p>
<p>{account}</p>
<h2>Sends and webhooks</h2>
<p>{sends}</p>
<h2>A customer writes</h2>
{customer}
<h2>Someone answers from the phone</h2>
{phone}
<h2>A sent message is not delivered after all</h2>
{fail}
<h2>Last sends (newest first)</h2>
{sent}
<h2>Chat store (newest first)</h2>
{stored}
<h2>Webhooks posted (newest first)</h2>
{posts}
"""
    return page(
        "STAND-IN Evolution API",
        "STAND-IN Evolution API: nothing is sent to WhatsApp",
        body,
        width="64em",
    )


def _shown_text(message: dict[str, Any]) -> str:
    for key in ("conversation",):
        if isinstance(message.get(key), str):
            return message[key]
    for value in message.values():
        if isinstance(value, dict) and isinstance(value.get("caption"), str):
            return value["caption"]
    return ""


# -- the HTTP side ---------------------------------------------------------------


# (method, the router's segment, the route's segment) -> (the name in calls(), handler name).
_ROUTES = {
    ("GET", "instance", "connectionstate"): ("connection_state", "_connection_state"),
    ("GET", "instance", "connect"): ("connect", "_connect"),
    ("POST", "instance", "restart"): ("restart", "_restart"),
    ("DELETE", "instance", "logout"): ("logout", "_logout"),
    ("POST", "message", "sendtext"): ("send_text", "_send_text"),
    ("POST", "chat", "findmessages"): ("find_messages", "_find_messages"),
    ("POST", "webhook", "set"): ("set_webhook", "_set_webhook"),
    ("GET", "webhook", "find"): ("find_webhook", "_find_webhook"),
}


class _Handler(StandinHandler):
    server_version = "StandinEvolution/1"
    garbage = b"<html><body>Bad gateway</body></html>"
    render = _render_page
    actions = _ACTIONS

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        control = self._control_path()
        if control is not None:
            self._control(control.strip("/"))
            return
        # Express: case-insensitive, one trailing slash allowed, params decoded.
        parts = path[1 : -1 if path.endswith("/") and len(path) > 1 else None].split("/")
        if self.command == "GET" and parts == [""]:
            self._json(200, self._welcome())
        elif self.command == "GET" and [p.lower() for p in parts] == ["instance", "fetchinstances"]:
            self._answer("fetch_instances", self._fetch_instances)
        elif (
            len(parts) == 3
            and parts[2]
            and (self.command, parts[0].lower(), parts[1].lower()) in _ROUTES
        ):
            route, handler = _ROUTES[(self.command, parts[0].lower(), parts[1].lower())]
            instance = unquote(parts[2])
            self._answer(route, lambda: self._guarded(instance, getattr(self, handler)))
        else:
            self._not_found()

    def _guarded(self, instance: str, handler: Callable[[str], None]) -> None:
        # Evolution's order: instanceExistsGuard, then the apikey guard.
        if instance != self.standin.session:
            self._error(404, "Not Found", [f'The "{instance}" instance does not exist'])
        elif not self._key_ok():
            self._unauthorized()
        else:
            handler(instance)

    def _key_ok(self) -> bool:
        given = self.headers.get("apikey") or ""
        return hmac.compare_digest(given.encode(), self.standin.api_key.encode())

    # -- Evolution's routes ----------------------------------------------------

    def _welcome(self) -> dict[str, Any]:
        return {
            "status": 200,
            "message": "Welcome to the Evolution API, it is working!",
            "version": VERSION,
            "clientName": "evolution_exchange",
            "manager": f"http://{self.headers.get('Host', '')}/manager",
            "documentation": "https://doc.evolution-api.com",
        }

    def _connection_state(self, instance: str) -> None:
        self._json(200, {"instance": {"instanceName": instance, "state": self.standin.state}})

    def _connect(self, instance: str) -> None:
        number = parse_qs(urlsplit(self.path).query).get("number", [""])[0]
        self._json(200, self.standin._connect(number or None))

    def _restart(self, instance: str) -> None:
        self._json(200, self.standin._restart())

    def _logout(self, instance: str) -> None:
        if self.standin._logout():
            body = {
                "status": "SUCCESS",
                "error": False,
                "response": {"message": "Instance logged out"},
            }
            self._json(200, body)
        else:
            self._error(400, "Bad Request", [f'The "{instance}" instance is not connected'])

    def _fetch_instances(self) -> None:
        if not self._key_ok():
            self._unauthorized()
            return
        name = parse_qs(urlsplit(self.path).query).get("instanceName", [""])[0]
        if name and name != self.standin.session:
            self._error(404, "Not Found", [f'Instance "{name}" not found'])
            return
        self._json(200, [self.standin._instance_record()])

    def _send_text(self, instance: str) -> None:
        body = self._body()
        if body is None:
            return
        problems = _text_schema_problems(body)
        if problems:
            self._error(400, "Bad Request", [problems])
            return
        if not body["text"].strip():
            self._error(400, "Bad Request", ["Text is required"])
            return
        if _jid(body["number"]).startswith("@"):
            # No number in it: WhatsApp's check finds no such account.
            jid, number = _jid(body["number"]), body["number"]
            self._error(400, "Bad Request", [{"jid": jid, "exists": False, "number": number}])
            return
        call, data = self.standin._send(body["number"], body["text"])
        echo = data is not None and call.mode != "closed_after_send"
        mode = self.standin.echo_mode
        if echo and mode == "before_answer":
            self.standin._emit("send.message", data)
        if call.mode == "ok" and data is not None:
            self._json(201, data)
        elif call.mode == "ok":
            # The number check met the closed connection, outside the send's try.
            self._error(500, "Internal Server Error", "Connection Closed")
        elif call.mode == "not_on_whatsapp":
            jid = _jid(call.number)
            self._error(400, "Bad Request", [{"jid": jid, "exists": False, "number": call.number}])
        elif call.mode == "schema":
            self._error(400, "Bad Request", [['instance requires property "text"']])
        elif call.mode in ("closed_after_send", "closed_before_send"):
            self._error(400, "Bad Request", [CONNECTION_CLOSED_ERROR])
        elif call.mode == "unauthorized":
            self._unauthorized()
        elif call.mode == "no_instance":
            self._error(404, "Not Found", [f'The "{instance}" instance does not exist'])
        elif call.mode == "error500":
            self._error(500, "Internal Server Error", "Connection Closed")
        else:
            self._fail(call.mode)  # hang, drop
        if echo and mode == "after_answer":
            self.standin._emit("send.message", data)

    def _find_messages(self, instance: str) -> None:
        body = self._body()
        if body is not None:
            self._json(200, self.standin._find(body if isinstance(body, dict) else {}))

    def _set_webhook(self, instance: str) -> None:
        body = self._body()
        if body is None:
            return
        problems = _webhook_schema_problems(body)
        if problems:
            self._error(400, "Bad Request", [problems])
            return
        self._json(201, self.standin._set_webhook(body["webhook"]))

    def _find_webhook(self, instance: str) -> None:
        self._json(200, self.standin.webhook)

    # -- Express and Evolution's answers ------------------------------------------

    def _body(self) -> Any:
        """What express.json() makes of the body, or None after its error answer."""
        raw = self._read_body()
        if "json" not in (self.headers.get("Content-Type") or "").lower():
            return {}
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return {}
        try:
            if text[0] not in "{[":
                raise ValueError(f"Unexpected token {text[0]} in JSON at position 0")
            return json.loads(text)
        except ValueError as exc:
            # body-parser's SyntaxError (status 400) through Evolution's error handler.
            self._error(400, "Internal Server Error", str(exc))
            return None

    def _unauthorized(self) -> None:
        self._error(401, "Unauthorized", "Unauthorized")

    def _error(self, code: int, error: str, message: object) -> None:
        self._json(code, {"status": code, "error": error, "response": {"message": message}})

    def _not_found(self) -> None:
        self._error(404, "Not Found", [f"Cannot {self.command} {self.path}"])

    def _error500(self) -> None:
        self._error(500, "Internal Server Error", "stand-in error")

    # -- the control page --------------------------------------------------------

    def _control(self, action: str) -> None:
        if self.command == "GET" and action == "":
            self._control_page()
        elif self.command != "POST":
            self._not_found()
        else:
            self._control_post(action)

    def _no_such_control(self) -> None:
        self._not_found()


def _text_schema_problems(body: object) -> list[str]:
    """textMessageSchema through jsonschema, as Evolution's dataValidate words it."""
    body = body if isinstance(body, dict) else {}
    problems = []
    types = {"number": str, "text": str, "linkPreview": bool, "delay": int}
    for name, kind in types.items():
        if name in body and not (
            isinstance(body[name], kind) and not (kind is int and isinstance(body[name], bool))
        ):
            # A property with a description is reported by it.
            described = {"number": "Invalid format", "delay": "Enter a value in milliseconds"}
            word = {str: "string", bool: "boolean", int: "integer"}[kind]
            problems.append(described.get(name, f"{name} is not of a type(s) {word}"))
    problems += [f'instance requires property "{n}"' for n in ("number", "text") if n not in body]
    return problems


def _webhook_schema_problems(body: object) -> list[str]:
    """webhookSchema, as dataValidate words it."""
    if not isinstance(body, dict) or "webhook" not in body:
        return ['instance requires property "webhook"']
    hook = body["webhook"]
    if not isinstance(hook, dict):
        return ["webhook is not of a type(s) object"]
    problems = []
    types = {
        "enabled": bool,
        "url": str,
        "headers": dict,
        "byEvents": bool,
        "base64": bool,
        "events": list,
    }
    words = {bool: "boolean", str: "string", dict: "object", list: "array"}
    for name, kind in types.items():
        if name in hook and not isinstance(hook[name], kind):
            problems.append(f"webhook.{name} is not of a type(s) {words[kind]}")
    for index, event in enumerate(
        hook.get("events") if isinstance(hook.get("events"), list) else []
    ):
        if event not in EVENTS:
            problems.append(
                f"webhook.events[{index}] is not one of enum values: {','.join(EVENTS)}"
            )
    problems += [f'webhook requires property "{n}"' for n in ("enabled", "url") if n not in hook]
    # isNotEmpty's `if`: only when every key is one of the two (its propertyNames enum).
    if set(hook) <= {"enabled", "url"} and hook.get("url") == "":
        problems.append('The "url" cannot be empty')
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = command_line(
        "Stand-in for the Evolution API: speaks its API, sends NOTHING to WhatsApp.", port=8080
    )
    add_webhook_options(
        parser,
        api_key="the apikey it takes (GATEWAY_API_KEY)",
        webhook_url="where to post its webhooks",
        webhook_secret="the webhook's jwt_key (GATEWAY_WEBHOOK_SECRET)",
    )
    parser.add_argument("--instance", default="default", help="the instance name (GATEWAY_SESSION)")
    add_show_qr(parser, "start waiting for a QR scan (a fresh instance)")
    args = parser.parse_args(argv)
    standin = EvolutionStandin(
        args.port,
        session=args.instance,
        logged_in=not args.show_qr,
        **webhook_standin_options(args),
    )
    serve(standin, "STAND-IN Evolution API", f" (instance {standin.session})")


if __name__ == "__main__":
    main()
