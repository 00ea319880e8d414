"""The official WhatsApp Business Cloud API (Meta), GATEWAY.md section 4.

No QR and no session: an access token (`GATEWAY_API_KEY`, sent as
`Authorization: Bearer`) and a phone number id. Its calls under the Graph
base URL (`GATEWAY_URL`, `https://graph.facebook.com/<version>`):
`GET /<PHONE_NUMBER_ID>?fields=...` (the health check and the account) and
`POST /<PHONE_NUMBER_ID>/messages` (a send). Everything else comes as signed
webhooks (read in `cloud_events.py`): customers' messages, the statuses of our sends (`sent`, `delivered`,
`read`, `failed`), the business answering from the WhatsApp Business app
(`smb_message_echoes`) and `account_update`.

A send is `not_sent` only on a Graph error answered with a 4xx (Meta refused
it before sending) or when no connection was made; what it means next comes
from the Graph error's `code`. A 5xx, a timeout or a broken answer may have
reached WhatsApp: `maybe_sent`. A free-form reply may go only within 24 hours
of the customer's last message: past it Meta refuses with 131047, either at
once or later in a `failed` status.

The message id is the `wamid....` string everywhere (a send's answer, an echo,
a delivery failure), so they can be matched.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import httpx

from . import config, http
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

KIND = "cloud"
MAX_TEXT_LENGTH = 4096
TRAITS = Traits(
    has_webhooks=True,
    reply_window=timedelta(hours=24),
    max_text_length=MAX_TEXT_LENGTH,
    # Meta's app settings take the callback URL; nothing here can set it.
    webhook_setup="manual",
)
# `biz_opaque_callback_data` longer than this is refused by the API.
MAX_CALLBACK_DATA = 512
WINDOW_CLOSED_CODE = 131047
WINDOW_CLOSED_TEXT = (
    "the 24-hour window closed: the customer must write again, or send an approved template"
)
TOO_LONG_TEXT = "longer than the 4,096 characters the Cloud API takes"
TOKEN_EXPIRED_TEXT = "the access token expired: make a new one in Meta's app settings"
HEALTH_FIELDS = "display_phone_number,verified_name,quality_rating"

# What a Graph error's `code` means for a refused send (Meta's error-code reference).
# Throttling and passing faults: nothing went out, try again after a wait.
_RETRY_CODES = frozenset({1, 2, 4, 17, 341, 80007, 130429, 131000, 131016, 131048, 131056})
# Our token, its permissions, the account or the address: no reply can go until fixed.
_CONFIG_CODES = frozenset(
    {0, 3, 10, 102, 104, 190, 368, 2500, 131005, 131031, 131042, 131045, 133010}
    | set(range(200, 300))
)
# The business account is in maintenance (a throughput upgrade): send it when it is back.
_HOLD_CODES = frozenset({131057})
_CODE_WORDS = {
    0: "the access token was not accepted: make a new one in Meta's app settings",
    10: "the access token lacks the whatsapp_business_messaging permission",
    104: "no access token was sent: set GATEWAY_API_KEY",
    190: TOKEN_EXPIRED_TEXT,
    368: "WhatsApp has blocked this business account for a policy violation",
    131026: "WhatsApp cannot deliver to this number (not on WhatsApp, or it cannot receive it)",
    131031: "WhatsApp has locked this business account",
    131042: "the business account has a payment problem: see Meta's billing settings",
    131048: "WhatsApp is limiting this number: too many of its messages were flagged as spam",
    131056: "too many messages to this customer in a short time",
    131057: "the business account is in maintenance mode",
    130429: "the Cloud API's message throughput was reached",
    80007: "the business account reached its rate limit",
    133010: "the phone number is not registered with the Cloud API",
    WINDOW_CLOSED_CODE: WINDOW_CLOSED_TEXT,
}
# Its sentences name it, and the setting that says where it is.
NAMES = http.Names(gateway="the Cloud API", address="the Cloud API address")


# --- addresses (no network) -------------------------------------------------------------


def cannot_reach(address: str) -> str:
    """Why the Cloud API cannot deliver to `address`, or "" when it can.

    It sends to phone numbers only: not to a group, a contact whose number
    WhatsApp hides (`@lid`), or a Status update (`status@broadcast`)."""
    local, _, domain = address.partition("@")
    if address == "status@broadcast" or domain == "broadcast":
        return "a Status update cannot be answered"
    if domain == "g.us":
        return "the Cloud API cannot reach a group (it can only send to phone numbers)"
    if domain == "lid":
        return "the Cloud API cannot reach a contact whose number is hidden (@lid)"
    digits = re.sub(r"\D", "", local)
    if domain not in ("", "c.us", "s.whatsapp.net") or not (
        re.fullmatch(r"\+?[\d\s().-]+", local) and 5 <= len(digits) <= 15
    ):
        return f"{address[:60]!r} is not a phone number"
    return ""


def webhook_instructions(url: str) -> str:
    """What to paste into Meta's app settings so its webhooks reach `url`."""
    return (
        "In Meta's app dashboard open WhatsApp > Configuration > Webhook > Edit. "
        f"Callback URL: {url} . Verify token: the value of the setting GATEWAY_VERIFY_TOKEN. "
        "Press 'Verify and save', then under 'Webhook fields' subscribe to 'messages' "
        "(and to 'smb_message_echoes' when the business also answers from the WhatsApp "
        "Business app, and 'account_update' to hear of bans). Meta signs every webhook with "
        "the app secret (App settings > Basic): set it as GATEWAY_WEBHOOK_SECRET."
    )


