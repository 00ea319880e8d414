"""The sentences a person reads from the adapters, whole, and how WAHA and Evolution read
a chat listing: promises no adapter test pinned.

- A call or a send that got no answer names the gateway the way its adapter does
  ("the gateway", "Evolution", "the Cloud API") and the setting that says where it is.
- An answer with an empty body is said to be one: "(empty body)".
- WAHA's refusal of a stale delivery, and the package's refusal of every webhook while
  GATEWAY_WEBHOOK_SECRET is unset, for each kind that posts webhooks.
- A chat listing (read-back, backfill) skips one garbled message and keeps the rest;
  WAHA's read-back keeps our messages only, and names a hidden contact's chat by the
  number GOWS gives (`RecipientAlt`); Evolution's answer from the phone stores nothing.

The gateways are the real stand-ins on 127.0.0.1, or `Canned`, a loopback server that
answers one fixed body (a listing a real gateway may give but the stand-ins do not).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from statecore import whatsapp
from statecore.whatsapp import evolution_events, standin_evolution, waha_events
from statecore.whatsapp.cloud import CloudGateway
from statecore.whatsapp.evolution import EvolutionGateway
from statecore.whatsapp.model import EventKind, Next, Sent, WebhookRefused
from statecore.whatsapp.standin_evolution import message_data
from statecore.whatsapp.standin_waha import message_payload
from statecore.whatsapp.waha import WahaGateway

NUMBER = "923001234567"
ADDRESS = f"{NUMBER}@c.us"
LID = "24816190603455@lid"
TEXT = "Your order is ready"
KEY = "test-api-key"
PHONE_NUMBER_ID = "106540352242922"
# Short, so a "hang" costs half a second (the stand-ins hang for a minute, released at stop).
TIMEOUT = 0.5
# Not a port: httpx refuses the address itself (InvalidURL) before any connection.
UNUSABLE = "http://127.0.0.1:8x"
SINCE = datetime(2024, 5, 1, tzinfo=UTC)
T0 = int(SINCE.timestamp()) + 60


# --- a loopback server with one fixed answer ----------------------------------------------


class Canned:
    """Answers every request with `status` and `body` (bytes), as a gateway on 127.0.0.1."""

    def __init__(self, status: int, body: bytes) -> None:
        answer = (status, body)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, content = answer
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def canned() -> Iterator[Callable[[int, object], Canned]]:
    """`canned(status, body)`: a started Canned (a body that is not bytes is sent as JSON)."""
    servers: list[Canned] = []

    def start(status: int, body: object) -> Canned:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        servers.append(Canned(status, raw))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# --- the gateway's name in "did not answer", "not usable", "unreachable" ------------------

# kind: how to build its adapter at a base URL, the paths of its status call and its
# send, and the two names its sentences use.
KINDS = {
    "waha": (
        lambda url: WahaGateway(url, api_key=KEY, status_timeout=TIMEOUT, send_timeout=TIMEOUT),
        "/api/sessions/default",
        "/api/sendText",
        "the gateway",
        "the gateway address",
    ),
    "evolution": (
        lambda url: EvolutionGateway(
            url, api_key=KEY, status_timeout=TIMEOUT, send_timeout=TIMEOUT
        ),
        "/instance/connectionState/default",
        "/message/sendText/default",
        "Evolution",
        "the gateway address",
    ),
    "cloud": (
        lambda url: CloudGateway(
            url,
            api_key=KEY,
            phone_number_id=PHONE_NUMBER_ID,
            status_timeout=TIMEOUT,
            send_timeout=TIMEOUT,
        ),
        f"/{PHONE_NUMBER_ID}",
        f"/{PHONE_NUMBER_ID}/messages",
        "the Cloud API",
        "the Cloud API address",
    ),
}
STANDINS = {"waha": "fake_waha", "evolution": "fake_evolution", "cloud": "fake_cloud"}


def _standin_adapter(request: pytest.FixtureRequest, kind: str):
    standin = request.getfixturevalue(STANDINS[kind])
    return standin, KINDS[kind][0](standin.url)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_status_call_to_an_unusable_address_names_the_setting(kind: str) -> None:
    make, status_path, _, _, address = KINDS[kind]

    with make(UNUSABLE) as gateway, pytest.raises(whatsapp.GatewayUnavailable) as caught:
        gateway.status()

    assert str(caught.value) == (
        f"{address} '{UNUSABLE}{status_path}' is not usable (Invalid port: '8x')"
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_send_to_an_unusable_address_names_the_setting(kind: str) -> None:
    make, _, send_path, _, address = KINDS[kind]

    with make(UNUSABLE) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert outcome.error == (
        f"{address} '{UNUSABLE}{send_path}' is not usable (InvalidURL: Invalid port: '8x')"
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_status_call_nothing_answers_names_the_gateway(
    request: pytest.FixtureRequest, kind: str
) -> None:
    _, status_path, _, name, _ = KINDS[kind]
    standin, gateway = _standin_adapter(request, kind)
    standin.set_send_mode("down")  # server-wide: the port refuses every connection

    with gateway, pytest.raises(whatsapp.GatewayUnavailable) as caught:
        gateway.status()

    said = re.escape(f"{name} at {standin.url}{status_path} did not answer (ConnectError: ")
    assert re.fullmatch(said + r"[^()]+\)", str(caught.value)), str(caught.value)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_send_to_a_refusing_port_says_the_gateway_is_unreachable(
    request: pytest.FixtureRequest, kind: str
) -> None:
    name = KINDS[kind][3]
    standin, gateway = _standin_adapter(request, kind)
    standin.set_send_mode("down")

    with gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.RETRY)
    said = re.escape(f"{name} is unreachable (ConnectError: ")
    assert re.fullmatch(said + r"[^()]+\)", outcome.error), outcome.error


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_send_that_hangs_says_the_gateway_did_not_answer_in_time(
    request: pytest.FixtureRequest, kind: str
) -> None:
    name = KINDS[kind][3]
    standin, gateway = _standin_adapter(request, kind)
    standin.set_send_mode("hang")

    with gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert outcome.kind == Sent.MAYBE_SENT
    assert outcome.error == f"{name} did not answer within 0.5 s (ReadTimeout: timed out)"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_send_cut_off_says_the_gateway_broke_off(
    request: pytest.FixtureRequest, kind: str
) -> None:
    name = KINDS[kind][3]
    standin, gateway = _standin_adapter(request, kind)
    standin.set_send_mode("drop")

    with gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert outcome.kind == Sent.MAYBE_SENT
    assert outcome.error == (
        f"{name} broke off without an answer "
        "(RemoteProtocolError: Server disconnected without sending a response.)"
    )


# --- "(empty body)" ----------------------------------------------------------------------


def test_a_cloud_send_answered_with_an_empty_body_says_so(canned) -> None:
    server = canned(200, b"")

    with KINDS["cloud"][0](server.url) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert outcome.kind == Sent.MAYBE_SENT
    assert outcome.error == "the Cloud API answered HTTP 200 without a message id: (empty body)"


def test_a_waha_send_answered_500_with_blank_lines_says_the_body_was_empty(canned) -> None:
    server = canned(500, b"\r\n  \n")

    with KINDS["waha"][0](server.url) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert outcome.kind == Sent.MAYBE_SENT
    assert outcome.error == "the gateway answered HTTP 500: (empty body)"


# --- WAHA: a stale delivery, in words -------------------------------------------------------


def _waha_signed(timestamp_ms: float) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"id": "evt_01HY", "timestamp": timestamp_ms, "event": "message"}).encode()
    signature = hmac.new(KEY.encode(), body, hashlib.sha512).hexdigest()
    return {"X-Webhook-Hmac": signature, "X-Webhook-Hmac-Algorithm": "sha512"}, body


def test_waha_refuses_a_delivery_older_than_the_dedupe_window_saying_when_it_was_made() -> None:
    headers, body = _waha_signed(1_714_564_800_000)  # 2024-05-01 12:00 UTC

    with pytest.raises(WebhookRefused) as caught:
        waha_events.verify_webhook(
            headers, body, secret=KEY, now=datetime(2024, 5, 9, 12, 0, tzinfo=UTC)
        )

    assert caught.value.status == 401
    assert str(caught.value) == (
        "timestamp: this delivery was made at 2024-05-01T12:00:00.000Z, more than 7 days "
        "ago: refused, as its dedupe key may be forgotten"
    )


def test_waha_accepts_a_delivery_just_inside_the_dedupe_window() -> None:
    headers, body = _waha_signed(1_714_564_800_000)

    waha_events.verify_webhook(
        headers, body, secret=KEY, now=datetime(2024, 5, 8, 11, 59, tzinfo=UTC)
    )  # no WebhookRefused


def test_waha_says_a_timestamp_no_calendar_holds_as_a_number() -> None:
    headers, body = _waha_signed(-123_456_789_012_345_678)  # year -3,900,000

    with pytest.raises(WebhookRefused) as caught:
        waha_events.verify_webhook(headers, body, secret=KEY, now=SINCE)

    assert str(caught.value) == (
        "timestamp: this delivery was made at -1.23457e+14 s after 1970, more than 7 days "
        "ago: refused, as its dedupe key may be forgotten"
    )


# --- no webhook is trusted while GATEWAY_WEBHOOK_SECRET is unset ----------------------------


def _signed_with_no_key(kind: str, body: bytes) -> dict[str, str]:
    """What anyone could send when the secret is "": signed with the empty key."""
    if kind == "waha":
        return {"X-Webhook-Hmac": hmac.new(b"", body, hashlib.sha512).hexdigest()}
    if kind == "cloud":
        return {"X-Hub-Signature-256": "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()}
    return {"Authorization": f"Bearer {standin_evolution.jwt_token('x')}"}


@pytest.mark.parametrize("kind", ["waha", "evolution", "cloud"])
def test_an_unset_webhook_secret_refuses_every_webhook_naming_the_setting(
    settings, kind: str
) -> None:
    settings.GATEWAY_KIND = kind
    settings.GATEWAY_WEBHOOK_SECRET = ""
    body = json.dumps({"id": "evt_1", "timestamp": 1_714_564_800_000}).encode()

    with pytest.raises(WebhookRefused) as caught:
        whatsapp.verify_webhook(
            _signed_with_no_key(kind, body), body, now=datetime(2024, 5, 2, tzinfo=UTC)
        )

    assert (caught.value.status, str(caught.value)) == (
        401,
        "GATEWAY_WEBHOOK_SECRET is not set: no webhook is trusted",
    )


# --- WAHA's chat listings -------------------------------------------------------------------


def _waha_listed(**fields) -> dict:
    payload = message_payload(fields.pop("text", "Hello"), **fields)
    payload.pop("source", None)  # WAHA lists messages without `source`
    return payload


def test_waha_backfill_skips_a_garbled_message_and_keeps_the_others(canned, caplog) -> None:
    first = _waha_listed(text="first", chat=ADDRESS, short_id="3A01", timestamp=T0)
    garbled = _waha_listed(text="garbled", chat=ADDRESS, short_id="3A02", timestamp=T0 + 1)
    del garbled["from"]
    last = _waha_listed(text="last", chat=ADDRESS, short_id="3A03", timestamp=T0 + 2)
    server = canned(200, [last, garbled, first])  # WAHA lists newest first

    with KINDS["waha"][0](server.url) as gateway:
        found = gateway.recent_messages(ADDRESS, SINCE)

    assert [(m.id, m.text) for m in found] == [("3A01", "first"), ("3A03", "last")]
    assert "a message skipped: message.from: missing" in caplog.text


def test_waha_read_back_skips_a_garbled_message_and_keeps_the_others(canned) -> None:
    ours = _waha_listed(text=TEXT, chat=ADDRESS, from_me=True, short_id="3EB0A1", timestamp=T0)
    garbled = _waha_listed(text=TEXT, chat=ADDRESS, from_me=True, short_id="3EB0A2")
    garbled["fromMe"] = "true"
    server = canned(200, [garbled, ours])

    with KINDS["waha"][0](server.url) as gateway:
        echoes = gateway.read_back(ADDRESS, SINCE)

    assert [(e.gateway_id, e.chat, e.text) for e in echoes] == [("3EB0A1", ADDRESS, TEXT)]


def test_waha_read_back_does_not_take_a_customers_message_for_an_echo(canned) -> None:
    # An engine that ignores `filter.fromMe` lists the customer's messages too.
    theirs = _waha_listed(text=TEXT, chat=ADDRESS, short_id="3A09", timestamp=T0)
    ours = _waha_listed(text=TEXT, chat=ADDRESS, from_me=True, short_id="3EB0B1", timestamp=T0)
    server = canned(200, [theirs, ours])

    with KINDS["waha"][0](server.url) as gateway:
        echoes = gateway.read_back(ADDRESS, SINCE)
        backfilled = gateway.recent_messages(ADDRESS, SINCE)

    assert [e.gateway_id for e in echoes] == ["3EB0B1"]
    assert [m.id for m in backfilled] == ["3A09"]


def test_waha_gows_read_back_names_a_hidden_contacts_chat_by_the_number_it_gives(
    canned,
) -> None:
    ours = _waha_listed(
        text=TEXT,
        chat=LID,
        engine="GOWS",
        from_me=True,
        phone=NUMBER,
        short_id="3EB0C1",
        timestamp=T0,
    )
    server = canned(200, [ours])

    with KINDS["waha"][0](server.url) as gateway:
        echoes = gateway.read_back(LID, SINCE)

    # The reply was sent to the number: its echo must name the same chat to match it.
    assert [(e.gateway_id, e.chat) for e in echoes] == [("3EB0C1", ADDRESS)]


# --- Evolution's chat listings and the answer from the phone --------------------------------


def _records(*records: object) -> dict:
    return {"messages": {"total": len(records), "pages": 1, "currentPage": 1, "records": records}}


def test_evolution_backfill_skips_a_garbled_record_and_keeps_the_others(canned, caplog) -> None:
    first = message_data("first", sender=NUMBER, id="3A0E01", timestamp=T0)
    garbled = message_data("garbled", sender=NUMBER, id="3A0E02", timestamp=T0 + 1)
    del garbled["key"]["remoteJid"]
    last = message_data("last", sender=NUMBER, id="3A0E03", timestamp=T0 + 2)
    server = canned(200, _records(last, garbled, first))

    with KINDS["evolution"][0](server.url) as gateway:
        found = gateway.recent_messages(ADDRESS, SINCE)

    assert [(m.id, m.text) for m in found] == [("3A0E01", "first"), ("3A0E03", "last")]
    assert "messages.records[1] (page 1).key.remoteJid: missing" in caplog.text


def test_evolution_read_back_skips_a_garbled_record_and_keeps_the_others(canned) -> None:
    ours = message_data(TEXT, sender=NUMBER, id="3EB0E1", timestamp=T0, from_me=True)
    garbled = message_data(TEXT, sender=NUMBER, id="3EB0E2", timestamp=T0, from_me=True)
    garbled["messageTimestamp"] = "yesterday"
    server = canned(200, _records(garbled, ours))

    with KINDS["evolution"][0](server.url) as gateway:
        echoes = gateway.read_back(ADDRESS, SINCE)

    assert [(e.gateway_id, e.chat, e.text) for e in echoes] == [("3EB0E1", ADDRESS, TEXT)]


def test_evolution_answer_from_the_phone_stores_nothing_as_a_customers_message() -> None:
    settings = SimpleNamespace(GATEWAY_SESSION="default")
    body = standin_evolution.message_event("On my way", sender=NUMBER, from_me=True)
    customer = standin_evolution.message_event("Where is it?", sender=NUMBER)

    [answer] = evolution_events.parse_webhook(body, settings=settings)
    [theirs] = evolution_events.parse_webhook(customer, settings=settings)

    assert answer.kind == EventKind.FROM_PHONE
    assert (answer.message.text, answer.message.from_me, answer.message.stored) == (
        "On my way",
        True,
        {},
    )
    # The customer's own message does carry the record to store: the contrast is the point.
    assert theirs.kind == EventKind.MESSAGE and theirs.message.stored["body"] == "Where is it?"
