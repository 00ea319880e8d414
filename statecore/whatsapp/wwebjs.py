"""The scripts' own service (whatsapp-web.js + Express), GATEWAY.md section 1.

Its routes under `api_endpoint`: `GET /status` (with the QR while WhatsApp
waits for a scan), `GET /info`, `POST /send`, `GET /messages?unprocessed=true`
and `POST /messages/<id>/processed`. It has no authentication and pushes
nothing: the QR and the customers' messages are polled.

Every answer is turned into the common model here and nowhere else. A send
is `not_sent` only when the service certainly sent nothing: its "not ready"
check runs before any send, a missing field is refused before it, and a
refused connection never reached it. "Failed to send message", any 5xx, a
timeout or a broken answer may have reached WhatsApp: `maybe_sent`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from . import http
from .model import (
    Account,
    Echo,
    GatewayUnavailable,
    InboundMessage,
    Next,
    SendOutcome,
    State,
    Status,
    Traits,
)

log = logging.getLogger(__name__)

KIND = "wwebjs"
# It is polled, pushes nothing, cannot list a chat, and keeps its login in `.wwebjs_auth`.
TRAITS = Traits(can_pull=True, needs_session_folder=True)
NOT_READY_ERROR = "WhatsApp client is not ready"
MISSING_FIELDS_PREFIX = "Missing required fields"
# Its /messages buffer keeps the last 100 in memory: a full answer means some fell off.
BUFFER_SIZE = 100
# The old watcher's keys, in the order it logged them: what is stored for a message.
STORED_KEYS = (
    ("id", "id"),
    ("from", "from"),
    ("fromName", "fromName"),
    ("body", "body"),
    ("timestamp", "timestamp"),
    ("isGroup", "isGroup"),
    ("chatName", "chatName"),
    ("type", "type"),
    ("hasMedia", "hasMedia"),
    ("receivedAt", "receivedAt"),
)


def cannot_reach(address: str) -> str:
    """Why this service cannot deliver to `address`, or "" when it can.

    Its /send keeps the digits and appends `@c.us`: a group or a contact whose
    number WhatsApp hides (`@lid`) would get a number that does not exist."""
    domain = address.rpartition("@")[2] if "@" in address else ""
    if domain == "g.us":
        return "this gateway cannot reach a group (it can only send to phone numbers)"
    if domain == "lid":
        return "this gateway cannot reach a contact whose number is hidden (@lid)"
    if domain == "broadcast":
        return "a Status update cannot be answered"
    if not re.sub(r"\D", "", address.partition("@")[0]):
        return f"{address[:60]!r} is not a phone number"
    return ""


def client(settings: object, *, status_timeout: float, send_timeout: float) -> WwebjsGateway:
    """The client of the service at the state's `api_endpoint`."""
    # Imported here: the settings import this package before the models are ready.
    from statecore import rootstate

    return WwebjsGateway(
        rootstate.api_endpoint(), status_timeout=status_timeout, send_timeout=send_timeout
    )