# --- the client -------------------------------------------------------------------------


def client(settings: Any, *, status_timeout: float, send_timeout: float) -> CloudGateway:
    """The client of the Cloud API at `GATEWAY_URL` for `GATEWAY_PHONE_NUMBER_ID`."""
    return CloudGateway(
        settings.GATEWAY_URL,
        api_key=settings.GATEWAY_API_KEY,
        phone_number_id=settings.GATEWAY_PHONE_NUMBER_ID,
        status_timeout=status_timeout,
        send_timeout=send_timeout,
    )


class CloudGateway(http.Adapter):
    """One client of the Cloud API for one business phone number."""

    kind = KIND
    traits = TRAITS

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        phone_number_id: str,
        status_timeout: float = 5.0,
        send_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.phone_number_id = phone_number_id
        self.status_timeout = status_timeout
        self.send_timeout = send_timeout
        self._http = http.Client(
            names=NAMES,
            # Without a token none is sent, and Meta answers 104 (a setting to fix).
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            transport=transport,
        )

    @property
    def address(self) -> str:
        return config.shown_address(KIND, self.base_url, phone_number_id=self.phone_number_id)

    cannot_reach = staticmethod(cannot_reach)

    # --- the phone number: health and account ----------------------------------------

    def status(self) -> Status:
        """The phone number as the Cloud API sees it now; GatewayUnavailable on no answer."""
        response, data = self._phone_number(HEALTH_FIELDS)
        if _is_phone_number(response, data):
            number = _digits(data["display_phone_number"])
            name = data.get("verified_name")
            name = name if isinstance(name, str) and name else "(no verified name)"
            quality = (
                data.get("quality_rating") if isinstance(data.get("quality_rating"), str) else ""
            )
            reason = f"the Cloud API answers for {name} (+{number})"
            if quality:
                reason += f", quality {quality}"
            return Status(State.READY, reason, code=quality or "ok")
        error = _graph_error(data)
        if error is not None and 400 <= response.status_code < 500:
            return _status_of_refusal(error, self.phone_number_id)
        return Status(
            State.UNKNOWN,
            f"the Cloud API answered with an error: HTTP {response.status_code} "
            f"{error_words(error) if error else http.snippet(response)}",
            code=str(error["code"])
            if error and error["code"] is not None
            else f"HTTP {response.status_code}",
        )

    def account(self) -> Account | None:
        """The business number and its verified name; None when the API refuses (a token,
        a permission); GatewayUnavailable when nothing usable answered."""
        response, data = self._phone_number(HEALTH_FIELDS)
        if _is_phone_number(response, data):
            name = data.get("verified_name")
            return Account(
                number=_digits(data["display_phone_number"]),
                name=name if isinstance(name, str) else None,
            )
        if _graph_error(data) is not None and 400 <= response.status_code < 500:
            return None
        raise GatewayUnavailable(
            f"the Cloud API answered {self.address} with HTTP {response.status_code}: "
            f"{http.snippet(response)}"
        )

    # --- sending ---------------------------------------------------------------------

    def send(self, address: str, text: str, *, reply_id: str = "") -> SendOutcome:
        """Send one text; never raises. `reply_id` travels as `biz_opaque_callback_data`
        and comes back in the statuses of this message."""
        refused = cannot_reach(address) or _text_refusal(text)
        if refused:
            return SendOutcome.not_sent(Next.FINAL, refused)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": _digits(address.partition("@")[0]),
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        if reply_id and len(reply_id) <= MAX_CALLBACK_DATA:
            body["biz_opaque_callback_data"] = reply_id
        url = f"{self.address}/messages"
        return self._http.send(url, body, timeout=self.send_timeout, outcome=_send_outcome)

    # --- webhooks: set by hand in Meta's app settings ---------------------------------

    def webhook_config(self) -> dict:
        """Where Meta sends this number's webhooks now (`application`, and the overrides
        `whatsapp_business_account` / `phone_number` when set)."""
        response, data = self._phone_number("webhook_configuration")
        if response.status_code == 200 and isinstance(data, dict):
            found = data.get("webhook_configuration", {})
            if isinstance(found, dict):
                return dict(found)
        error = _graph_error(data)
        raise GatewayUnavailable(
            f"the Cloud API did not give the webhook configuration: HTTP {response.status_code} "
            f"{error_words(error) if error else http.snippet(response)}"
        )

    def webhook_plan(self, current: dict, *, url: str, secret: str) -> dict:
        """`current` with our callback URL in: what a person sets in Meta's app settings.

        An override (WABA or phone number) would take the webhooks elsewhere, so one
        that is set points at us too; everything else is kept. `secret` is Meta's app
        secret, set on Meta's side: it never appears in the plan."""
        plan = dict(current)
        plan["application"] = url
        for override in ("whatsapp_business_account", "phone_number"):
            if plan.get(override):
                plan[override] = url
        plan["fields"] = ["messages"]
        plan["verify_token"] = "the value of GATEWAY_VERIFY_TOKEN"
        return plan

    def apply_webhook(self, plan: dict) -> None:
        raise NotImplementedError(
            "the Cloud API's callback URL is set in Meta's app settings: "
            + webhook_instructions(str(plan.get("application", "")))
        )

    # --- what the Cloud API does not have ---------------------------------------------

    def read_back(self, chat: str, since: datetime) -> list[Echo]:
        raise NotImplementedError("the Cloud API cannot list a chat's messages")

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        raise NotImplementedError("the Cloud API cannot list a chat's messages")

    def request_pairing_code(self, number: str) -> str:
        raise NotImplementedError("the Cloud API has no login to pair: it uses an access token")

    def restart(self) -> None:
        raise NotImplementedError("the Cloud API has no session to restart")

    def logout(self) -> None:
        raise NotImplementedError("the Cloud API has no session to log out")

    def pull_messages(self) -> list[InboundMessage]:
        raise NotImplementedError("the Cloud API posts customers' messages as webhooks")

    def mark_processed(self, message_id: str) -> None:
        raise NotImplementedError("the Cloud API posts customers' messages as webhooks")

    @staticmethod
    def buffer_overflowed(count: int) -> bool:
        return False  # it keeps no buffer to poll

    # --- HTTP ------------------------------------------------------------------------

    def _phone_number(self, fields: str) -> tuple[httpx.Response, object]:
        response = self._http.request(
            "GET", self.address, timeout=self.status_timeout, params={"fields": fields}
        )
        return response, http.json_of(response)


