"""Evolution API (Baileys), GATEWAY.md section 3.

Every request carries `apikey: <GATEWAY_API_KEY>`; the session is an instance
named GATEWAY_SESSION. Routes used: `GET /instance/connectionState/<i>`,
`GET /instance/connect/<i>[?number=]` (the QR or a pairing code),
`GET /instance/fetchInstances?instanceName=<i>` (the account, why it closed),
`POST /message/sendText/<i>`, `POST /chat/findMessages/<i>` (read-back and
backfill: Evolution's own database), `POST /instance/restart/<i>`,
`DELETE /instance/logout/<i>`, `GET /webhook/find/<i>` and `POST /webhook/set/<i>`.
Evolution answers an error as `{"status", "error", "response": {"message"}}`.

A send is classified by what Evolution's own code shows (read in its source):
its schema check (a 400 `[[...]]` naming a property) and then its number check
(a 400 `[{"exists": false, ...}]` for a number not on WhatsApp) run before any
send: neither sent anything, and neither can ever go (final). 401 is our key
and 404 our instance or address (config). Every
other 400 wraps an error thrown during *or after* the send (users report 400s
for delivered messages), so it, a 5xx, a timeout or a broken answer is
`maybe_sent`. The gateway's message id is `key.id` everywhere: in the send's
201, in the `send.message` echo, in `messages.update` statuses and in
findMessages, so they can be matched.

Webhooks carry no signature of the body. A per-instance webhook whose
`headers` hold a `jwt_key` makes Evolution send `Authorization: Bearer <JWT>`
(HS256 with that key, claims `iat`, `exp` = iat + 600, `app: "evolution"`,
`action: "webhook"`): that token is all `verify_webhook` can check. It does not
cover the body, so within its ten minutes a captured token would pass with
another body: only TLS keeps the body intact on the way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from .model import (
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
)

log = logging.getLogger(__name__)

KIND = "evolution"
TRAITS = Traits(
    has_webhooks=True,
    can_read_back=True,
    can_backfill=True,
    session_actions=frozenset({SessionAction.PAIR, SessionAction.RESTART, SessionAction.LOGOUT}),
    webhook_setup="command",
)
# The events our webhook needs (Evolution's names in /webhook/set): customers' messages
# and answers from the phone, our own sends echoed, their later statuses, the session.
WEBHOOK_EVENTS = (
    "MESSAGES_UPSERT",
    "SEND_MESSAGE",
    "MESSAGES_UPDATE",
    "CONNECTION_UPDATE",
    "QRCODE_UPDATED",
)
# A webhook's Bearer token: Evolution signs it with the `jwt_key` header of the webhook.
JWT_KEY_HEADER = "jwt_key"
# Our clock and Evolution's may disagree this much when a token's expiry is checked.
JWT_CLOCK_SKEW = timedelta(seconds=30)
# Keys whose value is a secret wherever they sit in a body: the instance token Evolution
# puts in every webhook (`apikey`), the global key of its error webhook (`api_key`).
SECRET_KEYS = frozenset({"apikey", "api_key", "jwt_key"})
# findMessages pages (`offset` is Evolution's page size), newest first. A person's chat
# is listed with the whole instance's window (see _find_messages): past this many
# pages the oldest are left out, and said so in the log.
PAGE_SIZE = 100
MAX_PAGES = 10
# Longer than any WhatsApp message id: refused in a webhook rather than stored.
MAX_ID_LENGTH = 200
# Baileys' DisconnectReason codes Evolution reports when it will not reconnect.
LOGGED_OUT, FORBIDDEN = 401, 403
TEXT_REQUIRED = "Text is required"
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
# The old watcher's keys, in its order: what is stored for a customer's message.
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


def cannot_reach(address: str) -> str:
    """Why Evolution cannot deliver to `address`, or "" when it can.

    It takes a number (digits), a group (`...@g.us`) or a hidden contact
    (`...@lid`: its number check lets a `@lid` through). A `status@broadcast`
    sender is a contact's Status update: Evolution would *post a Status* if asked
    to send there, so it is refused here."""
    user, at, domain = address.rpartition("@") if "@" in address else (address, "", "")
    if domain == "broadcast":
        return "a Status update (or a broadcast list) cannot be answered"
    if domain == "g.us":
        return "" if user else f"{address[:60]!r} is not a group address"
    if domain == "lid":
        return "" if user.isdigit() else f"{address[:60]!r} is not a WhatsApp contact id"
    if at and domain not in ("c.us", "s.whatsapp.net"):
        return f"this gateway cannot reach {address[:60]!r} (not a number, a group or a contact)"
    digits = re.sub(r"\D", "", user)
    if not digits:
        return f"{address[:60]!r} is not a phone number"
    if len(digits) > 15:
        # Evolution would take 18 digits or more for a group id: never send those.
        return f"{address[:60]!r} is not a phone number (more than 15 digits)"
    return ""


def client(settings: Any, *, status_timeout: float, send_timeout: float) -> EvolutionGateway:
    """The client of the Evolution API at GATEWAY_URL, instance GATEWAY_SESSION."""
    return EvolutionGateway(
        settings.GATEWAY_URL,
        api_key=settings.GATEWAY_API_KEY,
        instance=settings.GATEWAY_SESSION,
        status_timeout=status_timeout,
        send_timeout=send_timeout,
    )


class EvolutionGateway:
    """One client of the instance `instance` at `base_url`. The key is only ever a header."""

    kind = KIND
    traits = TRAITS

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        instance: str = "default",
        status_timeout: float = 5.0,
        send_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.instance = instance
        self.status_timeout = status_timeout
        self.send_timeout = send_timeout
        self._http = httpx.Client(
            transport=transport,
            headers={"apikey": api_key},
            # A fresh connection per call: a kept-alive socket Evolution has just
            # closed would turn a send into "maybe sent" for nothing.
            limits=httpx.Limits(max_keepalive_connections=0),
            # A proxy from the environment would turn "connection refused"
            # (certainly not sent) into a 502 (maybe sent).
            trust_env=False,
            follow_redirects=False,
        )

    @property
    def address(self) -> str:
        return f"{self.base_url} (instance {self.instance})"

    def __enter__(self) -> EvolutionGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    cannot_reach = staticmethod(cannot_reach)

    # --- the session ------------------------------------------------------------

    def status(self) -> Status:
        """The session now. Raises GatewayUnavailable when nothing answered.

        `connecting` means both "reconnecting with the stored login" and "waiting for
        a scan", and Evolution keeps its last QR after a link: the instance's saved
        `connectionStatus` (still "open" while it reconnects) tells them apart."""
        response = self._request("GET", self._url("instance/connectionState"))
        data = _json(response)
        state = _path(data, "instance", "state")
        if response.status_code != 200 or not isinstance(state, str):
            return Status(
                State.UNKNOWN, _answer_words(response, self.instance), code=_code(response)
            )
        if state == "open":
            return session_status(state)
        record = self._record_or_none()
        if state == "close":
            return session_status(
                state, reason=_int_or_none(_get_key(record, "disconnectionReasonCode"))
            )
        saved = _get_key(record, "connectionStatus")
        if state == "connecting" and saved != "open":
            qr = self._qr_or_none()
            if isinstance(qr, dict) and _str(qr.get("code")):
                return qr_status(qr["code"], _str(qr.get("pairingCode")), code="connecting")
        return session_status(state, reconnecting=saved == "open")

    def account(self) -> Account | None:
        """The linked account, or None while WhatsApp is not connected."""
        record = self._record()
        if record.get("connectionStatus") != "open" or not _str(record.get("ownerJid")):
            return None
        return Account(
            number=_user(record["ownerJid"]),
            name=_str(record.get("profileName")) or None,
            platform=None,
        )

    def _record(self) -> dict:
        """This instance's record from fetchInstances (it holds the instance token:
        never logged, never shown, nothing of it kept but what is read here)."""
        response = self._request(
            "GET",
            f"{self.base_url}/instance/fetchInstances",
            params={"instanceName": self.instance},
        )
        data = _json(response)
        if response.status_code != 200 or not isinstance(data, list):
            raise GatewayUnavailable(
                f"Evolution did not list the instance: {_answer_words(response, self.instance, body=False)}"
            )
        for record in data:
            if isinstance(record, dict) and record.get("name") == self.instance:
                return record
        raise GatewayUnavailable(f"Evolution's list of instances has no {self.instance!r}")

    def _record_or_none(self) -> dict | None:
        try:
            return self._record()
        except GatewayUnavailable as exc:
            log.info("evolution: no instance record for the status: %s", exc)
            return None

    def _qr_or_none(self) -> object:
        # Only asked while `connecting`: then /instance/connect just shows the QR (from
        # `close` it would start a connection).
        try:
            response = self._request("GET", self._url("instance/connect"))
        except GatewayUnavailable as exc:
            log.info("evolution: no QR for the status: %s", exc)
            return None
        return _json(response) if response.status_code == 200 else None

    # --- sending ----------------------------------------------------------------

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome:
        """Send one text; never raises. `reply_id` is ours (Evolution cannot carry it)."""
        unreachable = cannot_reach(address)
        if unreachable:
            return SendOutcome.not_sent(Next.FINAL, unreachable)
        url = self._url("message/sendText")
        try:
            response = self._http.post(
                url, json={"number": _number(address), "text": text}, timeout=self.send_timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the request cannot have gone out.
            return SendOutcome.not_sent(Next.RETRY, f"Evolution is unreachable ({_describe(exc)})")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return SendOutcome.not_sent(
                Next.CONFIG, f"the gateway address {url!r} is not usable ({_describe(exc)})"
            )
        except httpx.TimeoutException as exc:
            return SendOutcome.maybe_sent(
                f"Evolution did not answer within {self.send_timeout:g} s ({_describe(exc)})"
            )
        except httpx.TransportError as exc:
            return SendOutcome.maybe_sent(
                f"Evolution broke off without an answer ({_describe(exc)})"
            )
        except ValueError as exc:
            # The body could not be encoded (a lone surrogate): nothing left this process.
            return SendOutcome.not_sent(Next.FINAL, f"the text cannot be sent ({_describe(exc)})")
        return _send_outcome(response, self.instance)

    # --- reading a chat back --------------------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        """Our messages in `chat` since `since`, oldest first (sent by the API or from
        the phone: the caller matches them by id or text). Needs Evolution to save
        messages (DATABASE_SAVE_DATA_NEW_MESSAGE); without it the list is empty."""
        target = _chat_key(chat)
        echoes = []
        for place, record in self._find_messages(target, since, from_me=True):
            try:
                parts = _message_parts(record, place)
            except WebhookRefused as exc:
                log.warning("evolution findMessages: %s; skipped", exc)
                continue
            if parts["from_me"] and target in parts["chats"]:
                echoes.append(_echo(parts))
        return sorted(echoes, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        """The customer's messages in `chat` since `since`, oldest first (backfill)."""
        target = _chat_key(chat)
        found = []
        for place, record in self._find_messages(target, since, from_me=False):
            try:
                parts = _message_parts(record, place)
            except WebhookRefused as exc:
                log.warning("evolution findMessages: %s; skipped", exc)
                continue
            if not parts["from_me"] and target in parts["chats"] and not parts["not_a_message"]:
                found.append(_inbound(parts))
        return sorted(found, key=lambda m: m.stored["timestamp"])

    def _find_messages(
        self, target: str, since: datetime, *, from_me: bool
    ) -> list[tuple[str, object]]:
        """findMessages' records in the window, with their place for a warning.

        Its filters, as Evolution applies them: the time range only with both ends;
        `fromMe` only when true; `remoteJidAlt` matches everything (its OR holds an
        empty clause). A person's chat may be stored under a `@lid` id with the
        number as `remoteJidAlt`, so for a number the window is listed and the chat
        matched here; a group or a `@lid` id is asked for exactly."""
        if cannot_reach(target):
            return []
        key: dict[str, object] = {"fromMe": True} if from_me else {}
        if not target.endswith("@c.us"):
            key["remoteJid"] = target
        where: dict[str, object] = {
            "messageTimestamp": {
                "gte": _iso_z(since),
                # Evolution's clock may run ahead of ours.
                "lte": _iso_z(datetime.now(UTC) + timedelta(days=1)),
            }
        }
        if key:
            where["key"] = key
        records: list[tuple[str, object]] = []
        for page in range(1, MAX_PAGES + 1):
            response = self._request(
                "POST",
                self._url("chat/findMessages"),
                json={"where": where, "offset": PAGE_SIZE, "page": page},
            )
            data = _json(response)
            found = _path(data, "messages", "records")
            if response.status_code != 200 or not isinstance(found, list):
                raise GatewayUnavailable(
                    f"Evolution did not list the chat's messages: {_answer_words(response, self.instance)}"
                )
            records += [(f"messages.records[{i}] (page {page})", r) for i, r in enumerate(found)]
            pages = _path(data, "messages", "pages")
            if not isinstance(pages, int) or page >= pages:
                break
        else:
            log.warning(
                "evolution findMessages: over %d messages since %s; the oldest were not read",
                PAGE_SIZE * MAX_PAGES,
                _iso_z(since),
            )
        return records

    # --- the session from the dashboard -------------------------------------------

    def request_pairing_code(self, number: str) -> str:
        """A code to enter on the phone with `number` (digits with the country code).

        Evolution makes one only when it starts linking from a closed session; while
        it already shows a QR it answers that QR without a code."""
        response = self._request(
            "GET", self._url("instance/connect"), params={"number": re.sub(r"\D", "", number)}
        )
        data = _json(response)
        code = _str(_path(data, "pairingCode"))
        if response.status_code == 200 and code:
            return code
        if response.status_code == 200 and _path(data, "instance", "state") == "open":
            raise GatewayUnavailable(
                "WhatsApp is already linked: log out first to link another phone"
            )
        if response.status_code == 200 and isinstance(data, dict) and "error" not in data:
            raise GatewayUnavailable(
                "Evolution gave no pairing code: it makes one only when linking starts from a "
                "closed session (log out, then ask again)"
            )
        raise GatewayUnavailable(
            f"Evolution gave no pairing code: {_answer_words(response, self.instance)}"
        )

    def restart(self) -> None:
        """Restart the session (Evolution reconnects with the stored login)."""
        response = self._request("POST", self._url("instance/restart"))
        data = _json(response)
        if response.status_code == 200 and isinstance(data, dict) and data.get("error") is not True:
            return
        words = _answer_words(response, self.instance)
        if _path(data, "message") == "[object Object]":
            # Its own "not connected" refusal, flattened by its error handling.
            words = "it cannot restart a session that is closed: link it instead"
        raise GatewayUnavailable(f"Evolution did not restart the session: {words}")

    def logout(self) -> None:
        """Log WhatsApp out: Evolution forgets the login; a new link is needed."""
        response = self._request("DELETE", self._url("instance/logout"))
        data = _json(response)
        if response.status_code == 200 and isinstance(data, dict) and data.get("error") is False:
            return
        raise GatewayUnavailable(
            f"Evolution did not log out: {_answer_words(response, self.instance)}"
        )

    # --- setup_gateway_webhook ------------------------------------------------------

    def webhook_config(self) -> dict:
        """The instance's webhook as /webhook/set takes it ({} when it has none).
        It holds the `jwt_key` as set: the caller masks it."""
        response = self._request("GET", self._url("webhook/find"))
        data = _json(response)
        if response.status_code == 200 and response.text.strip() == "null":
            return {}  # no webhook set for the instance
        if response.status_code != 200 or not isinstance(data, dict):
            raise GatewayUnavailable(
                f"Evolution did not show its webhook: {_answer_words(response, self.instance, body=False)}"
            )
        return {
            "enabled": data.get("enabled"),
            "url": data.get("url"),
            "events": data.get("events"),
            "headers": data.get("headers"),
            "byEvents": data.get("webhookByEvents"),
            "base64": data.get("webhookBase64"),
        }

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict:
        """`current` with ours: our URL (Evolution has one webhook per instance),
        enabled, our events added to its own, the secret as the `jwt_key` header (its
        other headers kept), one URL for all events (`byEvents` off) and no media
        inlined as base64 (a body over our size limit would be lost)."""
        events = current.get("events") if isinstance(current.get("events"), list) else []
        headers = current.get("headers") if isinstance(current.get("headers"), dict) else {}
        return {
            "enabled": True,
            "url": url,
            "events": [*events, *(e for e in WEBHOOK_EVENTS if e not in events)],
            "headers": {**headers, JWT_KEY_HEADER: secret},
            "byEvents": False,
            "base64": False,
        }

    def apply_webhook(self, plan: dict) -> None:
        response = self._request("POST", self._url("webhook/set"), json={"webhook": plan})
        if response.status_code != 201 or not isinstance(_json(response), dict):
            raise GatewayUnavailable(
                f"Evolution did not set the webhook: {_answer_words(response, self.instance, body=False)}"
            )

    # --- what Evolution does not have ----------------------------------------------

    def pull_messages(self) -> list[InboundMessage]:
        raise NotImplementedError("Evolution pushes customers' messages by webhook")

    def mark_processed(self, message_id: str) -> None:
        raise NotImplementedError("Evolution pushes customers' messages by webhook")

    @staticmethod
    def buffer_overflowed(count: int) -> bool:
        return False

    # --- HTTP ------------------------------------------------------------------------

    def _url(self, route: str) -> str:
        return f"{self.base_url}/{route}/{quote(self.instance, safe='')}"

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, timeout=self.status_timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"Evolution at {url} did not answer ({_describe(exc)})"
            ) from exc
        except ValueError as exc:  # a malformed URL
            raise GatewayUnavailable(f"the gateway address {url!r} is not usable ({exc})") from exc


