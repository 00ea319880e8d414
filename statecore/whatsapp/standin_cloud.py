"""A stand-in for Meta's WhatsApp Business Cloud API: it speaks its Graph routes, sends nothing.

Run it where the dashboard would use the real API (``GATEWAY_URL`` =
``http://127.0.0.1:8090/v23.0``)::

    python -m statecore.whatsapp.standin_cloud --port 8090 --api-key K \\
        --webhook-url http://127.0.0.1:8000/gateway/webhook --webhook-secret S \\
        [--phone-number-id 106540352242922] [--verify-token T] [--show-qr]

Without ``--api-key``, ``--webhook-secret`` and ``--verify-token`` it reads
``GATEWAY_API_KEY``, ``GATEWAY_WEBHOOK_SECRET`` and ``GATEWAY_VERIFY_TOKEN`` from
its environment, so no secret need stand on a command line (``ps`` shows those
to anyone on the machine).

The Cloud API has no QR: ``--show-qr`` starts with the access token expired,
the state in which a person must act. Every route the adapter uses answers as
GATEWAY.md section 4 says the real one does (paths, status codes, Graph error
bodies, the token check with its 401). Every send is printed, labelled
STAND-IN, and nothing reaches WhatsApp; the webhooks Meta would post (a
customer's message, the statuses of our sends, the business answering from
the WhatsApp Business app, an account ban) are posted, signed with the app
secret as Meta signs them, to ``webhook_url``. A person steers it from the
control page at ``/_standin/``; tests steer the same class through its methods
(``tests/fake_cloud.py``), so the stand-in and the tests cannot drift apart.
The server itself (its life, send modes, records, webhook posting, control page
plumbing) is ``standin_server``'s, shared by every stand-in.

What a send mode means for ``SendCall.delivered`` (did a customer get it?).
Delivered: ``"ok"`` (200 with the wamid, then the ``sent`` status), and the
failures placed after the point of no return, where WhatsApp got the message
and its answer was lost or broken: ``"error500"``, ``"hang"`` and ``"drop"``
(the worst case, the one ``maybe_sent`` exists for). Not delivered:
``"window_closed"`` (400, Graph error 131047), ``"window_closed_later"`` (200
with a wamid, then a ``failed`` status with 131047), ``"undeliverable"``
(131026), ``"bad_parameter"`` (100), ``"token_expired"`` (401, 190),
``"rate_limited"`` (130429, or ``rate_limit_code``) and ``"down"`` (the port
stops listening: connection refused).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from .config import GRAPH_VERSION
from .standin_server import (
    ECHO_MODES,
    StandinHandler,
    WebhookStandin,
    add_secret,
    add_show_qr,
    add_webhook_options,
    bullets,
    button,
    check,
    checkbox,
    command_line,
    counted,
    describe_error,
    knob,
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
    "window_closed",
    "window_closed_later",
    "undeliverable",
    "bad_parameter",
    "token_expired",
    "rate_limited",
    "error500",
    "hang",
    "drop",
    "down",
)
# WhatsApp got the message in these (see the docstring).
DELIVERING_MODES = ("ok", "error500", "hang", "drop")
# Modes whose answer carries a wamid, or whose message WhatsApp holds under one.
_WAMID_MODES = (*DELIVERING_MODES, "window_closed_later")
MEDIA_KINDS = ("image", "voice", "audio", "video", "document", "sticker", "location")
MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA = 512
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_WABA_ID = "102290129340398"
DEFAULT_ACCOUNT = {
    "display_phone_number": "+92 300 9876543",
    "verified_name": "Stand-in shop",
    "quality_rating": "GREEN",
}
ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
# (code, title, details) of the Graph errors the modes answer, as Meta words them.
WINDOW_CLOSED = (
    131047,
    "Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer "
    "last replied to this number.",
)
UNDELIVERABLE = (131026, "Message undeliverable", "Message Undeliverable.")
RATE_LIMITS = {
    130429: (
        "Rate limit hit",
        "Cloud API message throughput has been reached.",
    ),
    80007: (
        "Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
    ),
}


@dataclass(frozen=True)
class SendCall:
    """One send that got past the request's checks, whatever it answered.

    ``gateway_id`` is the wamid WhatsApp holds for it (set even when the caller
    never saw it: a hang, a drop); "" when nothing was accepted."""

    to: str
    chat: str
    text: str
    mode: str
    gateway_id: str
    delivered: bool
    reply_id: str = ""


@dataclass(frozen=True)
class PostedWebhook:
    """One webhook the stand-in posted: the body, and the HTTP status (0: no answer)."""

    body: dict
    status: int
    error: str = ""


class CloudStandin(WebhookStandin):
    """An HTTP server answering like the Cloud API under ``/<version>``; ``port=0`` picks
    a free port. Thread-safe: knobs can be turned while requests run.

    ``session`` is accepted so every stand-in is built alike; the Cloud API has none."""

    kind = "cloud"
    label = "STAND-IN Cloud API"
    send_modes = SEND_MODES

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str,
        webhook_url: str | None = None,
        webhook_secret: str = "",
        session: str = "default",
        phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
        verify_token: str = "",
        host: str = "127.0.0.1",
        waba_id: str = DEFAULT_WABA_ID,
        announce: bool = False,
        hang_seconds: float = 60.0,
        token_expired: bool = False,
    ) -> None:
        super().__init__(host, port, handler=_Handler, announce=announce, hang_seconds=hang_seconds)
        self.session = session
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        # Read at each use; str/int assignments are atomic.
        self.webhook_url = webhook_url
        self.rate_limit_code = 130429
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self._verify_token = verify_token
        self._token_expired = token_expired
        self._account = dict(DEFAULT_ACCOUNT)
        self._overrides: dict[str, str] = {}
        self._store: list[dict[str, Any]] = []
        self._posted: list[PostedWebhook] = []

    @property
    def url(self) -> str:
        """The Graph base URL to use as ``GATEWAY_URL``."""
        return f"{self.origin}/{GRAPH_VERSION}"

    # -- the token and the account -------------------------------------------------

    @property
    def token_expired(self) -> bool:
        with self._lock:
            return self._token_expired

    def expire_token(self) -> None:
        """Every call now meets Graph's 401 "Error validating access token" (code 190)."""
        with self._lock:
            self._token_expired = True
        self._say("the access token expired: every call answers 190")

    def renew_token(self) -> None:
        with self._lock:
            self._token_expired = False
        self._say("the access token is valid again")

    @property
    def account(self) -> dict[str, str]:
        with self._lock:
            return dict(self._account)

    def set_account(
        self, number: str | None = None, name: str | None = None, quality: str | None = None
    ) -> None:
        """The business number (as Meta shows it, e.g. "+92 300 9876543"), its verified
        name and quality rating; a None keeps that field."""
        with self._lock:
            for key, value in (
                ("display_phone_number", number),
                ("verified_name", name),
                ("quality_rating", quality),
            ):
                if value is not None:
                    self._account[key] = value
            account = dict(self._account)
        self._say(f"account is now {account}")

    def set_webhook_override(self, level: str, url: str | None) -> None:
        """An alternate callback URL at ``level`` ("phone_number" or
        "whatsapp_business_account"), as Meta's webhook overrides; None removes it."""
        if level not in ("phone_number", "whatsapp_business_account"):
            raise ValueError(f"unknown override level {level!r}")
        with self._lock:
            if url is None:
                self._overrides.pop(level, None)
            else:
                self._overrides[level] = url

    def webhook_configuration(self) -> dict[str, str]:
        """What ``GET /<id>?fields=webhook_configuration`` answers."""
        with self._lock:
            found = {"application": self.webhook_url} if self.webhook_url else {}
            return {**found, **self._overrides}

    # -- webhooks Meta would post ------------------------------------------------------

    def add_customer_message(
        self,
        text: str = "Hello",
        *,
        sender: str = "923001234567",
        name: str = "Ayesha Khan",
        media: str | None = None,
        id: str | None = None,  # Meta's own field name, the builtin shadowed on purpose
        timestamp: int | None = None,
        group_id: str | None = None,
        user_id: str | None = None,
        hide_number: bool = False,
    ) -> dict[str, Any]:
        """A customer writes: kept in the chat store and posted as Meta's ``messages``
        webhook (unless ``lose_webhooks``). Returns the message object as posted.

        ``media`` (in MEDIA_KINDS) sends that kind with ``text`` as its caption;
        ``hide_number`` leaves the number out (a username: only ``user_id``)."""
        user_id = user_id or bsuid_of(sender)
        message = build_message(
            text,
            sender=None if hide_number else sender,
            user_id=user_id,
            media=media,
            id=id,
            timestamp=timestamp,
            group_id=group_id,
        )
        contact = build_contact(name, wa_id=None if hide_number else sender, user_id=user_id)
        with self._lock:
            self._store.append(json.loads(json.dumps(message)))
        self._say(f"customer message {message['id'][:24]}... from {sender}: {text[:60]!r}")
        self._post_soon(self._event("messages", {"contacts": [contact], "messages": [message]}))
        return json.loads(json.dumps(message))

    def messages(self) -> list[dict[str, Any]]:
        """The customers' messages the stand-in holds, oldest first (copies). The Cloud
        API itself offers no call to list them: a lost webhook stays lost."""
        with self._lock:
            return json.loads(json.dumps(self._store))

    def answer_from_phone(self, text: str, chat: str = "923001234567") -> dict[str, Any]:
        """The business answers from the WhatsApp Business app: Meta's
        ``smb_message_echoes`` webhook. Returns the echo object as posted."""
        echo = build_phone_echo(text, to=re.sub(r"\D", "", chat), business=self._display_digits())
        self._say(f"answered from the phone to {chat}: {text[:60]!r}")
        self._post_soon(self._event("smb_message_echoes", {"message_echoes": [echo]}))
        return echo

    def fail_delivery(
        self, gateway_id: str, *, code: int = UNDELIVERABLE[0], title: str = "", details: str = ""
    ) -> int:
        """WhatsApp could not deliver a message it accepted: posts the ``failed`` status
        (``errors[].code``) now; returns the HTTP status of the post."""
        known = {c: (t, d) for c, t, d in (WINDOW_CLOSED, UNDELIVERABLE)}
        title = title or known.get(code, ("Delivery failed",))[0]
        details = details or known.get(code, ("", "Message could not be delivered."))[1]
        to = next((c.to for c in self.sends if c.gateway_id == gateway_id), "923001234567")
        status = build_status(gateway_id, "failed", recipient_id=to, error=(code, title, details))
        return self.post_webhook(self._event("messages", {"statuses": [status]}))

    def post_webhook(self, body: dict) -> int:
        """Post ``body`` to ``webhook_url`` now, signed as Meta signs; returns the HTTP
        status (0 when nothing answered)."""
        url = self.webhook_url
        if not url:
            raise RuntimeError("no webhook_url is set: nowhere to post")
        raw = encode(body)
        try:
            posted = PostedWebhook(
                body, post(url, raw, sign(raw, self._webhook_secret)).status_code
            )
        except httpx.HTTPError as exc:
            posted = PostedWebhook(body, 0, describe_error(exc))
        with self._lock:
            self._posted.append(posted)
        self._say(f"webhook posted: {_describe_event(body)} -> {posted.status or posted.error}")
        return posted.status

    def posted(self) -> list[PostedWebhook]:
        """Every webhook posted, oldest first."""
        with self._lock:
            return list(self._posted)

    def verify_callback(self, challenge: str = "1158201444") -> tuple[int, str]:
        """What Meta does when a person saves the callback URL: ``GET`` it with
        ``hub.mode=subscribe``, the verify token and a challenge. Returns the status and
        the text answered (the challenge itself when the dashboard accepted it)."""
        if not self.webhook_url:
            raise RuntimeError("no webhook_url is set: nothing to verify")
        params = {
            "hub.mode": "subscribe",
            "hub.challenge": challenge,
            "hub.verify_token": self._verify_token,
        }
        with httpx.Client(trust_env=False, timeout=10) as http:
            response = http.get(self.webhook_url, params=params)
        self._say(f"callback verified: HTTP {response.status_code}")
        return response.status_code, response.text

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until the webhooks posted in the background have been answered."""
        self._poster.drain(timeout)

    # -- used by the handler and the knobs ----------------------------------------------

    def _event(self, field: str, value: dict) -> dict:
        return build_event(
            field,
            value,
            phone_number_id=self.phone_number_id,
            display_phone_number=self._display_digits(),
            waba_id=self.waba_id,
        )

    def _display_digits(self) -> str:
        with self._lock:
            return re.sub(r"\D", "", self._account["display_phone_number"])

    def _post_soon(self, body: dict, *, wait: bool = False) -> None:
        """Post from a thread of the stand-in (``wait``: this thread, before returning)."""
        if not self.webhook_url or self.lose_webhooks:
            return
        if wait:
            self.post_webhook(body)
        else:
            self._poster.submit(self.post_webhook, body)

    def _token_problem(self, token: str | None) -> tuple[int, dict] | None:
        if not token:
            return 400, _graph_error(
                104, "An access token is required to request this resource.", kind="OAuthException"
            )
        if not hmac.compare_digest(token.encode(), self._api_key.encode()):
            return 401, _graph_error(
                190, "Invalid OAuth access token - Cannot parse access token", kind="OAuthException"
            )
        if self.token_expired:
            return 401, _expired_error()
        return None

    def _send(self, to: str, text: str, reply_id: str) -> SendCall:
        """Decide and record one send that passed the request's checks."""
        with self._lock:
            mode = self._next_send_mode()
            wamid = new_wamid(to) if mode in _WAMID_MODES else ""
            call = SendCall(to, f"{to}@c.us", text, mode, wamid, mode in DELIVERING_MODES, reply_id)
            self._sends.append(call)
        if call.delivered:
            self._announce_send(call.chat, wamid, mode, text)
        return call

    def _sent_status(self, call: SendCall) -> dict:
        status = build_status(call.gateway_id, "sent", recipient_id=call.to, reply_id=call.reply_id)
        return self._event("messages", {"statuses": [status]})

    def _state_for_page(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._shared_page_state(),
                "token_expired": self._token_expired,
                "account": dict(self._account),
                "messages": json.loads(json.dumps(self._store[-20:])),
                "posted": list(self._posted[-20:]),
            }