def _is_phone_number(response: httpx.Response, data: object) -> bool:
    return (
        response.status_code == 200
        and isinstance(data, dict)
        and isinstance(data.get("display_phone_number"), str)
        and bool(_digits(data["display_phone_number"]))
    )


def _status_of_refusal(error: dict[str, Any], phone_number_id: str) -> Status:
    """A Graph error answered to the health check, as the session's state."""
    code = error["code"]
    if code == 190:
        return Status(State.FAILED, TOKEN_EXPIRED_TEXT, code="190")
    if _wrong_object(error):
        reason = (
            f"the Cloud API knows no phone number id {phone_number_id} for this access token: "
            "check GATEWAY_PHONE_NUMBER_ID"
        )
    elif code in _RETRY_CODES:
        return Status(
            State.UNKNOWN,
            f"the Cloud API is limiting calls, the number was not checked: {error_words(error)}",
            code=str(code),
        )
    elif code in _CODE_WORDS:
        reason = error_words(error)
    else:
        reason = f"the Cloud API refuses: {error_words(error)}"
    return Status(State.FAILED, reason, code=str(code) if code is not None else "")


def _text_refusal(text: str) -> str:
    if not text.strip():
        return "an empty text cannot be sent"
    if len(text) > MAX_TEXT_LENGTH:
        return f"the text has {len(text):,} characters: {TOO_LONG_TEXT}"
    return ""