# --- classifying a send's answer -------------------------------------------------------


def _send_outcome(response: httpx.Response, instance: str) -> SendOutcome:
    code = response.status_code
    data = _json(response)
    message_id = _str(_path(data, "key", "id"))
    if code == 201 and message_id:
        return SendOutcome.sent(message_id)
    said = _path(data, "response", "message")
    said = said if isinstance(said, list) else []
    if code == 400:
        refused = next((m for m in said if isinstance(m, dict) and m.get("exists") is False), None)
        if refused is not None:
            number = refused.get("number") or refused.get("jid") or "this number"
            return SendOutcome.not_sent(
                Next.FINAL, f"{str(number)[:60]} is not on WhatsApp (Evolution: exists false)"
            )
        if said and all(isinstance(m, list) for m in said):
            # Its schema check ([[...]]), made before anything is sent.
            return SendOutcome.not_sent(
                Next.FINAL, f"Evolution refused the request: {_message_words(said)}"
            )
        if said == [TEXT_REQUIRED]:
            return SendOutcome.not_sent(Next.FINAL, f"Evolution refused it: {TEXT_REQUIRED}")
        # Anything thrown inside its send path becomes a 400, after the send too.
        return SendOutcome.maybe_sent(
            f"Evolution answered {_answer_words(response, instance)}: "
            "it may have been sent all the same"
        )
    if code in (401, 403, 404) or 300 <= code < 400:
        return SendOutcome.not_sent(Next.CONFIG, _answer_words(response, instance))
    if code == 429:
        return SendOutcome.not_sent(
            Next.RETRY, f"rate limited: {_answer_words(response, instance)}"
        )
    # A 2xx without a message id, a 5xx, anything else: it may have gone.
    return SendOutcome.maybe_sent(f"Evolution answered {_answer_words(response, instance)}")