# -- Meta's bodies, built the way Meta builds them ------------------------------------


def new_wamid(number: str = "923001234567") -> str:
    """A message id shaped like Meta's: ``wamid.`` and base64 of the number and a random id."""
    digits = re.sub(r"\D", "", number)[:60]
    raw = (
        b"\x1c\x18"
        + bytes([len(digits)])
        + digits.encode()
        + b"\x15\x02\x00\x12\x18\x14"
        + secrets.token_hex(10).upper().encode()
        + b"\x00"
    )
    return "wamid." + base64.b64encode(raw).decode()


def bsuid_of(number: str) -> str:
    """A business-scoped user id (the id that stands for a hidden number), stable per number."""
    return "PK." + str(int(hashlib.sha256(number.encode()).hexdigest()[:15], 16))


def build_contact(name: str, *, wa_id: str | None, user_id: str | None = None) -> dict:
    """A ``contacts[]`` item: the profile name, the number (``wa_id``) when shown, the BSUID."""
    contact: dict[str, Any] = {"profile": {"name": name}}
    if wa_id:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    return contact


def build_message(
    text: str = "Hello",
    *,
    sender: str | None = "923001234567",
    user_id: str | None = None,
    media: str | None = None,
    id: str | None = None,
    timestamp: int | None = None,
    group_id: str | None = None,
) -> dict:
    """A ``messages[]`` item: a text, or ``media`` (MEDIA_KINDS) with ``text`` as caption."""
    message: dict[str, Any] = {}
    if sender:
        message["from"] = sender
    if user_id:
        message["from_user_id"] = user_id
    if group_id:
        message["group_id"] = group_id
    message["id"] = id or new_wamid(sender or "0")
    message["timestamp"] = str(int(time.time()) if timestamp is None else timestamp)
    if media is None:
        message.update(type="text", text={"body": text})
    elif media == "location":
        message.update(
            type="location", location={"latitude": 24.8607, "longitude": 67.0011, "name": text}
        )
    else:
        check(media, MEDIA_KINDS)
        kind = "audio" if media == "voice" else media
        item: dict[str, Any] = {
            "mime_type": _MIME[media],
            "sha256": base64.b64encode(secrets.token_bytes(32)).decode(),
            "id": str(secrets.randbelow(10**16)),
        }
        if media == "voice":
            item["voice"] = True
        elif text and media in ("image", "video", "document"):
            item["caption"] = text
        message.update({"type": kind, kind: item})
    return message