def _send_outcome(response: httpx.Response) -> SendOutcome:
    code = response.status_code
    data = http.json_of(response)
    if 200 <= code < 300:
        message_id = _sent_id(data)
        if message_id:
            return SendOutcome.sent(message_id)
        return SendOutcome.maybe_sent(
            f"the Cloud API answered HTTP {code} without a message id: {http.snippet(response)}"
        )
    error = _graph_error(data)
    if 400 <= code < 500 and error is not None:
        # Meta refused it before sending: what it means next is in the error's code.
        return SendOutcome.not_sent(_next_for(error, code), _refusal_words(error))
    if 300 <= code < 400:
        return SendOutcome.not_sent(
            Next.CONFIG,
            f"the Cloud API address redirects (HTTP {code} to {response.headers.get('location', '?')!r}): "
            "set GATEWAY_URL to the final address",
        )
    if code in (401, 403, 404, 405):
        # Not a Graph answer: something else is at GATEWAY_URL, or a proxy refused us.
        return SendOutcome.not_sent(
            Next.CONFIG,
            f"no Cloud API answers at this address (HTTP {code}: {http.snippet(response)})",
        )
    if code == 429:
        return SendOutcome.not_sent(
            Next.RETRY, f"rate limited before the Cloud API (HTTP 429: {http.snippet(response)})"
        )
    # A 5xx, or an answer that is no Graph answer: it may have gone.
    words = error_words(error) if error else http.snippet(response)
    return SendOutcome.maybe_sent(f"the Cloud API answered HTTP {code}: {words}")


def _next_for(error: dict[str, Any], status_code: int) -> Next:
    code = error["code"]
    if code in _CONFIG_CODES or _wrong_object(error):
        return Next.CONFIG
    if code in _RETRY_CODES:
        return Next.RETRY
    if code in _HOLD_CODES:
        return Next.HOLD
    if status_code in (401, 403):
        return Next.CONFIG  # a refusal of us, not of this reply
    return Next.FINAL


def _wrong_object(error: dict[str, Any]) -> bool:
    """Graph's "Object with ID ... does not exist": the phone number id is wrong."""
    return error["code"] == 100 and (
        error.get("error_subcode") == 33 or "does not exist" in str(error.get("message", ""))
    )


def _refusal_words(error: dict[str, Any]) -> str:
    code = error["code"]
    if code == WINDOW_CLOSED_CODE:
        return WINDOW_CLOSED_TEXT
    if _wrong_object(error):
        return "the Cloud API knows no such phone number id: check GATEWAY_PHONE_NUMBER_ID"
    return f"the Cloud API refused it: {error_words(error)}"


def error_words(error: dict[str, Any]) -> str:
    """A Graph error in words: ours for the codes we know, then Meta's own."""
    code = error["code"]
    message = str(error.get("message") or "").strip()
    details = str(error.get("details") or "").strip()
    parts = [_CODE_WORDS[code]] if code in _CODE_WORDS else []
    parts += [text for text in (message, details) if text and text not in parts]
    said = "; ".join(parts) or "no reason given"
    return f"{said} (code {code})" if code is not None else said


def _graph_error(data: object) -> dict[str, Any] | None:
    """`{"error": {"message", "type", "code", "error_data": {"details"}, ...}}`, flattened."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return {
        "code": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "message": error.get("message") if isinstance(error.get("message"), str) else "",
        "details": details if isinstance(details, str) else "",
        "error_subcode": error.get("error_subcode"),
    }


def _sent_id(data: object) -> str:
    """`{"messages": [{"id": "wamid...."}]}`: the id, or ""."""
    messages = data.get("messages") if isinstance(data, dict) else None
    first = messages[0] if isinstance(messages, list) and messages else None
    message_id = first.get("id") if isinstance(first, dict) else None
    return message_id if isinstance(message_id, str) else ""


# --- small helpers ------------------------------------------------------------------------


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)