def _answer_words(response: httpx.Response, instance: str, *, body: bool = True) -> str:
    """An answer that is not the one hoped for, in words. `body=False` for routes whose
    body may hold a secret (fetchInstances holds the instance token, webhook/find the
    jwt_key): only Evolution's own error message is repeated then, never the body."""
    code = response.status_code
    data = _json(response)
    said = _path(data, "response", "message")
    words = _message_words(said) if said not in (None, "", []) else ""
    if code == 401:
        return "HTTP 401: Evolution refused our API key (check GATEWAY_API_KEY)"
    if code == 404 and words.startswith("Cannot "):
        return f"HTTP 404: Evolution has no such route, check GATEWAY_URL ({words})"
    if code == 404 and words:
        return f"HTTP 404: Evolution has no instance {instance!r}, check GATEWAY_SESSION ({words})"
    if code == 404:
        return "HTTP 404: nothing at this address answers like Evolution (check GATEWAY_URL)"
    if 300 <= code < 400:
        where = response.headers.get("location", "")[:100]
        return f"HTTP {code}: the gateway address redirects to {where!r} (check GATEWAY_URL)"
    if words:
        return f"HTTP {code}: {words}"
    if (
        isinstance(data, dict)
        and data.get("error") is True
        and isinstance(data.get("message"), str)
    ):
        return f"HTTP {code}: {data['message'][:200]}"
    return f"HTTP {code}: {_snippet(response) if body else 'an answer that is not Evolution’s'}"