_MIME = {
    "image": "image/jpeg",
    "voice": "audio/ogg; codecs=opus",
    "audio": "audio/mpeg",
    "video": "video/mp4",
    "document": "application/pdf",
    "sticker": "image/webp",
}


def build_status(
    gateway_id: str,
    status: str,
    *,
    recipient_id: str = "923001234567",
    reply_id: str = "",
    timestamp: int | None = None,
    error: tuple[int, str, str] | None = None,
) -> dict:
    """A ``statuses[]`` item. ``reply_id`` (``biz_opaque_callback_data``) comes back in
    ``sent``, ``delivered`` and ``read``; a ``failed`` one carries ``errors``."""
    item: dict[str, Any] = {
        "id": gateway_id,
        "status": status,
        "timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "recipient_id": recipient_id,
    }
    if reply_id and status != "failed":
        item["biz_opaque_callback_data"] = reply_id
    if status in ("sent", "delivered", "read"):
        item["pricing"] = {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
    if error is not None:
        code, title, details = error
        item["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": ERROR_CODES_URL,
            }
        ]
    return item


def build_phone_echo(
    text: str, *, to: str = "923001234567", business: str = "923009876543", id: str | None = None
) -> dict:
    """A ``message_echoes[]`` item: the business wrote from the WhatsApp Business app."""
    return {
        "from": business,
        "to": to,
        "id": id or new_wamid(to),
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }


