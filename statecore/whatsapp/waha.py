"""WAHA, the packaged WhatsApp HTTP API (engines WEBJS, NOWEB, GOWS): GATEWAY.md section 2.

Every request carries `X-Api-Key`. The routes used, under `GATEWAY_URL`:
`GET /api/sessions/<session>` (its status, config and account),
`GET /api/sessions/<session>/me`, `GET /api/<session>/auth/qr?format=raw`,
`POST /api/<session>/auth/request-code`, `POST /api/sendText`,
`GET /api/<session>/chats/<chat>/messages` (read-back and backfill),
`POST /api/sessions/<session>/restart` and `/logout`, and
`PUT /api/sessions/<session>` (the whole session config, webhooks included).
WAHA pushes customers' messages, our own sends (`message.any`), delivery
acks and session changes to our webhook, signed with HMAC-SHA512: that side,
and WAHA's message format the chat listings share, is `waha_events.py`.

A send is `not_sent` only when WAHA certainly sent nothing: its 422 with
`expected` (the session is not working: it checks before sending), a 400
validation error, a refused key (401/403), a 404 (no such session or route:
raised before any send) or a refused connection. Any other answer that is not
a 2xx (a 5xx, a 422 without `expected`), a timeout or a broken connection may
have reached WhatsApp: `maybe_sent`.

Message ids. WAHA names one message `true_<chat>_<id>` (plus `_<participant>`
in a group) in its events, `{"_serialized": ...}` in a WEBJS send's answer and
`{"key": {"id"}}` in a NOWEB/GOWS one. Every id leaving this module and
`waha_events` is the short `<id>` (`short_id`), so a send's answer, its
`message.ack` and its echo name the same message.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from . import config, http
from .model import (
    Account,
    Echo,
    GatewayUnavailable,
    InboundMessage,
    Next,
    SendOutcome,
    SessionAction,
    State,
    Status,
    Traits,
    WebhookRefused,
)
from .waha_events import (
    as_echo,
    as_inbound,
    chat_id,
    check_message,
    phone_chat,
    session_status,
    short_id,
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
# How many of a chat's messages one read-back (ours) and one backfill (theirs) asks for.
READ_BACK_LIMIT = 20
BACKFILL_LIMIT = 100


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


class WahaGateway(http.Adapter):
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
        self._http = http.Client(headers=headers, transport=transport)

    @property
    def address(self) -> str:
        """Where it is, for pages and logs: the URL (without any user:password) and session."""
        return config.shown_address(KIND, self.base_url, self.session)

    def __repr__(self) -> str:
        return f"<WahaGateway {self.address}>"

    cannot_reach = staticmethod(cannot_reach)

    # --- the session ------------------------------------------------------------

    def status(self) -> Status:
        """The session now, with the QR while WAHA waits for a scan.
        Raises GatewayUnavailable when nothing answered."""
        url = self._session_url()
        response = self._http.request("GET", url, timeout=self.status_timeout)
        data = http.json_of(response)
        if response.status_code != 200 or not isinstance(data, dict):
            return Status(
                State.UNKNOWN, _refusal(response, url), code=f"HTTP {response.status_code}"
            )
        code = data.get("status")
        if not isinstance(code, str) or not code:
            return Status(
                State.UNKNOWN,
                f"the gateway's session answer has no status: {http.snippet(response)}",
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
            response = self._http.request(
                "GET", url, timeout=self.status_timeout, params={"format": "raw"}
            )
        except GatewayUnavailable as exc:
            log.info("no QR from the gateway: %s", exc)
            return ""
        data = http.json_of(response)
        value = data.get("value") if isinstance(data, dict) else None
        return value if response.status_code == 200 and isinstance(value, str) else ""

    def account(self) -> Account | None:
        """The linked account, or None while there is none."""
        url = f"{self._session_url()}/me"
        response = self._http.request("GET", url, timeout=self.status_timeout)
        if response.status_code != 200:
            raise GatewayUnavailable(_refusal(response, url))
        # NestJS answers a null with an empty body.
        if not response.content.strip():
            return None
        data = http.json_of(response)
        if data is None and response.content.strip() == b"null":
            return None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise GatewayUnavailable(
                f"the gateway's account answer has no id: {http.snippet(response)}"
            )
        number = phone_chat(data["id"]).partition("@")[0] or None
        name = data.get("pushName")
        return Account(number=number, name=name if isinstance(name, str) else None)

    def request_pairing_code(self, number: str) -> str:
        """A code to link WhatsApp by phone number instead of a QR (`ABCD-EFGH`)."""
        digits = re.sub(r"[\s+()-]", "", number)
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{number[:30]!r} is not a phone number")
        url = f"{self.base_url}/api/{_segment(self.session)}/auth/request-code"
        response = self._http.request(
            "POST", url, timeout=self.send_timeout, json={"phoneNumber": digits}
        )
        data = http.json_of(response)
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
        response = self._http.request("POST", url, timeout=self.send_timeout)
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
        return self._http.send(url, body, timeout=self.send_timeout, outcome=send_outcome)

    # --- reading a chat back -----------------------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        """Our messages in `chat` since `since`, oldest first (GatewayUnavailable on no answer)."""
        listed = self._chat_messages(
            chat, since, from_me=True, limit=READ_BACK_LIMIT, what="read-back of"
        )
        echoes = [as_echo(item) for item in listed if item["fromMe"]]
        return sorted(echoes, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        """The customer's messages in `chat` since `since`, oldest first (backfill)."""
        listed = self._chat_messages(
            chat, since, from_me=False, limit=BACKFILL_LIMIT, what="messages of"
        )
        messages = [as_inbound(item, received_at=None) for item in listed if not item["fromMe"]]
        return sorted(messages, key=lambda m: m.stored["timestamp"])

    def _chat_messages(
        self, chat: str, since: datetime, *, from_me: bool, limit: int, what: str
    ) -> list[dict]:
        """The chat's well-formed messages as WAHA lists them (`what` names the listing
        in the log)."""
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
        response = self._http.request("GET", url, timeout=self.status_timeout, params=params)
        data = http.json_of(response)
        if response.status_code == 200 and isinstance(data, list):
            return [m for m in data if isinstance(m, dict) and _well_formed(m, f"{what} {chat}")]
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
        response = self._http.request("GET", url, timeout=self.status_timeout)
        data = http.json_of(response)
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
        response = self._http.request("PUT", url, timeout=self.send_timeout, json=body)
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


def send_outcome(response: httpx.Response) -> SendOutcome:
    """What one `POST /api/sendText` answer means (GATEWAY.md section 2's table)."""
    code = response.status_code
    data = http.json_of(response)
    if 200 <= code < 300:
        return SendOutcome.sent(sent_id(data))
    words = _error_text(data) or http.snippet(response)
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


# --- small helpers --------------------------------------------------------------------------


def _well_formed(item: dict, listing: str) -> bool:
    """One listed message is checked as a webhook's is; a garbled one is skipped and
    logged, and the rest of the listing still counts."""
    try:
        check_message(item, "message")
    except WebhookRefused as exc:
        log.warning("gateway %s: a message skipped: %s", listing, exc)
        return False
    return True


def _segment(value: str) -> str:
    return quote(value, safe="@")


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
    words = _error_text(http.json_of(response)) or http.snippet(response)
    if code in (401, 403):
        return f"the gateway refused our API key (HTTP {code}): check GATEWAY_API_KEY"
    if code == 404:
        return (
            f"the gateway has no such session or route at {url} (HTTP 404: {words}): "
            "check GATEWAY_URL and GATEWAY_SESSION"
        )
    return f"the gateway answered {url} with HTTP {code}: {words}"
