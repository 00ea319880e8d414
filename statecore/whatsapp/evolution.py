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

Webhooks, and Evolution's message records the chat listings share, are
`evolution_events.py`.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from . import config, http
from .evolution_events import (
    JWT_KEY_HEADER,
    as_echo,
    as_inbound,
    chat_key,
    message_parts,
    qr_status,
    session_status,
)
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
# findMessages pages (`offset` is Evolution's page size), newest first. A person's chat
# is listed with the whole instance's window (see _find_messages): past this many
# pages the oldest are left out, and said so in the log.
PAGE_SIZE = 100
MAX_PAGES = 10
TEXT_REQUIRED = "Text is required"
# Its sentences name it; a setting is still "the gateway address" (GATEWAY_URL).
NAMES = http.Names(gateway="Evolution")


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


class EvolutionGateway(http.Adapter):
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
        self._http = http.Client(names=NAMES, headers={"apikey": api_key}, transport=transport)

    @property
    def address(self) -> str:
        return config.shown_address(KIND, self.base_url, self.instance)

    cannot_reach = staticmethod(cannot_reach)

    # --- the session ------------------------------------------------------------

    def status(self) -> Status:
        """The session now. Raises GatewayUnavailable when nothing answered.

        `connecting` means both "reconnecting with the stored login" and "waiting for
        a scan", and Evolution keeps its last QR after a link: the instance's saved
        `connectionStatus` (still "open" while it reconnects) tells them apart."""
        response = self._request("GET", self._url("instance/connectionState"))
        data = http.json_of(response)
        state = http.json_at(data, "instance", "state")
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
        data = http.json_of(response)
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
        return http.json_of(response) if response.status_code == 200 else None

    # --- sending ----------------------------------------------------------------

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome:
        """Send one text; never raises. `reply_id` is ours (Evolution cannot carry it)."""
        unreachable = cannot_reach(address)
        if unreachable:
            return SendOutcome.not_sent(Next.FINAL, unreachable)
        return self._http.send(
            self._url("message/sendText"),
            {"number": _number(address), "text": text},
            timeout=self.send_timeout,
            outcome=lambda response: _send_outcome(response, self.instance),
        )

    # --- reading a chat back --------------------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        """Our messages in `chat` since `since`, oldest first (sent by the API or from
        the phone: the caller matches them by id or text). Needs Evolution to save
        messages (DATABASE_SAVE_DATA_NEW_MESSAGE); without it the list is empty."""
        listed = self._listed(chat_key(chat), since, from_me=True)
        echoes = [as_echo(parts) for parts in listed if parts["from_me"]]
        return sorted(echoes, key=lambda e: e.at or datetime.min.replace(tzinfo=UTC))

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        """The customer's messages in `chat` since `since`, oldest first (backfill)."""
        listed = self._listed(chat_key(chat), since, from_me=False)
        found = [
            as_inbound(parts)
            for parts in listed
            if not parts["from_me"] and not parts["not_a_message"]
        ]
        return sorted(found, key=lambda m: m.stored["timestamp"])

    def _listed(self, target: str, since: datetime, *, from_me: bool) -> list[dict[str, Any]]:
        """The messages of `target` findMessages lists, each checked: one it garbles is
        skipped and logged, the rest still count."""
        listed = []
        for place, record in self._find_messages(target, since, from_me=from_me):
            try:
                parts = message_parts(record, place)
            except WebhookRefused as exc:
                log.warning("evolution findMessages: %s; skipped", exc)
                continue
            if target in parts["chats"]:
                listed.append(parts)
        return listed

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
                "gte": http.iso_z(since),
                # Evolution's clock may run ahead of ours.
                "lte": http.iso_z(datetime.now(UTC) + timedelta(days=1)),
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
            data = http.json_of(response)
            found = http.json_at(data, "messages", "records")
            if response.status_code != 200 or not isinstance(found, list):
                raise GatewayUnavailable(
                    f"Evolution did not list the chat's messages: {_answer_words(response, self.instance)}"
                )
            records += [(f"messages.records[{i}] (page {page})", r) for i, r in enumerate(found)]
            pages = http.json_at(data, "messages", "pages")
            if not isinstance(pages, int) or page >= pages:
                break
        else:
            log.warning(
                "evolution findMessages: over %d messages since %s; the oldest were not read",
                PAGE_SIZE * MAX_PAGES,
                http.iso_z(since),
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
        data = http.json_of(response)
        code = _str(http.json_at(data, "pairingCode"))
        if response.status_code == 200 and code:
            return code
        if response.status_code == 200 and http.json_at(data, "instance", "state") == "open":
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
        data = http.json_of(response)
        if response.status_code == 200 and isinstance(data, dict) and data.get("error") is not True:
            return
        words = _answer_words(response, self.instance)
        if http.json_at(data, "message") == "[object Object]":
            # Its own "not connected" refusal, flattened by its error handling.
            words = "it cannot restart a session that is closed: link it instead"
        raise GatewayUnavailable(f"Evolution did not restart the session: {words}")

    def logout(self) -> None:
        """Log WhatsApp out: Evolution forgets the login; a new link is needed."""
        response = self._request("DELETE", self._url("instance/logout"))
        data = http.json_of(response)
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
        data = http.json_of(response)
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
        if response.status_code != 201 or not isinstance(http.json_of(response), dict):
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
        return self._http.request(method, url, timeout=self.status_timeout, **kwargs)


# --- classifying a send's answer -------------------------------------------------------


def _send_outcome(response: httpx.Response, instance: str) -> SendOutcome:
    code = response.status_code
    data = http.json_of(response)
    message_id = _str(http.json_at(data, "key", "id"))
    if code == 201 and message_id:
        return SendOutcome.sent(message_id)
    said = http.json_at(data, "response", "message")
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
    data = http.json_of(response)
    said = http.json_at(data, "response", "message")
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
    return f"HTTP {code}: {http.snippet(response) if body else 'an answer that is not Evolution’s'}"


def _message_words(said: object) -> str:
    if isinstance(said, list):
        return "; ".join(_message_words(m) for m in said)[:300]
    if isinstance(said, dict):
        return json.dumps(said, ensure_ascii=False)[:300]
    return str(said)[:300]


def _code(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}"


def _number(address: str) -> str:
    """What sendText's `number` takes: the digits of a person, a group or `@lid` id whole."""
    if address.endswith(("@g.us", "@lid")):
        return address
    return re.sub(r"\D", "", address.partition("@")[0])


def _user(jid: str) -> str:
    return re.sub(r"\D", "", jid.partition("@")[0].split(":")[0])


# --- small helpers ------------------------------------------------------------------


def _get_key(record: dict | None, key: str) -> object:
    return record.get(key) if isinstance(record, dict) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