def build_event(
    field: str,
    value: dict,
    *,
    phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
    display_phone_number: str = "923009876543",
    waba_id: str = DEFAULT_WABA_ID,
) -> dict:
    """A whole delivery: one entry with one change of ``field`` whose value holds ``value``
    after the metadata of the business number."""
    full = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": full, "field": field}]}],
    }


def message_event(text: str = "Hello", *, name: str = "Ayesha Khan", **options: Any) -> dict:
    """A customer's message as a whole delivery (``options`` as for build_message, and
    build_event's ``phone_number_id``)."""
    event_options = {k: options.pop(k) for k in ("phone_number_id",) if k in options}
    message = build_message(text, **options)
    contact = build_contact(name, wa_id=message.get("from"), user_id=message.get("from_user_id"))
    return build_event("messages", {"contacts": [contact], "messages": [message]}, **event_options)


def status_event(gateway_id: str, status: str = "sent", **options: Any) -> dict:
    """One status of one of our messages as a whole delivery (options as for build_status)."""
    return build_event("messages", {"statuses": [build_status(gateway_id, status, **options)]})


def phone_echo_event(text: str, **options: Any) -> dict:
    """The business answering from the WhatsApp Business app, as a whole delivery."""
    return build_event(
        "smb_message_echoes", {"message_echoes": [build_phone_echo(text, **options)]}
    )


