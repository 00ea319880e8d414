"""The official WhatsApp Business Cloud API (Meta), GATEWAY.md section 4.

No QR and no session: an access token (`GATEWAY_API_KEY`, sent as
`Authorization: Bearer`) and a phone number id. Its calls under the Graph
base URL (`GATEWAY_URL`, `https://graph.facebook.com/<version>`):
`GET /<PHONE_NUMBER_ID>?fields=...` (the health check and the account) and
`POST /<PHONE_NUMBER_ID>/messages` (a send). Everything else comes as signed
webhooks: customers' messages, the statuses of our sends (`sent`, `delivered`,
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

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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
    State,
    Status,
    Traits,
    WebhookItem,
    WebhookRefused,
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
SIGNATURE_HEADER = "X-Hub-Signature-256"
OBJECT = "whatsapp_business_account"

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
# Message types that are not a customer writing to be answered.
_NOT_ANSWERED_TYPES = {
    "reaction": "a reaction",
    "system": "a system notice (the customer changed number)",
    "request_welcome": "the customer opened the chat (no message yet)",
    "ephemeral": "a disappearing-messages notice",
}
_MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Keys that hold a secret wherever they appear in a body (Evolution's `apikey` included).
_SECRET_KEYS = frozenset(
    {"apikey", "access_token", "app_secret", "verify_token", "hub.verify_token"}
)


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


class CloudGateway:
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
        self._http = httpx.Client(
            transport=transport,
            # httpx shows an Authorization header as [secure] in its reprs. Without a
            # token none is sent, and Meta answers 104 (a setting to fix).
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            # A fresh connection per call: a kept-alive socket closed under us
            # would turn a send into "maybe sent" for nothing.
            limits=httpx.Limits(max_keepalive_connections=0),
            # A proxy from the environment would turn "connection refused"
            # (certainly not sent) into a 502 (maybe sent).
            trust_env=False,
            follow_redirects=False,
        )

    @property
    def address(self) -> str:
        return f"{self.base_url}/{self.phone_number_id}"

    def __enter__(self) -> CloudGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
            f"{_error_words(error) if error else _snippet(response)}",
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
            f"{_snippet(response)}"
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
        try:
            response = self._http.post(url, json=body, timeout=self.send_timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the request cannot have gone out.
            return SendOutcome.not_sent(
                Next.RETRY, f"the Cloud API is unreachable ({_describe(exc)})"
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            return SendOutcome.not_sent(
                Next.CONFIG, f"the Cloud API address {url!r} is not usable ({_describe(exc)})"
            )
        except httpx.TimeoutException as exc:
            return SendOutcome.maybe_sent(
                f"the Cloud API did not answer within {self.send_timeout:g} s ({_describe(exc)})"
            )
        except httpx.TransportError as exc:
            return SendOutcome.maybe_sent(
                f"the Cloud API broke off without an answer ({_describe(exc)})"
            )
        return _send_outcome(response)

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
            f"{_error_words(error) if error else _snippet(response)}"
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
        try:
            response = self._http.get(
                self.address, params={"fields": fields}, timeout=self.status_timeout
            )
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"the Cloud API at {self.address} did not answer ({_describe(exc)})"
            ) from exc
        except ValueError as exc:  # a malformed URL
            raise GatewayUnavailable(
                f"the Cloud API address {self.address!r} is not usable ({exc})"
            ) from exc
        return response, _json(response)


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
            f"the Cloud API is limiting calls, the number was not checked: {_error_words(error)}",
            code=str(code),
        )
    elif code in _CODE_WORDS:
        reason = _error_words(error)
    else:
        reason = f"the Cloud API refuses: {_error_words(error)}"
    return Status(State.FAILED, reason, code=str(code) if code is not None else "")


def _text_refusal(text: str) -> str:
    if not text.strip():
        return "an empty text cannot be sent"
    if len(text) > MAX_TEXT_LENGTH:
        return f"the text has {len(text):,} characters: {TOO_LONG_TEXT}"
    return ""


def _send_outcome(response: httpx.Response) -> SendOutcome:
    code = response.status_code
    data = _json(response)
    if 200 <= code < 300:
        message_id = _sent_id(data)
        if message_id:
            return SendOutcome.sent(message_id)
        return SendOutcome.maybe_sent(
            f"the Cloud API answered HTTP {code} without a message id: {_snippet(response)}"
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
            f"no Cloud API answers at this address (HTTP {code}: {_snippet(response)})",
        )
    if code == 429:
        return SendOutcome.not_sent(
            Next.RETRY, f"rate limited before the Cloud API (HTTP 429: {_snippet(response)})"
        )
    # A 5xx, or an answer that is no Graph answer: it may have gone.
    words = _error_words(error) if error else _snippet(response)
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
    return f"the Cloud API refused it: {_error_words(error)}"


def _error_words(error: dict[str, Any]) -> str:
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
    given = _header(headers, SIGNATURE_HEADER)
    if given is None:
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: missing; Meta signs every webhook")
    scheme, _, signature = given.strip().partition("=")
    if scheme.lower() != "sha256" or not signature:
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: expected 'sha256=<hex>'")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.lower().encode("ascii", "replace"), expected.encode()):
        raise WebhookRefused(401, f"{SIGNATURE_HEADER}: does not match the body")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


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
    payload = _without_secrets(
        {"metadata": metadata, "contacts": [contact] if contact else [], "messages": [m]}
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
    stored.update(type=shown_type, hasMedia=has_media, receivedAt=_iso_z(at))
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
    key, payload = f"{wamid}:{state}", _without_secrets({"metadata": metadata, "statuses": [s]})
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
    payload = _without_secrets({"metadata": metadata, "message_echoes": [e]})
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
    payload = _without_secrets(value)
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
        digits = _digits(phone)
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
    return _error_words(flattened)


def _ignored(key: str, event: str, note: str, payload: dict) -> WebhookItem:
    return WebhookItem(
        EventKind.IGNORED, key, event[:60], payload=_without_secrets(payload), note=note
    )


def _digest(prefix: str, what: object) -> str:
    """A dedupe key for what has no id of its own: the same delivery, the same key."""
    text = json.dumps(what, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{prefix[:60]}:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:40]}"


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_secrets(v) for k, v in value.items() if str(k).lower() not in _SECRET_KEYS
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


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


# --- small helpers ------------------------------------------------------------------------


def _iso_z(at: datetime) -> str:
    """The watcher's `receivedAt`: ISO 8601 in UTC with milliseconds and a Z."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


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
