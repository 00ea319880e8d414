"""A stand-in for WAHA (the WhatsApp HTTP API): it speaks its API and posts its webhooks, sends nothing.

Run it where no real WAHA runs (``GATEWAY_URL=http://127.0.0.1:3000``)::

    python -m statecore.whatsapp.standin_waha --port 3000 --api-key K \\
        --webhook-url http://127.0.0.1:8000/gateway/webhook --webhook-secret S [--show-qr]

Without ``--api-key`` and ``--webhook-secret`` it reads ``GATEWAY_API_KEY`` and
``GATEWAY_WEBHOOK_SECRET`` from its environment, so no secret need stand on a
command line (``ps`` shows those to anyone on the machine).

Every route the waha adapter uses answers as GATEWAY.md section 2 says the
real one does (paths, status codes, bodies, the `X-Api-Key` check and its
401), for the engine chosen (WEBJS, NOWEB, GOWS: their send answers and
message bodies differ). Events are posted to the webhook the way WAHA posts
them (its envelope, `X-Webhook-*` headers, HMAC-SHA512 of the raw body), to
the global webhook given here (like `WHATSAPP_HOOK_URL`) and to every webhook
in the session's config. Every send is printed, labelled STAND-IN, and nothing
reaches WhatsApp. A person steers it from the control page at ``/_standin/``;
tests steer the same class through its methods (``tests/fake_waha.py``), so
the stand-in and the tests cannot drift apart. The server itself (its life,
send modes, records, webhook posting, control page plumbing) is
``standin_server``'s, shared by every stand-in.

What a send mode means for ``SendCall.delivered`` (would a customer have got
it?): ``"ok"`` delivers while the session is WORKING and otherwise answers
WAHA's 422 "not as expected" (it checks before sending). ``"not_working"``
(that 422 whatever the session), ``"validation"`` (400), ``"unauthorized"``
(401), ``"unprocessable"`` (a 422 without ``expected``) and ``"down"`` (the
port stops listening) never deliver. ``"error500"``, ``"hang"`` and
``"drop"`` deliver: they are placed *after* the point of no return, the
message reached WhatsApp and the answer was lost. That is the case
``maybe_sent`` exists for, and the one a sender that retries blindly turns
into a duplicate. A delivered send is echoed (``message.any``, ``source:
"api"``) as ``echo_mode`` says: before the HTTP answer (WAHA's own order),
after it, or never.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import html
import io
import json
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from .standin_server import (
    ECHO_MODES,
    StandinHandler,
    WebhookStandin,
    add_show_qr,
    add_webhook_options,
    bullets,
    button,
    check,
    command_line,
    counted,
    describe_error,
    iso_z,
    js_json,
    knob,
    new_inbound_id,
    new_qr_string,
    new_sent_id,
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

# What /api/sendText can be told to do. "down" is server-wide: the port stops listening.
SEND_MODES = (
    "ok",
    "not_working",
    "validation",
    "unauthorized",
    "unprocessable",
    "error500",
    "hang",
    "drop",
    "down",
)
# The modes that model a failure after the message went out (see the docstring).
DELIVERING_FAILURES = ("error500", "hang", "drop")
# How the other routes can be told to fail instead of answering.
FAILURE_MODES = ("error500", "hang", "garbage", "drop")
FAILING_ROUTES = (
    "session",
    "me",
    "qr",
    "request_code",
    "chat_messages",
    "restart",
    "logout",
    "start",
    "stop",
    "update",
)
STATUSES = (
    "STOPPED",
    "STARTING",
    "SCAN_QR_CODE",
    "WORKING",
    "FAILED",
    "PASSKEY_REQUIRED",
    "PASSKEY_CONFIRMATION_REQUIRED",
)
ENGINES = ("WEBJS", "NOWEB", "GOWS")
# A customer's message kinds add_customer_message can make (None: text).
MEDIA_KINDS = ("image", "video", "ptt", "audio", "document", "sticker", "location")
# What the global webhook subscribes to unless told otherwise (the adapter's plan).
DEFAULT_HOOK_EVENTS = ("message.any", "message.ack", "session.status")
VERSION = "2026.7.1"
DEFAULT_ACCOUNT = {"id": "923009876543@c.us", "pushName": "Stand-in shop"}
DEFAULT_PAIRING_CODE = "WXYZ-1234"
UNAUTHORIZED = {"message": "Unauthorized", "statusCode": 401}
NOT_EXPECTED = "Session status is not as expected. Try again later or restart the session"
NOWEB_STORE_ERROR = (
    'Enable NOWEB store "config.noweb.store.enabled=True" and '
    '"config.noweb.store.full_sync=True" when starting a new session. '
    "Read more: https://waha.devlike.pro/docs/engines/noweb#store"
)
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# How long a knob waits for its webhook to be answered.
POST_TIMEOUT = 15.0


@dataclass(frozen=True)
class SendCall:
    """One /api/sendText that got past the key and body checks, whatever it answered.

    ``gateway_id`` is the short id WhatsApp would hold for it (the part of
    ``true_<chat>_<id>`` after the chat): set when ``delivered``, even when the
    caller never saw it (a hang, a drop), "" otherwise.
    """

    chat_id: str
    text: str
    mode: str
    gateway_id: str
    delivered: bool


@dataclass(frozen=True)
class WebhookPost:
    """One webhook the stand-in posted: the HTTP status it got, or 0 and the error."""

    event: str
    url: str
    status: int
    error: str = ""


# --- the bodies WAHA sends --------------------------------------------------------------


# WAHA's webhook bodies and answers are JSON.stringify's.
serialize = js_json


def sign(body: bytes, secret: str) -> dict[str, str]:
    """The headers WAHA sends with a webhook body: a request id and the time (ms), and,
    with an HMAC key, the hex HMAC-SHA512 of the raw body and its algorithm."""
    headers = {
        "X-Webhook-Request-Id": "req_" + _ulid(),
        "X-Webhook-Timestamp": str(_now_ms()),
    }
    if secret:
        headers["X-Webhook-Hmac"] = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        headers["X-Webhook-Hmac-Algorithm"] = "sha512"
    return headers


def environment(engine: str = "WEBJS") -> dict[str, Any]:
    """The `environment` of WAHA's envelope."""
    return {
        "version": VERSION,
        "engine": engine,
        "tier": "CORE",
        "browser": "/usr/bin/chromium" if engine == "WEBJS" else None,
        "platform": "linux/x64",
        "worker": {"id": None},
    }