def _message_words(said: object) -> str:
    if isinstance(said, list):
        return "; ".join(_message_words(m) for m in said)[:300]
    if isinstance(said, dict):
        return json.dumps(said, ensure_ascii=False)[:300]
    return str(said)[:300]


def _code(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}"


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
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
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
    payload = without_secrets(data)
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


def without_secrets(value: object) -> Any:
    """`value` with every secret-named key dropped, wherever it sits."""
    if isinstance(value, dict):
        return {
            k: without_secrets(v) for k, v in value.items() if str(k).lower() not in SECRET_KEYS
        }
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def _message_event(event: str, data: dict, payload: dict) -> WebhookItem:
    parts = _message_parts(_get(data, "data", "", "an object"), "data")
    key = f"{event}:{parts['id']}"
    if parts["not_a_message"]:
        return WebhookItem(
            EventKind.IGNORED, key, event, payload=payload, note=parts["not_a_message"]
        )
    if not parts["from_me"]:
        return WebhookItem(EventKind.MESSAGE, key, event, message=_inbound(parts), payload=payload)
    if parts["chat"].endswith("@broadcast"):
        return WebhookItem(
            EventKind.IGNORED, key, event, payload=payload, note="the shop's own Status update"
        )
    answer = InboundMessage(
        id=parts["id"],
        chat=parts["chat"],
        sender_name=parts["name"],
        text=parts["text"],
        is_group=parts["is_group"],
        from_me=True,
        media_kind=parts["media_kind"],
        received_at=parts["at"],
    )
    return WebhookItem(EventKind.FROM_PHONE, key, event, message=answer, payload=payload)