def session_event(
    event: str = "DISABLED_UPDATE",
    *,
    ban_state: str | None = "DISABLE",
    restrictions: tuple[str, ...] = (),
    waba_id: str = DEFAULT_WABA_ID,
) -> dict:
    """Meta's ``account_update``: the business account banned, restricted or reinstated
    (the nearest the Cloud API has to a session event)."""
    value: dict[str, Any] = {"phone_number": "923009876543", "event": event}
    if ban_state is not None:
        value["ban_info"] = {"waba_ban_state": ban_state, "waba_ban_date": "2026-11-29"}
    if restrictions:
        value["restriction_info"] = [
            {"restriction_type": kind, "expiration": "2026-12-06T00:00:00+0000"}
            for kind in restrictions
        ]
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": int(time.time()),
                "changes": [{"value": value, "field": "account_update"}],
            }
        ],
    }


def encode(body: dict) -> bytes:
    """A body as Meta serialises it: compact, non-ASCII and "/" escaped (a receiver that
    signs its own re-serialisation instead of the raw bytes fails on these)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def sign(body: bytes, secret: str) -> dict[str, str]:
    """The headers Meta posts a webhook with; signed with the app secret when there is one."""
    headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
    if secret:
        key = secret.encode("utf-8")
        headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return headers


def _graph_error(
    code: int,
    message: str,
    *,
    kind: str = "OAuthException",
    details: str = "",
    subcode: int | None = None,
) -> dict:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
    return {"error": error}


def _whatsapp_error(code: int, title: str, details: str) -> dict:
    return _graph_error(code, f"(#{code}) {title}", details=details)


def _expired_error() -> dict:
    now = time.strftime("%A, %d-%b-%y %H:%M:%S", time.gmtime())
    return _graph_error(
        190,
        f"Error validating access token: Session has expired on {now} UTC. "
        f"The current time is {now} UTC.",
        subcode=463,
    )


def _describe_event(body: dict) -> str:
    try:
        change = body["entry"][0]["changes"][0]
        value = change["value"]
        what = [k for k in ("messages", "statuses", "message_echoes", "event") if k in value]
        if "statuses" in value:
            what = [f"status {value['statuses'][0]['status']}"]
        return f"{change['field']} ({', '.join(what) or 'other'})"
    except (KeyError, IndexError, TypeError):
        return "a custom body"


# -- the control page ---------------------------------------------------------------


def _int(value: str | None, default: int) -> int:
    try:
        return int(value or "")
    except ValueError:
        return default


def _act_customer_message(standin: CloudStandin, form: dict[str, str]) -> None:
    standin.add_customer_message(
        form.get("text", ""),
        sender=re.sub(r"\D", "", form.get("sender", "")) or "923001234567",
        name=form.get("name") or "Ayesha Khan",
        media=form.get("media") or None,
    )


_ACTIONS: dict[str, Callable[[CloudStandin, dict[str, str]], object]] = {
    "expire-token": lambda standin, form: standin.expire_token(),
    "renew-token": lambda standin, form: standin.renew_token(),
    "account": lambda standin, form: standin.set_account(
        form.get("number") or None, form.get("name") or None
    ),
    "send-mode": lambda standin, form: standin.set_send_mode_from_page(form.get("mode", "")),
    "echo-mode": lambda standin, form: setattr(standin, "echo_mode", form.get("mode", "")),
    "customer-message": _act_customer_message,
    "phone-answer": lambda standin, form: standin.answer_from_phone(
        form.get("text", ""), chat=form.get("chat") or "923001234567"
    ),
    "lose-webhooks": lambda standin, form: setattr(
        standin, "lose_webhooks", form.get("lose") == "on"
    ),
    "fail-delivery": lambda standin, form: standin.fail_delivery(
        form.get("gateway_id", ""), code=_int(form.get("code"), UNDELIVERABLE[0])
    ),
    "verify-callback": lambda standin, form: standin.verify_callback(),
}


def _render_page(standin: CloudStandin) -> str:
    """The control page: every value escaped, every control a plain form (no JavaScript).
    The access token, the app secret and the verify token are never shown."""
    state = standin._state_for_page()
    e = html.escape
    account = state["account"]
    token = "expired (every call answers 190)" if state["token_expired"] else "valid"
    lost = " (LOST: not posted)" if standin.lose_webhooks else ""
    shown = bullets(
        f"Access token: <strong>{token}</strong>",
        f"Business number: {e(account['display_phone_number'])} "
        f"({e(account['verified_name'])}, quality {e(account['quality_rating'])})",
        f"Send mode: <strong>{e(state['send_mode'])}</strong>; "
        f"queued: {e(', '.join(state['queued']) or 'none')}",
        f"Echo of our sends: {e(state['echo_mode'])}",
        f"Webhooks go to: <code>{e(standin.webhook_url or 'nowhere (no webhook URL)')}</code>{lost}",
        f"Calls: {e(counted(state['calls']))}",
    )
    token_buttons = (
        f"{button('expire-token', 'Expire the token')} {button('renew-token', 'Renew the token')}\n"
        f"{button('verify-callback', 'Verify the callback URL (as Meta does)')}"
    )
    account_form = knob(
        "account",
        "Set",
        text_field("number", account["display_phone_number"], label="Number"),
        text_field("name", account["verified_name"], label="Verified name"),
    )
    sends = "\n".join(
        (
            send_mode_form(SEND_MODES, state["send_mode"]),
            knob("echo-mode", "Set", select("mode", ECHO_MODES, state["echo_mode"], label="Echo")),
            knob(
                "fail-delivery",
                "Post failed status",
                text_field("gateway_id", label="Fail the delivery of wamid", size=40),
                text_field("code", "131026", label="code", size=7),
            ),
        )
    )
    webhooks = "\n".join(
        (
            knob(
                "customer-message",
                "A customer writes",
                text_field("sender", "923001234567", label="From"),
                text_field("name", "Ayesha Khan", label="Name"),
                text_field("text", label="Text", size=30),
                select("media", MEDIA_KINDS, label="Kind", blank="text"),
            ),
            knob(
                "phone-answer",
                "Answer from the phone",
                text_field("chat", "923001234567", label="To"),
                text_field("text", label="Text", size=30),
            ),
            knob(
                "lose-webhooks",
                "Set",
                checkbox(
                    "lose",
                    standin.lose_webhooks,
                    "Lose webhooks (keep messages in the store only)",
                ),
            ),
        )
    )
    sent = table(
        ("To", "Text", "Mode", "wamid", "Reply id", "Would be delivered"),
        [
            (c.chat, c.text, c.mode, c.gateway_id, c.reply_id, yes_no(c.delivered))
            for c in reversed(state["sends"])
        ],
    )
    inbound = table(
        ("wamid", "From", "Type", "Text"),
        [
            (m["id"], m.get("from") or m.get("from_user_id", ""), m["type"], _shown_text(m))
            for m in reversed(state["messages"])
        ],
    )
    posted = table(
        ("Event", "Answer"),
        [(_describe_event(p.body), p.status or p.error) for p in reversed(state["posted"])],
    )
    body = f"""<p>Graph base URL: <code>{e(standin.url)}</code>; phone number id <code>{e(standin.phone_number_id)}</code>;