class WwebjsGateway(http.Adapter):
    """One client of the service at `base_url` (the state's `api_endpoint`)."""

    kind = KIND
    traits = TRAITS

    def __init__(
        self,
        base_url: str,
        *,
        status_timeout: float = 5.0,
        send_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.status_timeout = status_timeout
        self.send_timeout = send_timeout
        self._http = http.Client(transport=transport)

    @property
    def address(self) -> str:
        return self.base_url

    cannot_reach = staticmethod(cannot_reach)

    # --- the session ------------------------------------------------------------

    def status(self) -> Status:
        """The session now. Raises GatewayUnavailable when nothing answered."""
        url = f"{self.base_url}/status"
        response = self._http.request("GET", url, timeout=self.status_timeout)
        data = http.json_of(response)
        if response.status_code != 200 or not isinstance(data, dict):
            return Status(
                State.UNKNOWN,
                f"the gateway answered /status with an error: HTTP {response.status_code} "
                f"{_error_of(response) or http.snippet(response)}",
                code=f"HTTP {response.status_code}",
            )
        ready, qr = data.get("isReady"), data.get("qrCode")
        if not isinstance(ready, bool):
            return Status(
                State.UNKNOWN,
                f"the gateway's /status answer has no true/false isReady: {http.snippet(response)}",
                code="no isReady",
            )
        if ready:
            return Status(State.READY, "WhatsApp is logged in and connected", code="isReady")
        if isinstance(qr, str) and qr:
            return Status(
                State.NEEDS_QR,
                "WhatsApp is logged out: scan the QR code to link it again",
                code="hasQR",
                qr=qr,
                logged_out=True,
            )
        # GATEWAY.md: not ready without a QR does not mean a scan is needed.
        return Status(
            State.DISCONNECTED,
            "the gateway reports WhatsApp is not ready (isReady false)",
            code="isReady=false",
        )

    def account(self) -> Account | None:
        """The logged-in account, or None while the service is not ready."""
        url = f"{self.base_url}/info"
        response = self._http.request("GET", url, timeout=self.status_timeout)
        data = http.json_of(response)
        if response.status_code == 400 and _error_of(response) == NOT_READY_ERROR:
            return None
        if response.status_code != 200 or not isinstance(data, dict):
            raise GatewayUnavailable(
                f"the gateway answered /info with HTTP {response.status_code}: {http.snippet(response)}"
            )
        return Account(
            number=_str_or_none(data.get("number")),
            name=_str_or_none(data.get("name")),
            platform=_str_or_none(data.get("platform")),
        )

    # --- sending ----------------------------------------------------------------

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome:
        """Send one text; never raises. `reply_id` is ours (this service cannot carry it)."""
        unreachable = cannot_reach(address)
        if unreachable:
            return SendOutcome.not_sent(Next.FINAL, unreachable)
        url = f"{self.base_url}/send"
        body = {"number": address.partition("@")[0], "message": text}
        return self._http.send(url, body, timeout=self.send_timeout, outcome=_send_outcome)

    # --- customers' messages ------------------------------------------------------

    def pull_messages(self) -> list[InboundMessage]:
        """The unprocessed messages in the service's buffer, oldest first."""
        url = f"{self.base_url}/messages"
        response = self._http.request(
            "GET", url, timeout=self.status_timeout, params={"unprocessed": "true"}
        )
        data = http.json_of(response)
        items = data.get("messages") if isinstance(data, dict) else None
        if response.status_code != 200 or not isinstance(items, list):
            raise GatewayUnavailable(
                f"the gateway answered /messages with HTTP {response.status_code}: {http.snippet(response)}"
            )
        messages = []
        for index, item in enumerate(items):
            inbound = _inbound(item)
            if inbound is None:
                log.warning(
                    "gateway /messages item %d has no string id, skipped: %.200r", index, item
                )
                continue
            messages.append(inbound)
        return messages

    def mark_processed(self, message_id: str) -> None:
        """Tell the service the message is stored. One it no longer holds is fine."""
        url = f"{self.base_url}/messages/{quote(message_id, safe='')}/processed"
        response = self._http.request("POST", url, timeout=self.status_timeout)
        data = http.json_of(response)
        # 200 {"success": true, ...}, or its own 404 {"error": "Message not found"};
        # a garbled 200 or Express's "Cannot POST" page is not the service marking it.
        marked = (
            response.status_code == 200 and isinstance(data, dict) and data.get("success") is True
        )
        if not (marked or (response.status_code == 404 and isinstance(data, dict))):
            raise GatewayUnavailable(
                f"the gateway answered {url} with HTTP {response.status_code}: {http.snippet(response)}"
            )

    @staticmethod
    def buffer_overflowed(count: int) -> bool:
        """True when one answer holds as many as the buffer keeps: older ones were dropped."""
        return count >= BUFFER_SIZE

    # --- what this service does not have ------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        raise NotImplementedError("the scripts' service cannot list a chat's messages")

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        raise NotImplementedError("the scripts' service cannot list a chat's messages")

    def request_pairing_code(self, number: str) -> str:
        raise NotImplementedError("the scripts' service shows a QR only")

    def restart(self) -> None:
        raise NotImplementedError("the scripts' service cannot be restarted over HTTP")

    def logout(self) -> None:
        raise NotImplementedError("the scripts' service cannot log out over HTTP")

    def webhook_config(self) -> dict:
        raise NotImplementedError("the scripts' service posts no webhooks")

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict:
        raise NotImplementedError("the scripts' service posts no webhooks")

    def apply_webhook(self, plan: dict) -> None:
        raise NotImplementedError("the scripts' service posts no webhooks")


def _send_outcome(response: httpx.Response) -> SendOutcome:
    code = response.status_code
    data = http.json_of(response)
    error = _error_of(response)
    if code == 200 and isinstance(data, dict) and data.get("success") is True:
        message_id = data.get("messageId")
        return SendOutcome.sent(message_id if isinstance(message_id, str) else "")
    if code == 400 and error == NOT_READY_ERROR:
        return SendOutcome.not_sent(Next.HOLD, f"the gateway says: {error}")
    if code == 400 and error.startswith(MISSING_FIELDS_PREFIX):
        return SendOutcome.not_sent(Next.FINAL, f"the gateway refused it: {error}")
    if code == 404 and not isinstance(data, dict):
        # Express's own "Cannot POST": no such route, so api_endpoint is wrong.
        return SendOutcome.not_sent(
            Next.CONFIG,
            f"the gateway has no /send at this address (HTTP 404: {http.snippet(response)})",
        )
    # "Failed to send message: ..." (sendMessage threw), a 5xx, anything else: it may have gone.
    return SendOutcome.maybe_sent(
        f"the gateway answered HTTP {code}: {error or http.snippet(response)}"
    )


def _inbound(item: object) -> InboundMessage | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    sender = item.get("from") if isinstance(item.get("from"), str) else ""
    stored = {ours: item[theirs] for ours, theirs in STORED_KEYS if theirs in item}
    body = item.get("body")
    return InboundMessage(
        id=item["id"],
        chat=sender,
        sender_name=item["fromName"] if isinstance(item.get("fromName"), str) else "",
        text=body if isinstance(body, str) else "",
        is_group=item.get("isGroup") is True or sender.endswith("@g.us"),
        media_kind=(item.get("type") or "") if item.get("hasMedia") is True else "",
        received_at=_received_at(item.get("receivedAt")),
        stored=stored,
    )


def _received_at(value: object) -> datetime | None:
    """Its `receivedAt`: ISO 8601 in UTC (`...Z`)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _error_of(response: httpx.Response) -> str:
    data = http.json_of(response)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return ""


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