def envelope(
    event: str,
    payload: dict[str, Any],
    *,
    session: str = "default",
    engine: str = "WEBJS",
    me: dict[str, Any] | None = dict(DEFAULT_ACCOUNT),  # noqa: B006 - never mutated
    id: str | None = None,  # WAHA's own field names, builtins shadowed on purpose
    timestamp: int | None = None,
) -> dict[str, Any]:
    """One webhook body as WAHA posts it, in its key order."""
    body: dict[str, Any] = {
        "id": id if id is not None else new_event_id(),
        "timestamp": timestamp if timestamp is not None else _now_ms(),
        "event": event,
        "session": session,
    }
    if me is not None:
        body["me"] = dict(me)
    body.update({"payload": payload, "engine": engine, "environment": environment(engine)})
    return body


def message_payload(
    text: str = "",
    *,
    chat: str,
    engine: str = "WEBJS",
    from_me: bool = False,
    source: str | None = None,
    short_id: str | None = None,
    timestamp: int | None = None,
    name: str = "",
    participant: str | None = None,
    phone: str | None = None,
    media: str | None = None,
    me_id: str = DEFAULT_ACCOUNT["id"],
) -> dict[str, Any]:
    """A message (WAHA's WAMessage) as this engine gives it in events and chat lists.

    ``chat``: the chat id; ``participant``: a group's sender; ``phone``: the
    person's number beside a hidden ``@lid`` chat (NOWEB and GOWS give it);
    ``media``: one of MEDIA_KINDS (``text`` is then its caption)."""
    if media is not None and media not in MEDIA_KINDS:
        raise ValueError(f"unknown media {media!r}; expected one of {', '.join(MEDIA_KINDS)}")
    _check(engine, ENGINES)
    short_id = short_id or (new_sent_id() if from_me else new_inbound_id())
    timestamp = int(time.time()) if timestamp is None else timestamp
    group = chat.endswith("@g.us")
    serialized = f"{'true' if from_me else 'false'}_{chat}_{short_id}"
    if group and participant and not from_me:
        serialized += f"_{participant}"
    has_media = media is not None and media != "location"
    message: dict[str, Any] = {"id": serialized, "timestamp": timestamp}
    if engine == "WEBJS":
        # whatsapp-web.js: `from` is us for our own messages, `to` the chat.
        message.update({"from": me_id if from_me else chat, "fromMe": from_me})
        if source is not None:
            message["source"] = source
        message.update(
            {"to": chat if from_me else me_id, "participant": participant if group else None}
        )
    else:
        # Baileys and whatsmeow: `from` is the chat, `to` only for a group.
        message.update({"from": chat, "fromMe": from_me})
        if source is not None:
            message["source"] = source
        if group:
            message["to"] = chat
        message["participant"] = participant if group else None
    message.update(
        {
            "body": text,
            "hasMedia": has_media,
            "media": None,
            "ack": 1 if from_me else 2,
            "ackName": "SERVER" if from_me else "DEVICE",
        }
    )
    if media == "location":
        message["location"] = {"latitude": 24.8607, "longitude": 67.0011, "description": text}
    message.update(
        {
            "vCards": [],
            "replyTo": None,
            "_data": _raw(
                engine, text, chat, short_id, from_me, timestamp, name, participant, phone, media
            ),
        }
    )
    return message


def _raw(
    engine: str,
    text: str,
    chat: str,
    short_id: str,
    from_me: bool,
    timestamp: int,
    name: str,
    participant: str | None,
    phone: str | None,
    media: str | None,
) -> dict[str, Any]:
    """The engine's own message (`_data`), the fields the adapter may read."""
    if engine == "WEBJS":
        raw = {
            "id": {
                "fromMe": from_me,
                "remote": chat,
                "id": short_id,
                "_serialized": f"{'true' if from_me else 'false'}_{chat}_{short_id}",
            },
            "type": media or "chat",
            "t": timestamp,
            "notifyName": name,
            "from": chat,
            "body": text,
        }
        if participant:
            raw["author"] = participant
        return raw
    jid = _jid(chat)
    content = _content(text, media)
    if engine == "NOWEB":
        key: dict[str, Any] = {"remoteJid": jid, "fromMe": from_me, "id": short_id}
        if participant:
            key["participant"] = _jid(participant)
        if phone:
            key["remoteJidAlt"] = _jid(chat_of(phone))
        return {
            "key": key,
            "messageTimestamp": timestamp,
            "pushName": name,
            "broadcast": False,
            "message": content,
        }
    info: dict[str, Any] = {
        "Chat": jid,
        "Sender": _jid(participant) if participant else jid,
        "IsFromMe": from_me,
        "IsGroup": chat.endswith("@g.us"),
        "ID": short_id,
        "Type": "media" if media else "text",
        "PushName": name,
        "Timestamp": datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z"),
        "MediaType": media or "",
    }
    if phone:
        info["RecipientAlt" if from_me else "SenderAlt"] = _jid(chat_of(phone))
    return {"Info": info, "Message": content}


def _content(text: str, media: str | None) -> dict[str, Any]:
    """A message's content under Baileys' and whatsmeow's protobuf names."""
    if media is None:
        return {"conversation": text}
    if media == "location":
        return {"locationMessage": {"degreesLatitude": 24.8607, "degreesLongitude": 67.0011}}
    mimetypes = {
        "image": "image/jpeg",
        "video": "video/mp4",
        "ptt": "audio/ogg; codecs=opus",
        "audio": "audio/mpeg",
        "document": "application/pdf",
        "sticker": "image/webp",
    }
    part: dict[str, Any] = {"mimetype": mimetypes[media]}
    if text and media in ("image", "video", "document"):
        part["caption"] = text
    if media in ("ptt", "audio"):
        part["ptt"] = media == "ptt"
    name = {"ptt": "audioMessage"}.get(media, f"{media}Message")
    return {name: part}


def message_event(
    text: str = "Hello",
    *,
    sender: str = "923001234567",
    name: str = "Ayesha Khan",
    event: str = "message",
    engine: str = "WEBJS",
    session: str = "default",
    media: str | None = None,
    phone: str | None = None,
    participant: str | None = None,
    short_id: str | None = None,
    timestamp: int | None = None,
    from_me: bool = False,
    source: str | None = None,
    me: dict[str, Any] | None = dict(DEFAULT_ACCOUNT),  # noqa: B006 - never mutated
) -> dict[str, Any]:
    """A `message` / `message.any` webhook body; ``sender`` is the chat (digits get @c.us)."""
    chat = chat_of(sender)
    if chat.endswith("@g.us") and participant is None and not from_me:
        participant = "923005550000@c.us"
    payload = message_payload(
        text,
        chat=chat,
        engine=engine,
        from_me=from_me,
        source=source,
        short_id=short_id,
        timestamp=timestamp,
        name=name,
        participant=participant,
        phone=phone,
        media=media,
        me_id=(me or DEFAULT_ACCOUNT)["id"],
    )
    return envelope(event, payload, session=session, engine=engine, me=me)