WhatsApp Business account <code>{e(standin.waba_id)}</code></p>
<h2>State</h2>
{shown}
<h2>Access token and account</h2>
<p>{token_buttons}</p>
{account_form}
<h2>Sends</h2>
{sends}
<h2>Webhooks</h2>
{webhooks}
<h2>Last sends (newest first)</h2>
{sent}
<h2>Customers' messages (newest first)</h2>
{inbound}
<h2>Webhooks posted (newest first)</h2>
{posted}
"""
    return page(
        "STAND-IN WhatsApp Cloud API", "STAND-IN Cloud API: nothing is sent to WhatsApp", body
    )


def _shown_text(message: dict) -> str:
    kind = message.get("type", "")
    item = message.get(kind) if isinstance(message.get(kind), dict) else {}
    return str(item.get("body") or item.get("caption") or item.get("name") or "")


# -- the HTTP side ---------------------------------------------------------------


class _Handler(StandinHandler):
    server_version = "StandinCloud/1"
    protocol_version = "HTTP/1.1"
    # Graph names no framework.
    powered_by = None
    render = _render_page
    actions = _ACTIONS
    # verify_callback's GET meets the dashboard, which may refuse or not answer.
    control_errors = (ValueError, RuntimeError, httpx.HTTPError)

    # -- dispatch ---------------------------------------------------------

    def do_GET(self) -> None:
        control = self._control_path()
        if control is not None:
            if control in ("", "/"):
                self._control_page()
            else:
                self._reply(404, b"no such page", "text/plain; charset=utf-8")
            return
        self._graph("GET")

    def do_POST(self) -> None:
        control = self._control_path()
        if control is not None:
            self._control_post(control.strip("/"))
            return
        self._graph("POST")

    def do_DELETE(self) -> None:
        self._graph("DELETE")

    def do_PUT(self) -> None:
        self._graph("PUT")

    # -- Graph ---------------------------------------------------------------------

    def _graph(self, method: str) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        if segments and re.fullmatch(r"v\d+\.\d+", segments[0]):
            segments = segments[1:]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        raw = self._read_body()
        standin = self.standin
        node_id = standin.phone_number_id
        fields = query.get("fields", "")
        if method == "GET" and segments == [node_id]:
            route = "webhook_config" if fields == "webhook_configuration" else "status"
        elif method == "POST" and segments == [node_id, "messages"]:
            route = "send"
        else:
            route = "other"
        standin._count(route)
        token = self._token(query)
        problem = standin._token_problem(token)
        if problem is not None:
            self._graph_answer(*problem)
            return
        if route == "status" or route == "webhook_config":
            self._node(fields)
        elif route == "send":
            self._send(raw)
        elif len(segments) in (1, 2) and segments[0] != node_id and segments[0].isdigit():
            # Graph's answer for an id it does not know (or may not show this token).
            self._graph_answer(
                400,
                _graph_error(
                    100,
                    f"Unsupported {method.lower()} request. Object with ID '{segments[0]}' does "
                    "not exist, cannot be loaded due to missing permissions, or does not support "
                    "this operation. Please read the Graph API documentation at "
                    "https://developers.facebook.com/docs/graph-api",
                    kind="GraphMethodException",
                    subcode=33,
                ),
            )
        else:
            rest = "/" + "/".join(segments[1:]) if len(segments) > 1 else "/"
            self._graph_answer(400, _graph_error(2500, f"Unknown path components: {rest}"))

    def _token(self, query: dict[str, str]) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        return query.get("access_token")

    def _node(self, fields: str) -> None:
        standin = self.standin
        account = standin.account
        known = {
            **account,
            "webhook_configuration": standin.webhook_configuration(),
            "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
        }
        wanted = [f for f in fields.split(",") if f] or [
            "verified_name",
            "code_verification_status",
            "display_phone_number",
            "quality_rating",
            "platform_type",
            "throughput",
        ]
        unknown = [f for f in wanted if f not in known]
        if unknown:
            self._graph_answer(
                400,
                _graph_error(
                    100,
                    f"(#100) Tried accessing nonexisting field ({unknown[0]}) on node type "
                    "(WhatsAppBusinessPhoneNumber)",
                ),
            )
            return
        self._graph_answer(200, {**{f: known[f] for f in wanted}, "id": standin.phone_number_id})

    def _send(self, raw: bytes) -> None:
        body = self._parse(raw)
        problem = _send_problem(body)
        if problem is not None:
            self._graph_answer(400, _graph_error(100, problem))
            return
        standin = self.standin
        to = re.sub(r"\D", "", str(body["to"]))
        reply_id = body.get("biz_opaque_callback_data") or ""
        call = standin._send(to, body["text"]["body"], reply_id)
        mode = call.mode
        echo = standin.echo_mode if mode in DELIVERING_MODES else "never"
        if echo == "before_answer":
            standin._post_soon(standin._sent_status(call), wait=True)
        if mode in ("ok", "window_closed_later"):
            self._graph_answer(
                200,
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": str(body["to"]), "wa_id": to}],
                    "messages": [{"id": call.gateway_id}],
                },
            )
        elif mode == "window_closed":
            self._graph_answer(400, _whatsapp_error(*WINDOW_CLOSED))
        elif mode == "undeliverable":
            self._graph_answer(400, _whatsapp_error(*UNDELIVERABLE))
        elif mode == "bad_parameter":
            self._graph_answer(400, _graph_error(100, "(#100) Invalid parameter"))
        elif mode == "token_expired":
            self._graph_answer(401, _expired_error())
        elif mode == "rate_limited":
            code = standin.rate_limit_code
            title, details = RATE_LIMITS.get(code, ("Rate limit hit", ""))
            self._graph_answer(400, _whatsapp_error(code, title, details))
        elif mode == "error500":
            self._graph_answer(
                500, _whatsapp_error(131000, "Something went wrong", "Something went wrong")
            )
        elif mode == "drop":
            self._drop()
        elif mode == "hang":
            self._hang()
        if echo == "after_answer":
            standin._post_soon(standin._sent_status(call))
        if mode == "window_closed_later":
            status = build_status(call.gateway_id, "failed", recipient_id=to, error=WINDOW_CLOSED)
            standin._post_soon(standin._event("messages", {"statuses": [status]}))

    def _parse(self, raw: bytes) -> dict:
        """The request's parameters: a JSON body, or a form (Graph takes both)."""
        content_type = (self.headers.get("Content-Type") or "").lower()
        text = raw.decode("utf-8", errors="replace")
        if "json" in content_type:
            try:
                found = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError:
                return {}
            return found if isinstance(found, dict) else {}
        form: dict[str, Any] = {k: v[0] for k, v in parse_qs(text).items()}
        if isinstance(form.get("text"), str):
            try:
                form["text"] = json.loads(form["text"])
            except json.JSONDecodeError:
                pass
        return form

    # -- writing ----------------------------------------------------------------------

    def _graph_answer(self, code: int, data: dict) -> None:
        headers = {"facebook-api-version": GRAPH_VERSION, "x-fb-request-id": secrets.token_hex(8)}
        error = data.get("error")
        if isinstance(error, dict) and code == 401:
            headers["WWW-Authenticate"] = (
                f'OAuth "Facebook Platform" "invalid_token" "{error.get("message", "")}"'
            )
        self._reply(code, json.dumps(data).encode(), "application/json; charset=UTF-8", headers)


