"""WAHA, the packaged WhatsApp HTTP API (engines WEBJS, NOWEB, GOWS): GATEWAY.md section 2.

Every request carries `X-Api-Key`. The routes used, under `GATEWAY_URL`:
`GET /api/sessions/<session>` (its status, config and account),
`GET /api/sessions/<session>/me`, `GET /api/<session>/auth/qr?format=raw`,
`POST /api/<session>/auth/request-code`, `POST /api/sendText`,
`GET /api/<session>/chats/<chat>/messages` (read-back and backfill),
`POST /api/sessions/<session>/restart` and `/logout`, and
`PUT /api/sessions/<session>` (the whole session config, webhooks included).
WAHA pushes customers' messages, our own sends (`message.any`), delivery
acks and session changes to our webhook, signed with HMAC-SHA512.

A send is `not_sent` only when WAHA certainly sent nothing: its 422 with
`expected` (the session is not working: it checks before sending), a 400
validation error, a refused key (401/403), a 404 (no such session or route:
raised before any send) or a refused connection. Any other answer that is not
a 2xx (a 5xx, a 422 without `expected`), a timeout or a broken connection may
have reached WhatsApp: `maybe_sent`.

Message ids. WAHA names one message `true_<chat>_<id>` (plus `_<participant>`
in a group) in its events, `{"_serialized": ...}` in a WEBJS send's answer and
`{"key": {"id"}}` in a NOWEB/GOWS one. Every id leaving this module is the
short `<id>` (`short_id`), so a send's answer, its `message.ack` and its echo
name the same message.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from .model import (
    DEDUPE_WINDOW,
    Account,
    DeliveryFailure,
    Echo,
    EventKind,
    GatewayUnavailable,
    InboundMessage,
    Next,
    SendOutcome,
    SessionAction,
    State,
    Status,
    Traits,
    WebhookItem,
    WebhookRefused,
    bare_id,
)

log = logging.getLogger(__name__)

KIND = "waha"
TRAITS = Traits(
    has_webhooks=True,
    can_read_back=True,
    can_backfill=True,
    session_actions=frozenset({SessionAction.PAIR, SessionAction.RESTART, SessionAction.LOGOUT}),
    webhook_setup="command",
)
# What our webhook subscribes to. `message.any` carries customers' messages and our own
# (the echo); adding `message` would deliver each customer's message twice, under two
# envelope ids the dedupe cannot tell apart.
WEBHOOK_EVENTS = ("message.any", "message.ack", "session.status")
# For a webhook entry we add: WAHA retries a failed delivery for about a day, so a
# dashboard down overnight still gets its messages (the dedupe window is 7 days).
WEBHOOK_RETRIES = {"policy": "exponential", "delaySeconds": 2, "attempts": 15}
HMAC_HEADER = "X-Webhook-Hmac"
HMAC_ALGORITHM_HEADER = "X-Webhook-Hmac-Algorithm"
# How many of a chat's messages one read-back (ours) and one backfill (theirs) asks for.
READ_BACK_LIMIT = 20
BACKFILL_LIMIT = 100
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# The keys of a message as the old watcher logged them, in its order (chatName when known).
STORED_KEYS = (
    "id",
    "from",
    "fromName",
    "body",
    "timestamp",
    "isGroup",
    "chatName",
    "type",
    "hasMedia",
    "receivedAt",
)
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
# Keys that hold a secret wherever they sit in a webhook body (Evolution's `apikey`).
SECRET_KEYS = frozenset({"apikey", "api_key", "x-api-key"})


# --- addresses ----------------------------------------------------------------------


def cannot_reach(address: str) -> str:
    """Why WAHA cannot deliver to `address`, or "" when it can (no network call).

    WAHA takes a chat id as it is: a person (`<digits>@c.us`, or bare digits), a
    group (`...@g.us`) or a contact whose number is hidden (`...@lid`)."""
    user, at, domain = address.rpartition("@") if "@" in address else (address, "", "")
    if domain == "broadcast":
        return "a Status update cannot be answered"
    if domain == "newsletter":
        return "a channel cannot be answered"
    if at and domain in ("c.us", "s.whatsapp.net", "lid"):
        ok = user.isascii() and user.isdigit()
    elif at and domain == "g.us":
        # Old group ids are `<creator's number>-<time>@g.us`.
        ok = bool(re.fullmatch(r"[0-9]+(-[0-9]+)?", user))
    elif at:
        return f"{address[:60]!r} is not a WhatsApp chat (a number, a group or a hidden contact)"
    else:
        ok = bool(re.fullmatch(r"\+?[0-9][0-9 ()-]*", address.strip()))
    return "" if ok else f"{address[:60]!r} is not a phone number or chat id"


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


def _phone_chat(jid: object) -> str:
    """`9230...@s.whatsapp.net` or `9230...:12@c.us` (with a device) -> `9230...@c.us`;
    "" when `jid` is not a person's number."""
    if not isinstance(jid, str) or "@" not in jid:
        return ""
    user, _, domain = jid.rpartition("@")
    user = user.split(":", 1)[0]
    if domain in ("c.us", "s.whatsapp.net") and user.isascii() and user.isdigit():
        return f"{user}@c.us"
    return ""