def session_event(
    status: str,
    *,
    data: dict[str, Any] | None = None,
    session: str = "default",
    engine: str = "WEBJS",
    me: dict[str, Any] | None = None,
    statuses: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `session.status` webhook body (no QR in it: WAHA's QR is fetched)."""
    points = statuses if statuses is not None else [{"status": status, "timestamp": _now_ms()}]
    payload = {"name": session, "status": status, "statuses": points, "data": data}
    return envelope("session.status", payload, session=session, engine=engine, me=me)


def ack_event(
    gateway_id: str,
    *,
    chat: str = "923001234567@c.us",
    ack_name: str = "ERROR",
    from_me: bool = True,
    session: str = "default",
    engine: str = "WEBJS",
    me: dict[str, Any] | None = dict(DEFAULT_ACCOUNT),  # noqa: B006 - never mutated
) -> dict[str, Any]:
    """A `message.ack` webhook body for the message ``gateway_id`` (its short id) in ``chat``."""
    ack = {name: number for number, name in ACK_NAMES.items()}[ack_name]
    me_id = (me or DEFAULT_ACCOUNT)["id"]
    payload = {
        "id": f"{'true' if from_me else 'false'}_{chat}_{gateway_id}",
        "from": me_id if from_me else chat,
        "to": chat if from_me else me_id,
        "participant": None,
        "fromMe": from_me,
        "ack": ack,
        "ackName": ack_name,
    }
    return envelope("message.ack", payload, session=session, engine=engine, me=me)


def chat_of(address: str) -> str:
    """WAHA's ensureSuffix: a chat id as given, or digits with `@c.us`."""
    return address if "@" in address else f"{address}@c.us"


def new_event_id() -> str:
    """An event id as WAHA makes them: `evt_` and a lower-case ULID."""
    return "evt_" + _ulid()


def _ulid() -> str:
    """A lower-case ULID: 48 bits of milliseconds and 80 random bits, Crockford base 32."""
    value = (_now_ms() << 80) | int.from_bytes(os.urandom(10), "big")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _jid(chat: str) -> str:
    """An engine's raw form of a chat id: a person is `@s.whatsapp.net` there."""
    user, _, domain = chat.rpartition("@")
    return f"{user}@s.whatsapp.net" if domain == "c.us" else chat


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- the stand-in -----------------------------------------------------------------------


class WahaStandin(WebhookStandin):
    """An HTTP server on ``host:port`` answering like WAHA, one session (``session``).

    ``port=0`` picks a free port; ``url`` is the ``GATEWAY_URL`` to use. It starts
    WORKING (linked to DEFAULT_ACCOUNT); ``logged_in=False`` starts showing a QR.
    Thread-safe: knobs can be turned and records read while requests run.
    """

    kind = "waha"
    label = "STAND-IN WAHA"
    send_modes = SEND_MODES
    failing_routes = FAILING_ROUTES
    failure_modes = FAILURE_MODES
    check_word = "value"
    echo_said = "echoes of our sends: {}"
    # WAHA's queue goes with its process: what was not posted yet is dropped.
    finish_posts_on_stop = False

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str,
        webhook_url: str | None = None,
        webhook_secret: str = "",
        session: str = "default",
        engine: str = "WEBJS",
        host: str = "127.0.0.1",
        announce: bool = False,
        logged_in: bool = True,
        hang_seconds: float = 60.0,
        wait_seconds: float = 0.0,
    ) -> None:
        _check(engine, ENGINES)
        super().__init__(host, port, handler=_Handler, announce=announce, hang_seconds=hang_seconds)
        self.api_key = api_key
        self.session = session
        # WAHA waits up to 5 s for the session to reach the status a route needs.
        self.wait_seconds = wait_seconds
        # The global webhook (WHATSAPP_HOOK_URL, _EVENTS, _HMAC_KEY); plain knobs.
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_events: tuple[str, ...] = DEFAULT_HOOK_EVENTS
        # Some WAHA versions answered a send with 201 and no body.
        self.empty_201 = False
        # NOWEB lists a chat's messages only with its store on (off by default in WAHA).
        self.noweb_store = False
        self.pairing_code = DEFAULT_PAIRING_CODE
        self._engine = engine
        self._account = dict(DEFAULT_ACCOUNT)
        self._me: dict[str, Any] | None = dict(DEFAULT_ACCOUNT) if logged_in else None
        self._status = "WORKING" if logged_in else "SCAN_QR_CODE"
        self._qr: str | None = None if logged_in else new_qr_string()
        self._history: deque[dict[str, Any]] = deque(
            [{"status": self._status, "timestamp": _now_ms()}], maxlen=3
        )
        self._config: dict[str, Any] | None = None
        self._chats: dict[str, list[dict[str, Any]]] = {}
        # A hidden contact's @lid chat -> their @c.us chat, where the engine knows it.
        self._aliases: dict[str, str] = {}
        self._posts: list[WebhookPost] = []
        self._pairing_requests: list[str] = []

    # -- the session --------------------------------------------------------

    @property
    def status(self) -> str:
        """The session's status as WAHA names it."""
        with self._lock:
            return self._status

    @property
    def qr(self) -> str | None:
        """The QR string while SCAN_QR_CODE, else None."""
        with self._lock:
            return self._qr

    @property
    def me(self) -> dict[str, Any] | None:
        """The linked account (`id`, `pushName`), None when logged out."""
        with self._lock:
            return dict(self._me) if self._me else None

    @property
    def config(self) -> dict[str, Any] | None:
        """The session's config as `PUT /api/sessions/<s>` left it (a copy)."""
        with self._lock:
            return copy.deepcopy(self._config)

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, value: str) -> None:
        _check(value, ENGINES)
        self._engine = value
        self._say(f"engine is now {value}")

    def set_status(self, status: str, *, data: dict[str, Any] | None = None) -> None:
        """The session turns ``status`` (posting `session.status`): SCAN_QR_CODE shows a
        fresh QR and forgets the account; WORKING links the account again."""
        _check(status, STATUSES)
        with self._lock:
            self._status = status
            if status == "SCAN_QR_CODE":
                self._qr = self._qr or new_qr_string()
                self._me = None
            else:
                self._qr = None
            if status == "WORKING":
                self._me = dict(self._account)
            self._history.append({"status": status, "timestamp": _now_ms()})
            points = list(self._history)
        self._say(f"session is now {status}")
        self._emit(
            "session.status",
            {"name": self.session, "status": status, "statuses": points, "data": data},
        )

    def show_qr(self, text: str | None = None) -> str:
        """Logged out, waiting for a scan of ``text`` (or a made-up QR). Returns the QR."""
        with self._lock:
            self._qr = text if text is not None else new_qr_string()
            qr = self._qr
        self.set_status("SCAN_QR_CODE")
        return qr

    def scan(self) -> None:
        """The phone scanned the QR (or entered the pairing code): WORKING."""
        self.set_status("WORKING")

    def set_account(self, number: str | None = None, name: str | None = None) -> None:
        """The account the phone links (its number and name); a None keeps that field."""
        with self._lock:
            if number is not None:
                self._account["id"] = f"{number}@c.us"
            if name is not None:
                self._account["pushName"] = name
            if self._me is not None:
                self._me = dict(self._account)
            account = dict(self._account)
        self._say(f"account is now {account}")

    def pairing_requests(self) -> list[str]:
        """The phone numbers a pairing code was asked for, oldest first."""
        with self._lock:
            return list(self._pairing_requests)

    def set_failure(self, route: str, mode: str | None) -> None:
        """``route`` (in FAILING_ROUTES) fails as ``mode`` (FAILURE_MODES), or answers with None."""
        self._set_failure(route, mode)

    # -- what happens on WhatsApp --------------------------------------------------

    def add_customer_message(
        self,
        text: str = "Hello",
        *,
        sender: str = "923001234567",
        name: str = "Ayesha Khan",
        media: str | None = None,
        phone: str | None = None,
        participant: str | None = None,
        short_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A customer writes: the message is kept in the chat (for the chat-messages
        route) and the `message` / `message.any` events posted, unless ``lose_webhooks``.

        ``sender``: digits or a chat id (`...@g.us`, `...@lid`); ``phone``: the
        number beside a `@lid` sender (NOWEB and GOWS give it). Returns the
        message as WAHA gives it (its `payload`)."""
        chat = chat_of(sender)
        if chat.endswith("@g.us") and participant is None:
            participant = "923005550000@c.us"
        payload = message_payload(
            text,
            chat=chat,
            engine=self._engine,
            short_id=short_id,
            timestamp=timestamp,
            name=name,
            participant=participant,
            phone=phone,
            media=media,
            me_id=self._me_id(),
        )
        self._keep(chat, payload, phone=phone)
        self._say(f"customer message {payload['id']} from {chat}: {text[:60]!r}")
        self._emit("message", payload)
        self._emit("message.any", payload)
        return copy.deepcopy(payload)

    def answer_from_phone(
        self, text: str, chat: str = "923001234567@c.us", *, media: str | None = None
    ) -> dict[str, Any]:
        """A person answers on the phone itself: `message.any` with `source: "app"`."""
        chat = chat_of(chat)
        payload = message_payload(
            text,
            chat=chat,
            engine=self._engine,
            from_me=True,
            source="app",
            media=media,
            me_id=self._me_id(),
        )
        self._keep(chat, payload)
        self._say(f"answered from the phone to {chat}: {text[:60]!r}")
        self._emit("message.any", payload)
        return copy.deepcopy(payload)

    def ack(self, gateway_id: str, ack_name: str, *, chat: str | None = None) -> list[WebhookPost]:
        """Post the `message.ack` of our message ``gateway_id`` (a short id)."""
        _check(ack_name, tuple(ACK_NAMES.values()))
        if chat is None:
            sent = [c for c in self.sends if c.gateway_id == gateway_id]
            chat = sent[-1].chat_id if sent else "923001234567@c.us"
        body = ack_event(
            gateway_id,
            chat=chat,
            ack_name=ack_name,
            session=self.session,
            engine=self._engine,
            me=self.me,
        )
        self._say(f"ack {ack_name} for {gateway_id}")
        return self._deliver(body)

    def fail_delivery(self, gateway_id: str, *, chat: str | None = None) -> list[WebhookPost]:
        """WhatsApp could not deliver our message after all: its `message.ack` ERROR."""
        return self.ack(gateway_id, "ERROR", chat=chat)

    def messages(self, chat: str | None = None) -> list[dict[str, Any]]:
        """The messages kept (all chats, or one), oldest first (copies)."""
        with self._lock:
            chats = [chat_of(chat)] if chat else list(self._chats)
            return [copy.deepcopy(m) for c in chats for m in self._chats.get(c, [])]

    # -- webhooks -------------------------------------------------------------------

    def post_webhook(self, body: dict[str, Any]) -> int:
        """Post ``body`` to ``webhook_url`` as WAHA would, signed with ``webhook_secret``;
        the HTTP status it got (0: no answer). ValueError without a webhook_url."""
        if not self.webhook_url:
            raise ValueError("no webhook_url to post to")
        raw = serialize(body)
        future = self._submit(
            str(body.get("event", "")), self.webhook_url, raw, self.webhook_secret, []
        )
        return future.result(timeout=POST_TIMEOUT).status

    def posts(self) -> list[WebhookPost]:
        """Every webhook posted, oldest first."""
        with self._lock:
            return list(self._posts)

    def _emit(self, event: str, payload: dict[str, Any], *, wait: bool = True) -> list[WebhookPost]:
        body = envelope(event, payload, session=self.session, engine=self._engine, me=self.me)
        return self._deliver(body, wait=wait)

    def _deliver(self, body: dict[str, Any], *, wait: bool = True) -> list[WebhookPost]:
        """Post ``body`` to every webhook subscribed to its event (WAHA's own: the global
        one and the session config's). Waits for the answers unless ``wait`` is False."""
        if self.lose_webhooks:
            return []
        raw = serialize(body)
        futures = [
            self._submit(body["event"], url, raw, key, headers)
            for url, key, headers in self._targets(body["event"])
        ]
        if not wait:
            return []
        return [future.result(timeout=POST_TIMEOUT) for future in futures]

    def _targets(self, event: str) -> list[tuple[str, str, list[dict[str, Any]]]]:
        targets = []
        if self.webhook_url and (event in self.webhook_events or "*" in self.webhook_events):
            targets.append((self.webhook_url, self.webhook_secret, []))
        with self._lock:
            hooks = (self._config or {}).get("webhooks") or []
            for hook in hooks:
                events = hook.get("events") or []
                if event in events or "*" in events:
                    key = (hook.get("hmac") or {}).get("key") or ""
                    targets.append((hook["url"], key, hook.get("customHeaders") or []))
        return targets

    def _submit(
        self, event: str, url: str, raw: bytes, key: str, custom: list[dict[str, Any]]
    ) -> Future[WebhookPost]:
        return self._poster.submit(self._post, event, url, raw, key, custom)

    def _post(
        self, event: str, url: str, raw: bytes, key: str, custom: list[dict[str, Any]]
    ) -> WebhookPost:
        headers = {"Content-Type": "application/json", "User-Agent": f"WAHA/{VERSION}"}
        headers.update({h["name"]: h["value"] for h in custom if "name" in h and "value" in h})
        headers.update(sign(raw, key))
        try:
            posted = WebhookPost(event, url, post(url, raw, headers).status_code)
        except httpx.HTTPError as exc:
            posted = WebhookPost(event, url, 0, describe_error(exc))
        with self._lock:
            self._posts.append(posted)
        self._say(f"webhook {event} -> {url}: {posted.status or posted.error}")
        return posted

    # -- used by the handler ------------------------------------------------------------

    def _me_id(self) -> str:
        with self._lock:
            return (self._me or self._account)["id"]

    def _keep(self, chat: str, payload: dict[str, Any], *, phone: str | None = None) -> None:
        with self._lock:
            self._chats.setdefault(chat, []).append(copy.deepcopy(payload))
            if phone and chat.endswith("@lid"):
                self._aliases[chat] = chat_of(phone)

    def _wait_for(self, wanted: str) -> bool:
        """WAHA waits a while for the status a route needs; True when it is there."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if self.status == wanted:
                return True
            if time.monotonic() >= deadline or self._release.wait(0.05):
                return False

    def _send(self, chat: str, text: str) -> tuple[SendCall, dict[str, Any] | None]:
        """Decide and record one send that passed the key and body checks."""
        with self._lock:
            mode = self._next_send_mode()
            delivered = (mode == "ok" and self._status == "WORKING") or mode in DELIVERING_FAILURES
            payload = None
            if delivered:
                payload = message_payload(
                    text,
                    chat=chat,
                    engine=self._engine,
                    from_me=True,
                    source="api",
                    me_id=self._me_id(),
                )
                self._chats.setdefault(chat, []).append(copy.deepcopy(payload))
            gateway_id = payload["id"].split("_")[2] if payload else ""
            call = SendCall(chat, text, mode, gateway_id, delivered)
            self._sends.append(call)
        if delivered:
            self._announce_send(chat, gateway_id, mode, text)
        return call, payload

    def _chat_messages(self, chat: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """A chat's messages as the route lists them: filtered, newest first by default."""
        with self._lock:
            same = {chat} | {lid for lid, phone in self._aliases.items() if phone == chat}
            same |= {self._aliases[chat]} if chat in self._aliases else set()
            found = [copy.deepcopy(m) for c in same for m in self._chats.get(c, [])]
        from_me = query.get("filter.fromMe")
        if from_me in ("true", "false"):
            found = [m for m in found if m["fromMe"] is (from_me == "true")]
        for key, keep in (
            ("filter.timestamp.gte", lambda t, bound: t >= bound),
            ("filter.timestamp.lte", lambda t, bound: t <= bound),
        ):
            if key in query:
                bound = float(query[key])
                found = [m for m in found if keep(m["timestamp"], bound)]
        found.sort(key=lambda m: m["timestamp"], reverse=query.get("sortOrder", "desc") != "asc")
        offset = int(float(query.get("offset", "0") or 0))
        limit = int(float(query.get("limit", "10") or 10))
        for message in found:
            message.pop("source", None)  # `source` is in events only
        return found[offset : offset + limit]

    def _restart_session(self) -> None:
        """STOPPED, STARTING, then WORKING with the login kept (SCAN_QR_CODE without
        one), each posted as it happens."""
        linked = self.me is not None
        self.set_status("STOPPED")
        self.set_status("STARTING")
        self.set_status("WORKING" if linked else "SCAN_QR_CODE")

    def _session_info(self) -> dict[str, Any]:
        with self._lock:
            engine: dict[str, Any] = {"engine": self._engine}
            if self._engine == "WEBJS":
                engine.update({"WWebVersion": "2.3000.1023204200", "state": "CONNECTED"})
            return {
                "name": self.session,
                "status": self._status,
                "config": copy.deepcopy(self._config),
                "me": dict(self._me) if self._me else None,
                "assignedWorker": None,
                "presence": None,
                "timestamps": {"activity": _now_ms()},
                "engine": engine,
            }

    def _session_dto(self, status: str | None = None) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.session,
                "status": status or self._status,
                "config": copy.deepcopy(self._config),
            }

    def _state_for_page(self) -> dict[str, Any]:
        with self._lock:
            hooks = [
                {"url": h.get("url", ""), "events": h.get("events") or []}
                for h in (self._config or {}).get("webhooks") or []
            ]
            return {
                **self._shared_page_state(),
                "status": self._status,
                "qr": self._qr,
                "me": dict(self._me) if self._me else None,
                "account": dict(self._account),
                "engine": self._engine,
                "empty_201": self.empty_201,
                "webhook_url": self.webhook_url or "",
                "signed": bool(self.webhook_secret),
                "webhook_events": list(self.webhook_events),
                "session_hooks": hooks,
                "messages": [m for c in self._chats.values() for m in c][-20:],
                "posts": list(self._posts[-20:]),
            }


def _send_answer(engine: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What /api/sendText answers (201) on each engine for the message just sent."""
    # The message's id is `true_<chat>_<short id>` on every engine.
    _, chat, short = payload["id"].split("_")[:3]
    if engine == "WEBJS":
        # whatsapp-web.js's Message object, as JSON.
        return {
            "_data": payload["_data"],
            "id": payload["_data"]["id"],
            "ack": 0,
            "hasMedia": False,
            "body": payload["body"],
            "type": "chat",
            "timestamp": payload["timestamp"],
            "from": payload["from"],
            "to": chat,
            "deviceType": "web",
            "isForwarded": False,
            "forwardingScore": 0,
            "isStatus": False,
            "isStarred": False,
            "fromMe": True,
            "hasQuotedMsg": False,
            "hasReaction": False,
            "vCards": [],
            "mentionedIds": [],
            "groupMentions": [],
            "isGif": False,
            "links": [],
        }
    key = {"remoteJid": _jid(chat), "fromMe": True, "id": short}
    if engine == "NOWEB":
        # Baileys' WebMessageInfo as sendMessage returns it.
        return {
            "key": key,
            "message": {"extendedTextMessage": {"text": payload["body"]}},
            "messageTimestamp": str(payload["timestamp"]),
            "status": "PENDING",
        }
    return {
        "key": key,
        "message": {"conversation": payload["body"]},
        "messageTimestamp": payload["timestamp"],
        "status": "PENDING",
    }


def _config_problems(body: object, config: object) -> list[str]:
    """class-validator's complaints about a session update, as WAHA lists them."""
    if not isinstance(body, dict):
        return ["body must be an object"]
    if config is None:
        return []
    if not isinstance(config, dict):
        return ["config must be an object"]
    hooks = config.get("webhooks")
    if hooks is None:
        return []
    if not isinstance(hooks, list):
        return ["config.webhooks must be an array"]
    problems = []
    for index, hook in enumerate(hooks):
        if not isinstance(hook, dict):
            problems.append(f"config.webhooks.{index} must be an object")
            continue
        if not isinstance(hook.get("url"), str):
            problems.append(f"config.webhooks.{index}.url must be a string")
        if not isinstance(hook.get("events"), list):
            problems.append(f"config.webhooks.{index}.events must be an array")
        hmac_config = hook.get("hmac")
        if hmac_config is not None and not isinstance(hmac_config, dict):
            problems.append(f"config.webhooks.{index}.hmac must be an object")
    return problems


def _png(text: str) -> bytes:
    import segno

    buffer = io.BytesIO()
    segno.make(text or "-", error="l").save(buffer, kind="png", scale=4)
    return buffer.getvalue()


# -- the control page -------------------------------------------------------------------


def _act_customer_message(standin: WahaStandin, form: dict[str, str]) -> None:
    standin.add_customer_message(
        form.get("text", ""),
        sender=form.get("sender") or "923001234567",
        name=form.get("name") or "Ayesha Khan",
        media=form.get("media") or None,
    )


def _act_fail_delivery(standin: WahaStandin, form: dict[str, str]) -> None:
    if not form.get("gateway_id"):
        raise ValueError("which message? give its gateway id")
    standin.fail_delivery(form["gateway_id"])


_ACTIONS: dict[str, Callable[[WahaStandin, dict[str, str]], object]] = {
    "status": lambda standin, form: standin.set_status(form.get("status", "")),
    "show-qr": lambda standin, form: standin.show_qr(),
    "scan": lambda standin, form: standin.scan(),
    "engine": lambda standin, form: setattr(standin, "engine", form.get("engine", "")),
    "empty-201": lambda standin, form: setattr(standin, "empty_201", form.get("value") == "on"),
    "lose-webhooks": lambda standin, form: setattr(
        standin, "lose_webhooks", form.get("value") == "on"
    ),
    "echo-mode": lambda standin, form: setattr(standin, "echo_mode", form.get("mode", "")),
    "send-mode": lambda standin, form: standin.set_send_mode_from_page(form.get("mode", "")),
    "customer-message": _act_customer_message,
    "phone-answer": lambda standin, form: standin.answer_from_phone(
        form.get("text", ""), form.get("chat") or "923001234567@c.us"
    ),
    "fail-delivery": _act_fail_delivery,
    "account": lambda standin, form: standin.set_account(
        form.get("number") or None, form.get("name") or None
    ),
    "webhook-url": lambda standin, form: setattr(standin, "webhook_url", form.get("url") or None),
}


def _toggle(action: str, label: str, value: bool) -> str:
    return f"{html.escape(label)}: <strong>{'on' if value else 'off'}</strong> " + button(
        action, "turn off" if value else "turn on", value="off" if value else "on"
    )


def _render_page(standin: WahaStandin) -> str:
    """The control page: every value escaped, every control a plain form (no JavaScript).
    Never the API key, the webhook secret or a configured webhook's HMAC key."""
    state = standin._state_for_page()
    e = html.escape
    me = state["me"]
    account = f"{me['id']} ({me['pushName']})" if me else "none (logged out)"
    failures = ", ".join(f"{k}: {v}" for k, v in state["failures"].items()) or "none"
    hooks = "; ".join(
        f"{h['url']} ({', '.join(map(str, h['events']))})" for h in state["session_hooks"]
    )
    shown = bullets(
        f"Session: <strong>{e(state['status'])}</strong>; engine {e(state['engine'])}",
        f"QR: <code>{e(state['qr'] or 'none')}</code>",
        f"Account: {e(account)}",
        f"Send mode: <strong>{e(state['send_mode'])}</strong>; "
        f"queued: {e(', '.join(state['queued']) or 'none')};\n"
        f"echoes: {e(state['echo_mode'])}",
        f"Webhook: {e(state['webhook_url'] or 'none')} "
        f"({'signed' if state['signed'] else 'not signed'};\n"
        f"events {e(', '.join(state['webhook_events']))}); "
        f"session webhooks: {e(hooks or 'none')}",
        f"Failing routes: {e(failures)}",
        f"Calls: {e(counted(state['calls']))}",
    )
    session = "\n".join(
        (
            knob("status", "Set", select("status", STATUSES, state["status"], label="Status")),
            f"<p>{button('show-qr', 'Log out: show a QR')} "
            f"{button('scan', 'Scan the QR: working')}</p>",
            knob("engine", "Set", select("engine", ENGINES, state["engine"], label="Engine")),
            knob(
                "account",
                "Set",
                text_field(
                    "number", state["account"]["id"].partition("@")[0], label="Account number"
                ),
                text_field("name", state["account"]["pushName"], label="Name"),
            ),
        )
    )
    sends = "\n".join(
        (
            send_mode_form(SEND_MODES, state["send_mode"]),
            knob("echo-mode", "Set", select("mode", ECHO_MODES, state["echo_mode"], label="Echo")),
            f"<p>{_toggle('empty-201', 'Answer a send with an empty 201', state['empty_201'])}</p>",
        )
    )
    webhooks = "\n".join(
        (
            knob(
                "webhook-url",
                "Set",
                text_field("url", state["webhook_url"], label="Post to", size=50),
            ),
            "<p>"
            + _toggle(
                "lose-webhooks", "Lose webhooks (kept in the chats only)", state["lose_webhooks"]
            )
            + "</p>",
        )
    )
    customer = knob(
        "customer-message",
        "Add",
        text_field("sender", "923001234567", label="From"),
        text_field("name", "Ayesha Khan", label="Name"),
        text_field("text", label="Text", size=40),
        select("media", MEDIA_KINDS, label="Media", blank="none"),
    )
    phone = knob(
        "phone-answer",
        "Answer",
        text_field("chat", "923001234567@c.us", label="To"),
        text_field("text", label="Text", size=40),
    )
    fail = knob("fail-delivery", "Fail it", text_field("gateway_id", label="Gateway id"))
    sent = table(
        ("To", "Text", "Mode", "Gateway id", "Would be delivered"),
        [
            (c.chat_id, c.text, c.mode, c.gateway_id, yes_no(c.delivered))
            for c in reversed(state["sends"])
        ],
    )
    chats = table(
        ("Id", "From", "Who", "Text"),
        [
            (m["id"], m["from"], "us" if m["fromMe"] else "customer", m.get("body") or "")
            for m in reversed(state["messages"])
        ],
    )
    posts = table(
        ("Event", "To", "Answer"),
        [(p.event, p.url, p.status or p.error) for p in reversed(state["posts"])],
    )
    body = f"""<p>API: <code>{e(standin.url)}</code>, session <code>{e(standin.session)}</code></p>
<h2>State</h2>
{shown}
<h2>Session</h2>
{session}
<h2>Sends</h2>
{sends}
<h2>Webhooks</h2>
{webhooks}
<h2>A customer writes</h2>
{customer}
<h2>Someone answers on the phone</h2>
{phone}
<h2>A sent message fails later</h2>
{fail}
<h2>Last sends (newest first)</h2>
{sent}
<h2>Chats (newest first)</h2>
{chats}
<h2>Webhooks posted (newest first)</h2>
{posts}
"""
    return page("STAND-IN WAHA", "STAND-IN WAHA: nothing is sent to WhatsApp", body, width="64em")


# -- the HTTP side ---------------------------------------------------------------


class _Handler(StandinHandler):
    server_version = "StandinWAHA/1"
    render = _render_page
    actions = _ACTIONS

    # -- dispatch -------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        control = self._control_path()
        if control is not None:
            self._control(method, control.strip("/"))
            return
        route = self._route(method, [unquote(p) for p in path.strip("/").split("/")])
        if route is None:
            self._json(
                404, {"message": f"Cannot {method} {path}", "error": "Not Found", "statusCode": 404}
            )
            return
        name, session, answer = route
        # NestJS guards run on a matched route: the key is checked before anything else.
        if not self._key_ok():
            self.standin._count(name)
            self._json(401, UNAUTHORIZED)
            return
        if name == "send":
            self.standin._count(name)
            answer()
            return
        failure = self.standin._count(name)
        if failure is not None:
            self._fail(failure)
        elif session is not None and session != self.standin.session:
            self._no_session(session, info=name in ("session", "update"))
        else:
            answer()

    def _route(
        self, method: str, parts: list[str]
    ) -> tuple[str, str | None, Callable[[], None]] | None:
        """(route name, session named in the path, handler) for a WAHA route, else None."""
        if parts[:2] == ["api", "sessions"] and len(parts) in (3, 4):
            session = parts[2]
            action = parts[3] if len(parts) == 4 else ""
            if method == "GET" and not action:
                return "session", session, self._session_info
            if method == "PUT" and not action:
                return "update", session, self._update
            if method == "GET" and action == "me":
                return "me", session, self._me
            if method == "POST" and action in ("start", "stop", "restart", "logout"):
                return action, session, lambda: self._session_action(action)
        if parts == ["api", "sendText"] and method == "POST":
            return "send", None, self._send
        if len(parts) == 4 and parts[0] == "api" and parts[2] == "auth":
            if method == "GET" and parts[3] == "qr":
                return "qr", parts[1], self._qr
            if method == "POST" and parts[3] == "request-code":
                return "request_code", parts[1], self._request_code
        if len(parts) == 5 and parts[0] == "api" and parts[2] == "chats" and parts[4] == "messages":
            if method == "GET":
                return "chat_messages", parts[1], lambda: self._chat_messages(parts[3])
        return None

    def _key_ok(self) -> bool:
        expected = self.standin.api_key
        if not expected:
            return True  # WAHA without WHATSAPP_API_KEY is open
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get("X-Api-Key") or query.get("x-api-key", [""])[0]
        return hmac.compare_digest(given.encode(), expected.encode())

    # -- WAHA's routes ---------------------------------------------------------------

    def _session_info(self) -> None:
        self._json(200, self.standin._session_info())

    def _me(self) -> None:
        me = self.standin.me
        if me is None:
            self._reply(200, b"", "application/json; charset=utf-8")  # NestJS's null
        else:
            self._json(200, me)

    def _session_action(self, action: str) -> None:
        standin = self.standin
        if action == "stop":
            standin.set_status("STOPPED")
            self._json(201, standin._session_dto())
        elif action == "start" and standin.status not in ("STOPPED", "FAILED"):
            self._json(201, standin._session_dto())  # idempotent
        elif action == "logout":
            running = standin.status != "STOPPED"
            with standin._lock:
                standin._me = None
            if running:
                standin._restart_session()
            self._json(201, standin._session_dto())
        else:  # restart, or start of a stopped session
            standin._restart_session()
            # WAHA answers once the engine is started, before it is linked.
            self._json(201, standin._session_dto("STARTING"))

    def _update(self) -> None:
        body = self._read_json()
        if body is None:
            return
        config = body.get("config") if isinstance(body, dict) else None
        problems = _config_problems(body, config)
        if problems:
            self._json(400, {"message": problems, "error": "Bad Request", "statusCode": 400})
            return
        standin = self.standin
        with standin._lock:
            standin._config = copy.deepcopy(config)
        standin._say("session config replaced")
        # PUT replaces the whole config and restarts a running session.
        if standin.status != "STOPPED":
            standin._restart_session()
        self._json(200, standin._session_dto())

    def _qr(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        if not self.standin._wait_for("SCAN_QR_CODE"):
            self._not_expected(["SCAN_QR_CODE"])
            return
        qr = self.standin.qr or ""
        if query.get("format", ["image"])[0] == "raw":
            self._json(200, {"value": qr})
            return
        png = _png(qr)
        if "application/json" in (self.headers.get("Accept") or ""):
            self._json(200, {"mimetype": "image/png", "data": base64.b64encode(png).decode()})
        else:
            self._reply(200, png, "image/png")

    def _request_code(self) -> None:
        body = self._read_json()
        if body is None:
            return
        number = body.get("phoneNumber") if isinstance(body, dict) else None
        if not isinstance(number, str):
            self._json(
                400,
                {
                    "message": ["phoneNumber must be a string"],
                    "error": "Bad Request",
                    "statusCode": 400,
                },
            )
            return
        standin = self.standin
        with standin._lock:
            standin._pairing_requests.append(number)
        if standin.status != "SCAN_QR_CODE":
            message = (
                "Can request code only in SCAN_QR_CODE status. "
                f"The current status is {standin.status}"
            )
            self._json(
                422, {"message": message, "error": "Unprocessable Entity", "statusCode": 422}
            )
            return
        standin._say(f"pairing code {standin.pairing_code} for +{number}")
        self._json(201, {"code": standin.pairing_code})

    def _chat_messages(self, chat: str) -> None:
        standin = self.standin
        if not standin._wait_for("WORKING"):
            self._not_expected(["WORKING"])
            return
        if standin.engine == "NOWEB" and not standin.noweb_store:
            self._json(
                400, {"statusCode": 400, "message": NOWEB_STORE_ERROR, "error": "Bad Request"}
            )
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        self._json(200, standin._chat_messages(chat_of(chat), query))

    def _send(self) -> None:
        body = self._read_json()
        if body is None:
            return
        fields = body if isinstance(body, dict) else {}
        problems = [
            f"{key} must be a string"
            for key in ("chatId", "text")
            if not isinstance(fields.get(key), str)
        ]
        if "session" in fields and not isinstance(fields["session"], str):
            problems.append("session must be a string")
        if problems:
            self._json(400, {"message": problems, "error": "Bad Request", "statusCode": 400})
            return
        session = fields.get("session", "default")
        standin = self.standin
        if session != standin.session:
            self._no_session(session, info=False)
            return
        # WAHA waits for a working session before it sends anything.
        standin._wait_for("WORKING")
        call, payload = standin._send(chat_of(fields["chatId"]), fields["text"])
        if not call.delivered:
            self._refuse_send(call)
            return
        before = standin.echo_mode == "before_answer"
        if before:
            standin._emit("message.any", payload)
        if call.mode == "ok":
            if standin.empty_201:
                self._reply(201, b"", "application/json; charset=utf-8")
            else:
                self._json(201, _send_answer(standin.engine, payload))
        else:
            self._fail(call.mode)
        if standin.echo_mode == "after_answer":
            standin._emit("message.any", payload, wait=False)

    def _refuse_send(self, call: SendCall) -> None:
        if call.mode == "unauthorized":
            self._json(401, UNAUTHORIZED)
        elif call.mode == "validation":
            message = ["chatId must be a valid chat id (digits@c.us, @g.us or @lid)"]
            self._json(400, {"message": message, "error": "Bad Request", "statusCode": 400})
        elif call.mode == "unprocessable":
            message = "The method is not implemented by the engine."
            self._json(
                422, {"statusCode": 422, "message": message, "error": "Unprocessable Entity"}
            )
        else:  # "not_working", or "ok" while the session is not working
            status = self.standin.status
            self._not_expected(["WORKING"], status="STOPPED" if status == "WORKING" else status)

    # -- WAHA's errors -------------------------------------------------------------------

    def _not_expected(self, expected: list[str], *, status: str | None = None) -> None:
        standin = self.standin
        body = {
            "error": NOT_EXPECTED,
            "session": standin.session,
            "status": status or standin.status,
            "expected": expected,
        }
        self._json(422, body)

    def _no_session(self, session: str, *, info: bool) -> None:
        if info:
            message = "Session not found"
        else:
            message = (
                f"We didn't find a session with name '{session}'.\n"
                f"Please start it first by using POST /api/sessions/{session}/start request"
            )
        self._json(404, {"statusCode": 404, "message": message, "error": "Not Found"})

    def _error500(self) -> None:
        # WAHA's AllExceptionsFilter for an error that is not an HttpException.
        self._json(
            500,
            {
                "statusCode": 500,
                "timestamp": iso_z(time.time()),
                "exception": {
                    "message": "stand-in error",
                    "name": "Error",
                    "stack": "Error: stand-in error",
                },
                "request": {"path": urlsplit(self.path).path, "method": self.command},
                "version": {"version": VERSION, "engine": self.standin.engine, "tier": "CORE"},
            },
        )

    def _read_json(self) -> Any:
        """The JSON body, or None after answering NestJS's 400 for a broken one."""
        raw = self._read_body()
        if "json" not in (self.headers.get("Content-Type") or "").lower() or not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            message = f"Unexpected token in JSON at position {getattr(exc, 'pos', 0)}"
            self._json(400, {"message": message, "error": "Bad Request", "statusCode": 400})
            return None

    # -- the control page ---------------------------------------------------------------

    def _control(self, method: str, action: str) -> None:
        if method == "GET" and action == "":
            self._control_page()
        elif method != "POST":
            self._reply(405, b"use POST", "text/plain; charset=utf-8")
        else:
            self._control_post(action)


def _check(value: str, allowed: tuple[str, ...]) -> None:
    check(value, allowed, "value")


def main(argv: list[str] | None = None) -> None:
    parser = command_line(
        "Stand-in for WAHA: speaks its API and posts its webhooks, sends NOTHING to WhatsApp.",
        port=3000,
    )
    add_webhook_options(
        parser,
        api_key="the X-Api-Key it accepts",
        webhook_url="where it posts its events",
        webhook_secret="the HMAC key it signs them with",
    )
    parser.add_argument("--session", default="default")
    parser.add_argument("--engine", default="WEBJS", choices=ENGINES)
    add_show_qr(parser, "start logged out, showing a QR (a fresh install)")
    args = parser.parse_args(argv)
    standin = WahaStandin(
        args.port,
        session=args.session,
        engine=args.engine,
        logged_in=not args.show_qr,
        **webhook_standin_options(args),
    )
    serve(standin, "STAND-IN WAHA", f" (session {standin.session}, {standin.engine})")


if __name__ == "__main__":
    main()