def _send_problem(body: dict) -> str | None:
    """Graph's refusal of a malformed send (checked before anything is sent), or None."""
    if body.get("messaging_product") != "whatsapp":
        return "(#100) The parameter messaging_product is required."
    if not body.get("to"):
        return "(#100) The parameter to is required."
    if body.get("type", "text") != "text":
        return "(#100) The stand-in takes text messages only."
    text = body.get("text")
    text_body = text.get("body") if isinstance(text, dict) else None
    if not isinstance(text_body, str) or not text_body:
        return "(#100) The parameter text['body'] is required."
    if len(text_body) > MAX_TEXT_LENGTH:
        return f"(#100) Param text['body'] must be at most {MAX_TEXT_LENGTH} characters long."
    callback = body.get("biz_opaque_callback_data")
    if callback is not None and (
        not isinstance(callback, str) or len(callback) > MAX_CALLBACK_DATA
    ):
        return (
            f"(#100) Param biz_opaque_callback_data must be at most {MAX_CALLBACK_DATA} "
            "characters long."
        )
    return None


def main(argv: list[str] | None = None) -> None:
    parser = command_line(
        "Stand-in for Meta's WhatsApp Cloud API: speaks its API, sends NOTHING to WhatsApp.",
        port=8090,
    )
    add_webhook_options(
        parser,
        api_key="the access token it accepts",
        webhook_url="where Meta's webhooks are posted",
        webhook_secret="the app secret webhooks are signed with",
    )
    parser.add_argument("--phone-number-id", default=DEFAULT_PHONE_NUMBER_ID)
    add_secret(
        parser,
        "--verify-token",
        "GATEWAY_VERIFY_TOKEN",
        "sent when verifying the callback URL",
    )
    add_show_qr(
        parser, "the Cloud API has no QR: start with the access token expired (a person must act)"
    )
    args = parser.parse_args(argv)
    standin = CloudStandin(
        args.port,
        phone_number_id=args.phone_number_id,
        verify_token=args.verify_token,
        token_expired=args.show_qr,
        **webhook_standin_options(args),
    )
    serve(standin, "STAND-IN Cloud API", f" (phone number id {standin.phone_number_id})")


if __name__ == "__main__":
    main()