# --- the client -----------------------------------------------------------------------


def client(settings: Any, *, status_timeout: float, send_timeout: float) -> WahaGateway:
    """The client of the WAHA at `GATEWAY_URL`, session `GATEWAY_SESSION`."""
    return WahaGateway(
        settings.GATEWAY_URL,
        api_key=settings.GATEWAY_API_KEY,
        session=settings.GATEWAY_SESSION,
        status_timeout=status_timeout,
        send_timeout=send_timeout,
    )


class WahaGateway:
    """One client of the WAHA at `base_url`, for one session (`default`)."""

    kind = KIND
    traits = TRAITS

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        session: str = "default",
        status_timeout: float = 5.0,
        send_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.status_timeout = status_timeout
        self.send_timeout = send_timeout
        # The key lives in the client's headers only: never an attribute, a log or a page.
        headers = {"Accept": "application/json"}
        if api_key:
            headers["X-Api-Key"] = api_key
        self._http = httpx.Client(
            transport=transport,
            headers=headers,
            # A fresh connection per call: a kept-alive socket WAHA has just closed
            # would turn a send into "maybe sent" for nothing.
            limits=httpx.Limits(max_keepalive_connections=0),
            # A proxy from the environment would turn "connection refused" (certainly
            # not sent) into a 502 (maybe sent).
            trust_env=False,
            follow_redirects=False,
        )

    @property
    def address(self) -> str:
        """Where it is, for pages and logs: the URL (without any user:password) and session."""
        parts = urlsplit(self.base_url)
        host = parts.netloc.rpartition("@")[2]
        return f"{urlunsplit(parts._replace(netloc=host))} (session {self.session})"

    def __repr__(self) -> str:
        return f"<WahaGateway {self.address}>"

    def __enter__(self) -> WahaGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    cannot_reach = staticmethod(cannot_reach)

    # --- the session ------------------------------------------------------------

    def status(self) -> Status:
        """The session now, with the QR while WAHA waits for a scan.
        Raises GatewayUnavailable when nothing answered."""
        url = self._session_url()
        response = self._request("GET", url, timeout=self.status_timeout)
        data = _json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            return Status(
                State.UNKNOWN, _refusal(response, url), code=f"HTTP {response.status_code}"
            )
        code = data.get("status")
        if not isinstance(code, str) or not code:
            return Status(
                State.UNKNOWN,
                f"the gateway's session answer has no status: {_snippet(response)}",
                code="no status",
            )
        status = session_status(code)
        if status.state == State.NEEDS_QR:
            qr = self._qr()
            if qr:
                status = dataclasses.replace(status, qr=qr)
        return status

    def _qr(self) -> str:
        """The raw QR string, or "" (the status moved on: WAHA answers 422)."""
        url = f"{self.base_url}/api/{_segment(self.session)}/auth/qr"
        try:
            response = self._request(
                "GET", url, timeout=self.status_timeout, params={"format": "raw"}
            )
        except GatewayUnavailable as exc:
            log.info("no QR from the gateway: %s", exc)
            return ""
        data = _json(response)
        value = data.get("value") if isinstance(data, dict) else None
        return value if response.status_code == 200 and isinstance(value, str) else ""

    def account(self) -> Account | None:
        """The linked account, or None while there is none."""
        url = f"{self._session_url()}/me"
        response = self._request("GET", url, timeout=self.status_timeout)
        if response.status_code != 200:
            raise GatewayUnavailable(_refusal(response, url))
        # NestJS answers a null with an empty body.
        if not response.content.strip():
            return None
        data = _json(response)
        if data is None and response.content.strip() == b"null":
            return None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise GatewayUnavailable(
                f"the gateway's account answer has no id: {_snippet(response)}"
            )
        number = _phone_chat(data["id"]).partition("@")[0] or None
        name = data.get("pushName")
        return Account(number=number, name=name if isinstance(name, str) else None)

    def request_pairing_code(self, number: str) -> str:
        """A code to link WhatsApp by phone number instead of a QR (`ABCD-EFGH`)."""
        digits = re.sub(r"[\s+()-]", "", number)
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{number[:30]!r} is not a phone number")
        url = f"{self.base_url}/api/{_segment(self.session)}/auth/request-code"
        response = self._request(
            "POST", url, timeout=self.send_timeout, json={"phoneNumber": digits}
        )
        data = _json(response)
        code = data.get("code") if isinstance(data, dict) else None
        if response.is_success and isinstance(code, str) and code:
            return code
        raise GatewayUnavailable(f"no pairing code: {_refusal(response, url)}")

    def restart(self) -> None:
        """Restart the session (the login is kept)."""
        self._session_action("restart")

    def logout(self) -> None:
        """Log WhatsApp out: the session restarts and waits for a new link."""
        self._session_action("logout")

    def _session_action(self, action: str) -> None:
        url = f"{self._session_url()}/{action}"
        response = self._request("POST", url, timeout=self.send_timeout)
        if not response.is_success:
            raise GatewayUnavailable(_refusal(response, url))

    # --- sending ------------------------------------------------------------------

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome:
        """Send one text; never raises. `reply_id` is ours (WAHA cannot carry it)."""
        unreachable = cannot_reach(address)
        if unreachable:
            return SendOutcome.not_sent(Next.FINAL, unreachable)
        url = f"{self.base_url}/api/sendText"
        body = {"session": self.session, "chatId": chat_id(address), "text": text}
        try:
            response = self._http.post(url, json=body, timeout=self.send_timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the request cannot have gone out.
            return SendOutcome.not_sent(
                Next.RETRY, f"the gateway is unreachable ({_describe(exc)})"
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return SendOutcome.not_sent(
                Next.CONFIG, f"the gateway address {url!r} is not usable ({_describe(exc)})"
            )
        except httpx.TimeoutException as exc:
            return SendOutcome.maybe_sent(
                f"the gateway did not answer within {self.send_timeout:g} s ({_describe(exc)})"
            )
        except httpx.TransportError as exc:
            return SendOutcome.maybe_sent(
                f"the gateway broke off without an answer ({_describe(exc)})"
            )
        return send_outcome(response)

    # --- reading a chat back -----------------------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        """Our messages in `chat` since `since`, oldest first (GatewayUnavailable on no answer)."""
        echoes = []
        for item in self._chat_messages(chat, since, from_me=True, limit=READ_BACK_LIMIT):
            try:
                _check_message(item, "message")
            except WebhookRefused as exc:
                log.warning("gateway read-back of %s: a message skipped: %s", chat, exc)
                continue
            if item["fromMe"]:
                echoes.append(_echo(item))
        return sorted(echoes, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        """The customer's messages in `chat` since `since`, oldest first (backfill)."""
        messages = []
        for item in self._chat_messages(chat, since, from_me=False, limit=BACKFILL_LIMIT):
            try:
                _check_message(item, "message")
            except WebhookRefused as exc:
                log.warning("gateway messages of %s: a message skipped: %s", chat, exc)
                continue
            if not item["fromMe"]:
                messages.append(_inbound(item, received_at=None))
        return sorted(messages, key=lambda m: m.stored["timestamp"])

    def _chat_messages(
        self, chat: str, since: datetime, *, from_me: bool, limit: int
    ) -> list[dict]:
        url = (
            f"{self.base_url}/api/{_segment(self.session)}/chats/{_segment(chat_id(chat))}/messages"
        )
        moment = since if since.tzinfo else since.replace(tzinfo=UTC)
        params = {
            "limit": str(limit),
            "downloadMedia": "false",
            "filter.fromMe": "true" if from_me else "false",
            "filter.timestamp.gte": str(int(moment.timestamp())),
        }
        response = self._request("GET", url, timeout=self.status_timeout, params=params)
        data = _json(response)
        if response.status_code == 200 and isinstance(data, list):
            return [item for item in data if isinstance(item, dict)]
        if response.status_code == 400 and "store" in _error_text(data).lower():
            raise GatewayUnavailable(
                "WAHA's NOWEB engine keeps no messages to read back: turn its store on "
                "(config.noweb.store.enabled) for this session"
            )
        raise GatewayUnavailable(_refusal(response, url))

    # --- webhooks (setup_gateway_webhook) ------------------------------------------------

    def webhook_config(self) -> dict:
        """The session's whole config as WAHA holds it (its webhooks with their HMAC keys:
        show it only through a mask)."""
        url = self._session_url()
        response = self._request("GET", url, timeout=self.status_timeout)
        data = _json(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise GatewayUnavailable(_refusal(response, url))
        config = data.get("config")
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise GatewayUnavailable(
                f"the gateway's session config is not an object: {config!r:.100}"
            )
        return copy.deepcopy(config)

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict:
        """`current` with our webhook in it: the entry for `url` gets our events and HMAC
        key (its retries and headers kept), or is added; every other setting and every
        other webhook stays as it is. The same config again plans no change."""
        if not url or not secret:
            raise ValueError("a webhook needs its URL and its secret")
        plan = copy.deepcopy(current)
        hooks = plan.get("webhooks")
        hooks = list(hooks) if isinstance(hooks, list) else []
        for index, hook in enumerate(hooks):
            if isinstance(hook, dict) and hook.get("url") == url:
                hmac_config = hook.get("hmac") if isinstance(hook.get("hmac"), dict) else {}
                hooks[index] = {
                    **hook,
                    "events": list(WEBHOOK_EVENTS),
                    "hmac": {**hmac_config, "key": secret},
                }
                break
        else:
            hooks.append(
                {
                    "url": url,
                    "events": list(WEBHOOK_EVENTS),
                    "hmac": {"key": secret},
                    "retries": dict(WEBHOOK_RETRIES),
                }
            )
        plan["webhooks"] = hooks
        return plan

    def apply_webhook(self, plan: dict) -> None:
        """Replace the session's config with `plan`. WAHA restarts a running session for it
        (WhatsApp is offline for a few seconds; the login is kept)."""
        url = self._session_url()
        body = {"name": self.session, "config": plan}
        response = self._request("PUT", url, timeout=self.send_timeout, json=body)
        if not response.is_success:
            raise GatewayUnavailable(_refusal(response, url))

    # --- what WAHA does not have -----------------------------------------------------------

    def pull_messages(self) -> list[InboundMessage]:
        raise NotImplementedError("WAHA pushes customers' messages to the webhook")

    def mark_processed(self, message_id: str) -> None:
        raise NotImplementedError("WAHA pushes customers' messages to the webhook")

    @staticmethod
    def buffer_overflowed(count: int) -> bool:
        return False

    # --- HTTP ------------------------------------------------------------------------------

    def _session_url(self) -> str:
        return f"{self.base_url}/api/sessions/{_segment(self.session)}"

    def _request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"the gateway at {url} did not answer ({_describe(exc)})"
            ) from exc
        except ValueError as exc:  # a malformed URL
            raise GatewayUnavailable(f"the gateway address {url!r} is not usable ({exc})") from exc


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


def send_outcome(response: httpx.Response) -> SendOutcome:
    """What one `POST /api/sendText` answer means (GATEWAY.md section 2's table)."""
    code = response.status_code
    data = _json(response)
    if 200 <= code < 300:
        return SendOutcome.sent(sent_id(data))
    words = _error_text(data) or _snippet(response)
    if code == 422 and isinstance(data, dict) and isinstance(data.get("expected"), list):
        state = data.get("status") if isinstance(data.get("status"), str) else "not working"
        return SendOutcome.not_sent(
            Next.HOLD, f"the WhatsApp session is {state}, so the gateway sent nothing ({words})"
        )
    if code == 400:
        return SendOutcome.not_sent(Next.FINAL, f"the gateway refused the message: {words}")
    if code in (401, 403):
        return SendOutcome.not_sent(
            Next.CONFIG, f"the gateway refused our API key (HTTP {code}): check GATEWAY_API_KEY"
        )
    if code == 404:
        # WAHA looks the session up before sending; a wrong path never reaches it.
        return SendOutcome.not_sent(
            Next.CONFIG,
            f"the gateway has no such session or route (HTTP 404: {words}): "
            "check GATEWAY_URL and GATEWAY_SESSION",
        )
    if 300 <= code < 400:
        return SendOutcome.not_sent(
            Next.CONFIG,
            f"the gateway address redirects (HTTP {code} to "
            f"{response.headers.get('location', '?')[:100]}): set GATEWAY_URL to where WAHA answers",
        )
    # A 5xx, a 422 without `expected`, anything else: it may have gone out.
    return SendOutcome.maybe_sent(f"the gateway answered HTTP {code}: {words}")


def sent_id(data: object) -> str:
    """The short id in a send's answer: WEBJS `id._serialized`, NOWEB/GOWS `key.id`, or an
    `id` string; "" when the answer names none (some versions answer an empty 201)."""
    if not isinstance(data, dict):
        return ""
    value = data.get("id")
    if isinstance(value, dict):
        value = value.get("_serialized") or value.get("id")
    if isinstance(value, str) and value:
        return short_id(value)
    key = data.get("key")
    if isinstance(key, dict) and isinstance(key.get("id"), str) and key["id"]:
        return short_id(key["id"])
    return ""


# --- webhooks -------------------------------------------------------------------------


def verify_webhook(headers: Mapping[str, str], body: bytes, *, secret: str, now: datetime) -> None:
    """Raise WebhookRefused(401) unless WAHA signed this body with `secret` (hex HMAC-SHA512
    of the raw body in `X-Webhook-Hmac`) and the body's own `timestamp` (ms, signed) is
    within the dedupe window: an older one could be a replay whose dedupe key is forgotten."""
    given = _header(headers, HMAC_HEADER)
    if not given:
        raise WebhookRefused(
            401,
            f"{HMAC_HEADER}: missing; set the webhook's HMAC key in WAHA "
            "(hmac.key, or WHATSAPP_HOOK_HMAC_KEY) to GATEWAY_WEBHOOK_SECRET",
        )
    algorithm = _header(headers, HMAC_ALGORITHM_HEADER)
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
            f"timestamp: this delivery was made at {_iso_z(sent_ms / 1000)}, more than "
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
    base = {"dedupe_key": event_id, "event": event, "payload": without_secrets(data)}
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
    _check_message(payload, "payload")
    if _message_type(payload) in NOTICE_TYPES:
        return WebhookItem(EventKind.IGNORED, note="a WhatsApp notice, not a message", **base)
    if not payload["fromMe"]:
        chat = _customer_chat(payload)
        if chat.endswith("@newsletter"):
            return WebhookItem(EventKind.IGNORED, note="a channel's post", **base)
        return WebhookItem(EventKind.MESSAGE, message=_inbound(payload, received_at), **base)
    source = payload.get("source")
    if source == "api":
        return WebhookItem(EventKind.ECHO, echo=_echo(payload), **base)
    if source == "app":
        echo = _echo(payload)
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


def without_secrets(value: Any) -> Any:
    """`value` with every secret-named key (Evolution's `apikey`) dropped, at any depth."""
    if isinstance(value, dict):
        return {
            k: without_secrets(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in SECRET_KEYS)
        }
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


# --- messages in the common model --------------------------------------------------------------


def _check_message(payload: dict, place: str) -> None:
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


def _inbound(payload: dict, received_at: datetime | None) -> InboundMessage:
    """A customer's message (checked by `_check_message`) on the old watcher's keys."""
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
    stored.update({"type": kind, "hasMedia": has_media, "receivedAt": _iso_z(at.timestamp())})
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


def _echo(payload: dict) -> Echo:
    """A message from this account (checked by `_check_message`) as an Echo."""
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
    chat = chat_id(payload["from"])
    if chat.endswith("@lid"):
        data = payload.get("_data") if isinstance(payload.get("_data"), dict) else {}
        key = data.get("key") if isinstance(data.get("key"), dict) else {}
        info = data.get("Info") if isinstance(data.get("Info"), dict) else {}
        chat = _phone_chat(key.get("remoteJidAlt")) or _phone_chat(info.get("SenderAlt")) or chat
    return chat


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
    chat = chat_id(chat)
    if chat.endswith("@lid"):
        data = payload.get("_data") if isinstance(payload.get("_data"), dict) else {}
        key = data.get("key") if isinstance(data.get("key"), dict) else {}
        info = data.get("Info") if isinstance(data.get("Info"), dict) else {}
        chat = _phone_chat(key.get("remoteJidAlt")) or _phone_chat(info.get("RecipientAlt")) or chat
    return chat


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


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header's value whatever its letter case ("" when absent)."""
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else ""
    return ""


def _signed_timestamp(body: bytes) -> float | None:
    """The signed body's own `timestamp` (ms); None when it has none to read (not strict
    JSON, or no number there): the body is then refused 400 naming the place by the
    endpoint's parser or by `parse_webhook`, which needs the timestamp too."""
    # Imported here: the settings import this package before the models are ready.
    from ..statevalidate import StateFileError, parse_json

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


def _iso_z(seconds: float) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, a Z (the number itself when it
    is no time a calendar holds: a body may say anything)."""
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s after 1970"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _segment(value: str) -> str:
    return quote(value, safe="@")


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _error_text(data: object) -> str:
    """WAHA's words in an error body: NestJS `message` (a string or a list), its own
    `error`, or a 500's `exception.message`."""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    if isinstance(message, list):
        message = "; ".join(str(m) for m in message)
    if isinstance(message, str) and message:
        return message[:300]
    exception = data.get("exception")
    for value in (
        data.get("error"),
        exception.get("message") if isinstance(exception, dict) else None,
    ):
        if isinstance(value, str) and value:
            return value[:300]
    return ""


def _refusal(response: httpx.Response, url: str) -> str:
    """A non-answer in words, the likely fix first."""
    code = response.status_code
    words = _error_text(_json(response)) or _snippet(response)
    if code in (401, 403):
        return f"the gateway refused our API key (HTTP {code}): check GATEWAY_API_KEY"
    if code == 404:
        return (
            f"the gateway has no such session or route at {url} (HTTP 404: {words}): "
            "check GATEWAY_URL and GATEWAY_SESSION"
        )
    return f"the gateway answered {url} with HTTP {code}: {words}"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip()
    return repr(text[:200]) if text else "(empty body)"