def _send_event(event: str, data: dict, payload: dict) -> WebhookItem:
    parts = _message_parts(_get(data, "data", "", "an object"), "data")
    return WebhookItem(
        EventKind.ECHO, f"{event}:{parts['id']}", event, echo=_echo(parts), payload=payload
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
        without_secrets(value), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# --- a message (a webhook's `data`, a findMessages record) --------------------------------


def _message_parts(data: object, place: str) -> dict[str, Any]:
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
    if kind == "audio" and _path(content, "audioMessage", "ptt") is True:
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


def _inbound(parts: dict[str, Any]) -> InboundMessage:
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
        "receivedAt": _iso_z(parts["at"]),
    }
    return InboundMessage(
        id=parts["id"],
        chat=parts["chat"],
        sender_name=parts["name"],
        text=parts["text"],
        is_group=parts["is_group"],
        media_kind=parts["media_kind"],
        received_at=parts["at"],
        stored={k: stored[k] for k in STORED_KEYS if k in stored},
    )


def _echo(parts: dict[str, Any]) -> Echo:
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
        text = _path(content, *path)
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


def _chat_key(address: str) -> str:
    """An address as `_address` writes it: bare digits and `@s.whatsapp.net` as `@c.us`."""
    if "@" not in address:
        return re.sub(r"\D", "", address) + "@c.us"
    return _normal(address)


def _number(address: str) -> str:
    """What sendText's `number` takes: the digits of a person, a group or `@lid` id whole."""
    if address.endswith(("@g.us", "@lid")):
        return address
    return re.sub(r"\D", "", address.partition("@")[0])


def _user(jid: str) -> str:
    return re.sub(r"\D", "", jid.partition("@")[0].split(":")[0])


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


def _path(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _get_key(record: dict | None, key: str) -> object:
    return record.get(key) if isinstance(record, dict) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _iso_z(at: datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip()
    return repr(text[:200]) if text else "(empty body)"
