"""The Evolution adapter against the real stand-in over HTTP: GATEWAY.md section 3, classified.

No database, no mocks but for answers the real gateway never gives:
`EvolutionStandin` on 127.0.0.1 answers as Evolution's own code does, and the
adapter turns each answer (and each webhook body the stand-in builds) into the
common model. Each table row is one answer; the class it gets is the point.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING

import httpx
import pytest

from statecore import whatsapp
from statecore.whatsapp import evolution
from statecore.whatsapp.evolution import EvolutionGateway
from statecore.whatsapp.evolution_events import parse_webhook, verify_webhook
from statecore.whatsapp.model import (
    Account,
    EventKind,
    GatewayUnavailable,
    Next,
    SendOutcome,
    Sent,
    State,
    WebhookRefused,
)
from statecore.whatsapp.standin_evolution import (
    envelope,
    jwt_token,
    message_event,
    qr_limit_event,
    qrcode_event,
    reaction_data,
    send_message_event,
    session_event,
    sign,
    status_event,
)
from tests.fake_evolution import API_KEY, WEBHOOK_SECRET

if TYPE_CHECKING:
    from tests.fake_evolution import FakeEvolution, WebhookReceiver

NUMBER = "923001234567"
ADDRESS = f"{NUMBER}@c.us"
JID = f"{NUMBER}@s.whatsapp.net"
GROUP = "120363025246125888@g.us"
LID = "24816190603455"
TEXT = "Your order is ready"
QR = "2@AbCdEf+/=,noise==,identity==,secret=="
# Short, so a "hang" costs half a second; the stand-in hangs for a minute (released at stop).
TIMEOUT = 0.5
SETTINGS = SimpleNamespace(GATEWAY_SESSION="default")
STORED_KEYS = [
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
]


@pytest.fixture
def standin(fake_evolution: FakeEvolution) -> FakeEvolution:
    return fake_evolution


@pytest.fixture
def adapter(standin: FakeEvolution) -> Iterator[EvolutionGateway]:
    with _gateway(standin) as gateway:
        yield gateway


def _gateway(standin: FakeEvolution, **overrides: object) -> EvolutionGateway:
    options: dict = {
        "api_key": API_KEY,
        "instance": "default",
        "status_timeout": TIMEOUT,
        "send_timeout": TIMEOUT,
    }
    options.update(overrides)
    base = options.pop("base_url", standin.url)
    return EvolutionGateway(base, **options)


def _down(standin: FakeEvolution) -> None:
    standin.set_send_mode("down")  # server-wide: the port refuses every connection


def _one(body: dict, **settings: str):
    [item] = parse_webhook(body, settings=SimpleNamespace(GATEWAY_SESSION="default", **settings))
    return item


def _ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


# --- status() --------------------------------------------------------------------------


def _pairing(standin: FakeEvolution) -> None:
    standin.set_state("close")
    with _gateway(standin) as gateway:
        gateway.request_pairing_code(NUMBER)


@pytest.mark.parametrize(
    ("setup", "state", "code", "logged_out", "words"),
    [
        pytest.param(lambda s: None, State.READY, "open", False, "linked and connected", id="open"),
        # A reconnect with the stored login: `connecting`, the saved status still open.
        pytest.param(
            lambda s: s.set_state("connecting"),
            State.STARTING,
            "connecting",
            False,
            "reconnecting",
            id="reconnecting",
        ),
        pytest.param(
            lambda s: s.show_qr(QR), State.NEEDS_QR, "connecting", True, "scan the QR", id="qr"
        ),
        pytest.param(
            _pairing, State.NEEDS_PAIRING, "connecting", True, "pairing code", id="pairing"
        ),
        pytest.param(
            lambda s: s.set_state("close", reason=401),
            State.DISCONNECTED,
            "close 401",
            True,
            "logged out",
            id="close-logged-out",
        ),
        pytest.param(
            lambda s: s.set_state("close", reason=403),
            State.FAILED,
            "close 403",
            True,
            "banned",
            id="close-forbidden",
        ),
        pytest.param(
            lambda s: s.set_state("close", reason=406),
            State.DISCONNECTED,
            "close 406",
            True,
            "code 406",
            id="close-other",
        ),
        pytest.param(
            lambda s: s.set_qr_limit_reached(),
            State.DISCONNECTED,
            "close",
            True,
            "will not reconnect by itself",
            id="after-the-qr-limit",
        ),
    ],
)
def test_every_session_state_is_mapped(
    standin: FakeEvolution,
    adapter: EvolutionGateway,
    setup: Callable[[FakeEvolution], object],
    state: State,
    code: str,
    logged_out: bool,
    words: str,
) -> None:
    setup(standin)

    status = adapter.status()

    assert (status.state, status.code, status.logged_out) == (state, code, logged_out)
    assert words in status.reason
    assert status.ready is (state == State.READY)
    assert status.needs_login is logged_out


def test_the_qr_is_the_exact_string_and_follows_a_new_one(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.show_qr(QR)
    assert (adapter.status().qr, adapter.status().pairing_code) == (QR, "")

    second = standin.show_qr()
    assert adapter.status().qr == second != QR


def test_the_pairing_code_is_in_the_status(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    _pairing(standin)

    status = adapter.status()

    assert status.pairing_code == standin.pairing_code
    assert len(status.pairing_code) == 8
    assert status.qr == standin.qr  # Evolution shows both; either links


def test_a_reconnect_does_not_offer_the_qr_evolution_kept(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    # Evolution keeps its last QR after a link and answers it while reconnecting.
    standin.show_qr(QR)
    standin.scan()
    standin.set_state("connecting")
    assert standin.qr == QR

    status = adapter.status()

    assert (status.state, status.qr, status.logged_out) == (State.STARTING, "", False)


def test_status_never_starts_a_link_from_close(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    # /instance/connect from `close` would start linking: status() must not ask it then.
    standin.set_state("close")

    adapter.status()

    assert standin.calls()["connect"] == 0
    assert standin.state == "close"


def test_status_of_open_asks_one_route(standin: FakeEvolution, adapter: EvolutionGateway) -> None:
    adapter.status()

    assert standin.calls() == {"connection_state": 1}


def test_a_close_without_its_record_is_still_said(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_state("close", reason=401)
    standin.set_failure("fetch_instances", "error500")

    status = adapter.status()

    assert (status.state, status.code, status.logged_out) == (State.DISCONNECTED, "close", True)


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        pytest.param(
            lambda s: _gateway(s, api_key="wrong-key"),
            "HTTP 401",
            "GATEWAY_API_KEY",
            id="wrong-key",
        ),
        pytest.param(
            lambda s: _gateway(s, instance="shop"), "HTTP 404", "GATEWAY_SESSION", id="no-instance"
        ),
        pytest.param(
            lambda s: _gateway(s, base_url=s.url + "/evolution"),
            "HTTP 404",
            "GATEWAY_URL",
            id="wrong-path",
        ),
    ],
)
def test_a_refused_status_says_what_to_fix(
    standin: FakeEvolution, make: Callable, code: str, words: str
) -> None:
    with make(standin) as gateway:
        status = gateway.status()

    assert (status.state, status.code) == (State.UNKNOWN, code)
    assert words in status.reason
    assert API_KEY not in status.reason


@pytest.mark.parametrize(("failure", "code"), [("error500", "HTTP 500"), ("garbage", "HTTP 200")])
def test_a_broken_status_answer_is_unknown(
    standin: FakeEvolution, adapter: EvolutionGateway, failure: str, code: str
) -> None:
    standin.set_failure("connection_state", failure)

    status = adapter.status()

    assert (status.state, status.code) == (State.UNKNOWN, code)


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_failure("connection_state", "drop"), id="drop"),
        pytest.param(lambda s: s.set_failure("connection_state", "hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_status_without_an_answer_raises(
    standin: FakeEvolution, adapter: EvolutionGateway, setup: Callable
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable, match="instance/connectionState/default"):
        adapter.status()


# --- account() -------------------------------------------------------------------------


def test_the_account_is_the_linked_number_and_its_name(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_account(number="923009998877", name="Shop ✓")

    assert adapter.account() == Account(number="923009998877", name="Shop ✓", platform=None)
    assert standin.calls()["fetch_instances"] == 1


def test_the_accounts_number_is_its_digits_without_a_device(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_account(number="923009998877:12")

    assert adapter.account().number == "923009998877"


@pytest.mark.parametrize("setup", [lambda s: s.set_state("close"), lambda s: s.show_qr()])
def test_no_account_while_not_connected(
    standin: FakeEvolution, adapter: EvolutionGateway, setup: Callable
) -> None:
    setup(standin)

    assert adapter.account() is None


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_failure("fetch_instances", "error500"), id="error500"),
        pytest.param(lambda s: s.set_failure("fetch_instances", "garbage"), id="garbage"),
        pytest.param(lambda s: s.set_failure("fetch_instances", "drop"), id="drop"),
        pytest.param(_down, id="down"),
    ],
)
def test_account_failures_raise(
    standin: FakeEvolution, adapter: EvolutionGateway, setup: Callable
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable):
        adapter.account()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda s: _gateway(s, api_key="wrong-key"), "GATEWAY_API_KEY"),
        (lambda s: _gateway(s, instance="shop"), 'Instance "shop" not found'),
    ],
    ids=["wrong-key", "other-instance"],
)
def test_account_refused_raises_in_words(
    standin: FakeEvolution, make: Callable, words: str
) -> None:
    with make(standin) as gateway, pytest.raises(GatewayUnavailable) as caught:
        gateway.account()

    assert words in str(caught.value)
    assert API_KEY not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json=[{"name": "other", "token": "SECRET-TOKEN"}]),
        httpx.Response(200, json={"token": "SECRET-TOKEN"}),
        httpx.Response(500, json={"token": "SECRET-TOKEN"}),
    ],
    ids=["other-instance", "not-a-list", "500"],
)
def test_the_instance_token_in_fetch_instances_never_reaches_an_error(
    answer: httpx.Response,
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with EvolutionGateway("http://evolution.test", api_key=API_KEY, transport=transport) as gateway:
        with pytest.raises(GatewayUnavailable) as caught:
            gateway.account()

    assert "SECRET-TOKEN" not in str(caught.value)


# --- send() ----------------------------------------------------------------------------


def test_a_sent_message_keeps_evolutions_key_id(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    outcome = adapter.send(ADDRESS, "Salaam, ünïcode ✓", reply_id="reply_1")

    [call] = standin.sends
    assert outcome == SendOutcome.sent(call.gateway_id)
    assert call.gateway_id and call.gateway_id.startswith("3EB0")
    assert (call.number, call.text, call.chat) == (NUMBER, "Salaam, ünïcode ✓", JID)
    assert call.delivered


@pytest.mark.parametrize(
    ("address", "number", "chat"),
    [
        (ADDRESS, NUMBER, JID),
        (NUMBER, NUMBER, JID),
        ("+92 300 1234567", NUMBER, JID),
        (JID, NUMBER, JID),
        (GROUP, GROUP, GROUP),
        (f"{LID}@lid", f"{LID}@lid", f"{LID}@lid"),
    ],
)
def test_what_send_asks_evolution_for(
    standin: FakeEvolution, adapter: EvolutionGateway, address: str, number: str, chat: str
) -> None:
    assert adapter.send(address, TEXT).ok

    [call] = standin.sends
    assert (call.number, call.chat) == (number, chat)


@pytest.mark.parametrize(
    ("setup", "kind", "next_", "words", "delivered"),
    [
        # 400 [{"exists": false}]: its number check, before any send.
        pytest.param(
            lambda s: s.set_send_mode("not_on_whatsapp"),
            Sent.NOT_SENT,
            Next.FINAL,
            "is not on WhatsApp",
            [False],
            id="400-exists-false",
        ),
        # 400 [[...]]: its schema check, before that.
        pytest.param(
            lambda s: s.set_send_mode("schema"),
            Sent.NOT_SENT,
            Next.FINAL,
            'requires property "text"',
            [False],
            id="400-schema",
        ),
        pytest.param(
            lambda s: s.set_send_mode("unauthorized"),
            Sent.NOT_SENT,
            Next.CONFIG,
            "GATEWAY_API_KEY",
            [False],
            id="401",
        ),
        pytest.param(
            lambda s: s.set_send_mode("no_instance"),
            Sent.NOT_SENT,
            Next.CONFIG,
            "GATEWAY_SESSION",
            [False],
            id="404-no-instance",
        ),
        # Any other 400: thrown during or after the send; the two cannot be told apart.
        pytest.param(
            lambda s: s.set_send_mode("closed_after_send"),
            Sent.MAYBE_SENT,
            None,
            "Connection Closed",
            [True],
            id="400-closed-after-send",
        ),
        pytest.param(
            lambda s: s.set_send_mode("closed_before_send"),
            Sent.MAYBE_SENT,
            None,
            "Connection Closed",
            [False],
            id="400-closed-before-send",
        ),
        # GATEWAY.md: a 5xx may have sent (Evolution's own is thrown before: not delivered).
        pytest.param(
            lambda s: s.set_send_mode("error500"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 500",
            [False],
            id="500",
        ),
        pytest.param(
            lambda s: s.set_state("close"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 500: Connection Closed",
            [False],
            id="500-session-closed",
        ),
        pytest.param(
            lambda s: s.set_send_mode("hang"),
            Sent.MAYBE_SENT,
            None,
            f"did not answer within {TIMEOUT:g} s",
            [True],
            id="hang",
        ),
        pytest.param(
            lambda s: s.set_send_mode("drop"),
            Sent.MAYBE_SENT,
            None,
            "broke off",
            [True],
            id="drop",
        ),
        # A refused connection never reached it.
        pytest.param(_down, Sent.NOT_SENT, Next.RETRY, "unreachable", [], id="refused"),
    ],
)
def test_send_answers_are_classified(
    standin: FakeEvolution,
    adapter: EvolutionGateway,
    setup: Callable[[FakeEvolution], object],
    kind: Sent,
    next_: Next | None,
    words: str,
    delivered: list[bool],
) -> None:
    setup(standin)

    outcome = adapter.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next, outcome.message_id) == (kind, next_, "")
    assert words in outcome.error
    assert [call.delivered for call in standin.sends] == delivered


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda s: _gateway(s, api_key="wrong-key"), "GATEWAY_API_KEY"),
        (lambda s: _gateway(s, instance="shop"), "GATEWAY_SESSION"),
        (lambda s: _gateway(s, base_url=s.url + "/evolution"), "GATEWAY_URL"),
    ],
    ids=["wrong-key", "no-instance", "wrong-path"],
)
def test_our_wrong_setting_is_config_and_sends_nothing(
    standin: FakeEvolution, make: Callable, words: str
) -> None:
    with make(standin) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert words in outcome.error
    assert API_KEY not in outcome.error and "wrong-key" not in outcome.error
    assert standin.sends == []


@pytest.mark.parametrize("text", ["", "  \n "])
def test_an_empty_text_is_final(
    standin: FakeEvolution, adapter: EvolutionGateway, text: str
) -> None:
    outcome = adapter.send(ADDRESS, text)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert "Text is required" in outcome.error
    assert standin.sends == []


def test_a_text_that_cannot_be_encoded_is_final_and_not_sent(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    outcome = adapter.send(ADDRESS, "half a pair: \ud800")

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert standin.calls()["send_text"] == 0


def test_a_session_down_then_up(standin: FakeEvolution, adapter: EvolutionGateway) -> None:
    standin.queue_send_modes("closed_before_send", "ok")

    first, second = adapter.send(ADDRESS, TEXT), adapter.send(ADDRESS, TEXT)

    assert first.kind == Sent.MAYBE_SENT
    assert second == SendOutcome.sent(standin.delivered()[0].gateway_id)


@pytest.mark.parametrize(
    ("answer", "kind", "next_"),
    [
        pytest.param(httpx.Response(200, json={}), Sent.MAYBE_SENT, None, id="200-empty"),
        # sendText answers 201: a 200, even with an id, is not its answer.
        pytest.param(
            httpx.Response(200, json={"key": {"id": "3EB0AA"}}),
            Sent.MAYBE_SENT,
            None,
            id="200-with-id",
        ),
        pytest.param(
            httpx.Response(201, json={"status": "PENDING"}), Sent.MAYBE_SENT, None, id="201-no-key"
        ),
        pytest.param(
            httpx.Response(
                400,
                json={
                    "status": 400,
                    "error": "Bad Request",
                    "response": {"message": ["[object Object]"]},
                },
            ),
            Sent.MAYBE_SENT,
            None,
            id="400-object-object",
        ),
        pytest.param(
            httpx.Response(
                403, json={"status": 403, "error": "Forbidden", "response": {"message": ["x"]}}
            ),
            Sent.NOT_SENT,
            Next.CONFIG,
            id="403",
        ),
        pytest.param(
            httpx.Response(301, headers={"location": "https://evolution.test/"}),
            Sent.NOT_SENT,
            Next.CONFIG,
            id="301",
        ),
        pytest.param(httpx.Response(429, text="slow down"), Sent.NOT_SENT, Next.RETRY, id="429"),
        pytest.param(
            httpx.Response(502, text="<html>bad gateway</html>"), Sent.MAYBE_SENT, None, id="502"
        ),
    ],
)
def test_answers_evolution_itself_never_gives(answer: httpx.Response, kind: Sent, next_) -> None:
    # Something else at its address (a proxy) answered: never "sent" without key.id.
    transport = httpx.MockTransport(lambda request: answer)
    with EvolutionGateway("http://evolution.test", api_key=API_KEY, transport=transport) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (kind, next_)


def test_the_api_key_goes_in_the_apikey_header_and_nowhere_else() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"key": {"id": "3EB0AA"}})

    transport = httpx.MockTransport(answer)
    with EvolutionGateway(
        "http://evolution.test", api_key=API_KEY, instance="shop 1", transport=transport
    ) as gateway:
        assert gateway.send(ADDRESS, TEXT) == SendOutcome.sent("3EB0AA")
        assert API_KEY not in gateway.address and API_KEY not in repr(gateway)

    [request] = seen
    assert request.headers["apikey"] == API_KEY
    assert str(request.url) == "http://evolution.test/message/sendText/shop%201"
    assert json.loads(request.content) == {"number": NUMBER, "text": TEXT}
    assert API_KEY not in str(request.url) and API_KEY.encode() not in request.content


def test_an_unusable_address_is_config() -> None:
    with EvolutionGateway("htp://evolution.test", api_key=API_KEY) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("status@broadcast", "Status update"),
        ("status", "is not a phone number"),
        ("", "is not a phone number"),
        ("1" * 18, "more than 15 digits"),
        ("120363@newsletter", "cannot reach"),
    ],
)
def test_an_address_evolution_cannot_take_is_refused_before_send(
    standin: FakeEvolution, adapter: EvolutionGateway, address: str, words: str
) -> None:
    outcome = adapter.send(address, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert words in outcome.error
    assert standin.calls()["send_text"] == 0


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (ADDRESS, ""),
        (NUMBER, ""),
        ("+92 300 1234567", ""),
        (JID, ""),
        (GROUP, ""),
        # Evolution's number check lets a @lid through.
        (f"{LID}@lid", ""),
        ("status@broadcast", "a Status update"),
        ("123@broadcast", "broadcast list"),
        ("@g.us", "not a group address"),
        ("abc@lid", "not a WhatsApp contact id"),
        ("shop@c.us", "is not a phone number"),
        ("x" * 5000, "is not a phone number"),
    ],
)
def test_cannot_reach(settings, address: str, words: str) -> None:
    why = evolution.cannot_reach(address)

    assert (words in why) if words else (why == "")
    assert len(why) < 120
    settings.GATEWAY_KIND = "evolution"
    assert whatsapp.cannot_reach(address) == why == EvolutionGateway.cannot_reach(address)


# --- read_back() and recent_messages() ---------------------------------------------------


def test_read_back_lists_our_messages_in_the_chat_oldest_first(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    first = adapter.send(ADDRESS, "first")
    adapter.send("923009999999", "another chat")
    standin.add_customer_message("a customer's")
    phone = standin.answer_from_phone(
        "from the phone", chat=NUMBER, timestamp=int(_ago(seconds=1).timestamp()) + 2
    )
    second = adapter.send(ADDRESS, "second")

    echoes = adapter.read_back(ADDRESS, _ago(minutes=5))

    assert {e.gateway_id for e in echoes} == {
        first.message_id,
        second.message_id,
        phone["key"]["id"],
    }
    assert {e.chat for e in echoes} == {ADDRESS}
    assert [e.text for e in echoes if e.gateway_id != phone["key"]["id"]] == ["first", "second"]
    assert all(e.at is not None and e.reply_id == "" for e in echoes)
    assert echoes == sorted(echoes, key=lambda e: e.at)


def test_read_back_leaves_out_what_came_before_since(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.answer_from_phone("long ago", timestamp=int(_ago(hours=3).timestamp()))
    recent = adapter.send(NUMBER, TEXT)

    echoes = adapter.read_back(NUMBER, _ago(hours=1))

    assert [e.gateway_id for e in echoes] == [recent.message_id]


def test_read_back_keeps_only_ours_whatever_the_listing_holds() -> None:
    # Evolution filters on fromMe itself; an answer that did not is still read right.
    records = [
        {"key": {"remoteJid": JID, "fromMe": fm, "id": f"ID{fm}"}, "message": {"conversation": "t"}}
        | {"messageType": "conversation", "messageTimestamp": 1764061200}
        for fm in (True, False)
    ]
    answer = {"messages": {"total": 2, "pages": 1, "currentPage": 1, "records": records}}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with EvolutionGateway("http://evolution.test", api_key=API_KEY, transport=transport) as gateway:
        assert [e.gateway_id for e in gateway.read_back(ADDRESS, _ago(days=400))] == ["IDTrue"]
        assert [m.id for m in gateway.recent_messages(ADDRESS, _ago(days=400))] == ["IDFalse"]


@pytest.mark.parametrize("call", ["read_back", "recent_messages"])
def test_a_chat_evolution_cannot_have_is_not_asked_for(
    standin: FakeEvolution, adapter: EvolutionGateway, call: str
) -> None:
    assert getattr(adapter, call)("status@broadcast", _ago(minutes=5)) == []
    assert standin.calls()["find_messages"] == 0


def test_a_send_whose_save_failed_is_not_read_back(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    # closed_after_send: delivered, but Evolution's own save failed: nothing to find.
    standin.set_send_mode("closed_after_send")
    adapter.send(ADDRESS, TEXT)

    assert adapter.read_back(ADDRESS, _ago(minutes=5)) == []
    assert standin.delivered()


def test_recent_messages_are_the_customers_as_the_webhook_gives_them(
    standin: FakeEvolution, adapter: EvolutionGateway, evolution_receiver: WebhookReceiver
) -> None:
    standin.add_customer_message("Salaam <b>1</b> 😀", name="Ayesha")
    standin.add_customer_message("a photo", media="image")
    standin.add_customer_message("", media="ptt")
    # Baileys 7: addressed by the hidden id, the number beside it.
    standin.add_customer_message("hidden id, number known", lid=LID)
    standin.add_customer_message("another chat", sender="923009999999")
    standin.answer_from_phone("ours, from the phone")
    sent = adapter.send(ADDRESS, "ours, by the API")
    standin.react(sent.message_id, "👍")  # kept by Evolution, though not a message

    found = adapter.recent_messages(ADDRESS, _ago(minutes=5))

    assert [m.text for m in found] == [
        "Salaam <b>1</b> 😀",
        "a photo",
        "",
        "hidden id, number known",
    ]
    assert {m.chat for m in found} == {ADDRESS}
    assert not any(m.from_me for m in found)
    # The same objects the webhooks of these messages make.
    posted = [
        item.message
        for received in evolution_receiver.received
        for item in parse_webhook(received.json(), settings=SETTINGS)
        if item.kind == EventKind.MESSAGE and item.message.chat == ADDRESS
    ]
    assert [m.stored for m in found] == [m.stored for m in posted]
    assert [m.media_kind for m in found] == ["", "image", "ptt", ""]


@pytest.mark.parametrize(
    ("fields", "chat"),
    [
        ({"group": GROUP}, GROUP),
        ({"sender": f"{LID}@lid"}, f"{LID}@lid"),
    ],
    ids=["group", "hidden-number"],
)
def test_recent_messages_of_a_group_or_a_hidden_contact(
    standin: FakeEvolution, adapter: EvolutionGateway, fields: dict, chat: str
) -> None:
    wanted = standin.add_customer_message("in this chat", **fields)
    standin.add_customer_message("elsewhere")

    found = adapter.recent_messages(chat, _ago(minutes=5))

    assert [(m.id, m.chat) for m in found] == [(wanted["key"]["id"], chat)]


def test_recent_messages_leave_out_older_ones_and_page_through(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    now = int(datetime.now(UTC).timestamp())
    standin.add_customer_message("too old", timestamp=now - 7200)
    ids = [
        standin.add_customer_message(f"m{n}", timestamp=now - 300 + n)["key"]["id"]
        for n in range(130)
    ]

    found = adapter.recent_messages(NUMBER, _ago(hours=1))

    assert [m.id for m in found] == ids
    assert standin.calls()["find_messages"] == 2  # 100 a page


def test_past_the_last_page_asked_the_oldest_are_left_out_and_said(
    standin: FakeEvolution, adapter: EvolutionGateway, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(datetime.now(UTC).timestamp())
    page, pages = evolution.PAGE_SIZE, evolution.MAX_PAGES
    ids = [
        standin.add_customer_message("m", timestamp=now - 3000 + n)["key"]["id"]
        for n in range(page * pages + 3)
    ]

    found = adapter.recent_messages(NUMBER, _ago(hours=1))

    assert [m.id for m in found] == ids[3:]
    assert standin.calls()["find_messages"] == pages
    assert "the oldest were not read" in caplog.text


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_failure("find_messages", "error500"), id="error500"),
        pytest.param(lambda s: s.set_failure("find_messages", "garbage"), id="garbage"),
        pytest.param(lambda s: s.set_failure("find_messages", "drop"), id="drop"),
        pytest.param(_down, id="down"),
    ],
)
@pytest.mark.parametrize("call", ["read_back", "recent_messages"])
def test_listing_failures_raise(
    standin: FakeEvolution, adapter: EvolutionGateway, setup: Callable, call: str
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable):
        getattr(adapter, call)(ADDRESS, _ago(minutes=5))


def test_listing_with_a_wrong_key_raises(standin: FakeEvolution) -> None:
    with (
        _gateway(standin, api_key="wrong-key") as gateway,
        pytest.raises(GatewayUnavailable, match="401"),
    ):
        gateway.recent_messages(ADDRESS, _ago(minutes=5))


# --- the session from the dashboard ------------------------------------------------------


def test_a_pairing_code_from_a_closed_session(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_state("close")

    code = adapter.request_pairing_code("+92 300 1234567")

    assert code == standin.pairing_code and len(code) == 8
    assert standin.state == "connecting"
    assert standin.calls()["connect"] == 1


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda s: None, "already linked"),
        (lambda s: s.show_qr(), "only when linking starts"),
    ],
    ids=["open", "showing-a-qr"],
)
def test_no_pairing_code_is_said_in_words(
    standin: FakeEvolution, adapter: EvolutionGateway, setup: Callable, words: str
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable, match=words):
        adapter.request_pairing_code(NUMBER)


def test_restart_reconnects_with_the_stored_login(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    assert adapter.restart() is None

    assert standin.calls()["restart"] == 1
    assert adapter.status().ready


def test_restart_of_a_closed_session_is_refused_in_words(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_state("close")

    with pytest.raises(GatewayUnavailable, match="cannot restart a session that is closed"):
        adapter.restart()


def test_logout_forgets_the_login(standin: FakeEvolution, adapter: EvolutionGateway) -> None:
    assert adapter.logout() is None

    status = adapter.status()
    assert (status.state, status.logged_out, status.code) == (State.DISCONNECTED, True, "close 401")


def test_logout_of_a_closed_session_is_refused_in_words(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.set_state("close")

    with pytest.raises(GatewayUnavailable, match="is not connected"):
        adapter.logout()


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.request_pairing_code(NUMBER),
        lambda g: g.restart(),
        lambda g: g.logout(),
        lambda g: g.webhook_config(),
        lambda g: g.apply_webhook({"enabled": True, "url": "http://x"}),
    ],
    ids=["pair", "restart", "logout", "webhook_config", "apply_webhook"],
)
def test_session_calls_with_a_wrong_key_raise(standin: FakeEvolution, call: Callable) -> None:
    with (
        _gateway(standin, api_key="wrong-key") as gateway,
        pytest.raises(GatewayUnavailable, match="GATEWAY_API_KEY"),
    ):
        call(gateway)
    assert standin.state == "open"


# --- the webhook's configuration ---------------------------------------------------------


def test_no_webhook_is_an_empty_configuration(adapter: EvolutionGateway) -> None:
    assert adapter.webhook_config() == {}


def test_the_configuration_as_set_takes_it(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    standin.webhook_url = "https://dashboard.example/gateway/webhook"

    assert adapter.webhook_config() == {
        "enabled": True,
        "url": "https://dashboard.example/gateway/webhook",
        "events": list(evolution.WEBHOOK_EVENTS),
        "headers": {"jwt_key": WEBHOOK_SECRET},
        "byEvents": False,
        "base64": False,
    }


def test_the_plan_puts_ours_in_and_keeps_the_rest() -> None:
    current = {
        "enabled": False,
        "url": "https://n8n.example/hook",
        "events": ["CALL", "MESSAGES_UPSERT"],
        "headers": {"X-Team": "ops", "jwt_key": "old-secret"},
        "byEvents": True,
        "base64": True,
    }

    with EvolutionGateway("http://evolution.test", api_key=API_KEY) as gateway:
        plan = gateway.webhook_plan(
            current, url="https://dash.example/gateway/webhook", secret="s3"
        )

    assert plan == {
        "enabled": True,
        "url": "https://dash.example/gateway/webhook",
        "events": [
            "CALL",
            "MESSAGES_UPSERT",
            "SEND_MESSAGE",
            "MESSAGES_UPDATE",
            "CONNECTION_UPDATE",
            "QRCODE_UPDATED",
        ],
        "headers": {"X-Team": "ops", "jwt_key": "s3"},
        "byEvents": False,
        "base64": False,
    }
    assert current["headers"] == {"X-Team": "ops", "jwt_key": "old-secret"}  # not changed


def test_apply_then_evolution_posts_signed_webhooks_there(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    from tests.fake_evolution import WebhookReceiver

    standin.webhook_url = "https://old.example/hook"
    standin.webhook_secret = ""
    receiver = WebhookReceiver()
    try:
        plan = adapter.webhook_plan(adapter.webhook_config(), url=receiver.url, secret="new-secret")
        adapter.apply_webhook(plan)
        assert adapter.webhook_config() == plan
        # Applied again, nothing changes.
        assert (
            adapter.webhook_plan(adapter.webhook_config(), url=receiver.url, secret="new-secret")
            == plan
        )

        standin.add_customer_message("hello")
        [delivery] = receiver.wait_for(1)
    finally:
        receiver.stop()
    verify_webhook(delivery.headers, delivery.body, secret="new-secret", now=datetime.now(UTC))
    assert standin.calls()["set_webhook"] == 1


def test_a_refused_plan_is_said_without_its_secret(
    standin: FakeEvolution, adapter: EvolutionGateway
) -> None:
    plan = {
        "enabled": True,
        "url": "http://x",
        "events": ["NOT_AN_EVENT"],
        "headers": {"jwt_key": "s3cr3t"},
    }

    with pytest.raises(GatewayUnavailable) as caught:
        adapter.apply_webhook(plan)

    assert "HTTP 400" in str(caught.value) and "s3cr3t" not in str(caught.value)


# --- verify_webhook(): Evolution's JWT ------------------------------------------------------


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BODY = b'{"event":"messages.upsert"}'


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _verify(headers: dict[str, str], *, secret: str = WEBHOOK_SECRET, now: datetime = NOW) -> None:
    verify_webhook(headers, BODY, secret=secret, now=now)


def test_a_token_signed_with_our_secret_passes() -> None:
    headers = sign(BODY, WEBHOOK_SECRET, now=NOW.timestamp())

    assert _verify(headers) is None
    # Any letter case of the header's name.
    assert _verify({"authorization": headers["Authorization"]}) is None
    assert _verify({"AUTHORIZATION": headers["Authorization"].replace("Bearer", "bearer")}) is None


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        pytest.param({}, "missing", id="missing"),
        pytest.param({"Authorization": ""}, "missing", id="empty"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer", id="basic"),
        pytest.param(
            {"Authorization": f"Token {jwt_token(WEBHOOK_SECRET, now=NOW.timestamp())}"},
            "Bearer",
            id="not-bearer",
        ),
        pytest.param(_bearer("a.b"), "Bearer", id="two-parts"),
        pytest.param(_bearer("a.b.c.d"), "Bearer", id="four-parts"),
        pytest.param(_bearer("é.b.c"), "Bearer", id="not-base64url"),
        pytest.param(_bearer("bm9wZQ.bm9wZQ.c2ln"), "header", id="header-not-json"),
        pytest.param(
            _bearer(jwt_token("another-secret", now=NOW.timestamp())),
            "not signed with our",
            id="other-key",
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp(), alg="none")),
            "alg",
            id="alg-none",
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp(), alg="HS512")),
            "alg",
            id="alg-hs512",
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp() - 700)), "expired", id="expired"
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp() + 120)),
            "future",
            id="issued-later",
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp(), claims={"exp": None})),
            "no expiry",
            id="no-exp",
        ),
        pytest.param(
            _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp(), claims={"action": "login"})),
            "not Evolution",
            id="other-purpose",
        ),
    ],
)
def test_a_missing_or_wrong_token_is_401(headers: dict[str, str], words: str) -> None:
    with pytest.raises(WebhookRefused) as caught:
        _verify(headers)

    assert caught.value.status == 401
    assert words in str(caught.value)


def test_a_token_whose_claims_were_changed_is_401() -> None:
    header, claims, signature = jwt_token(WEBHOOK_SECRET, now=NOW.timestamp() - 700).split(".")
    later = json.loads(base64.urlsafe_b64decode(claims + "=="))
    later["exp"] += 3600
    forged = base64.urlsafe_b64encode(json.dumps(later).encode()).rstrip(b"=").decode()

    with pytest.raises(WebhookRefused, match="not signed with our"):
        _verify(_bearer(f"{header}.{forged}.{signature}"))


def test_no_secret_trusts_no_token() -> None:
    with pytest.raises(WebhookRefused) as caught:
        _verify(_bearer(jwt_token("", now=NOW.timestamp())), secret="")

    assert caught.value.status == 401


@pytest.mark.parametrize(("issued", "passes"), [(-600 - 29, True), (-600 - 31, False), (25, True)])
def test_thirty_seconds_of_clock_skew_are_allowed(issued: float, passes: bool) -> None:
    headers = _bearer(jwt_token(WEBHOOK_SECRET, now=NOW.timestamp() + issued))

    if passes:
        _verify(headers)
    else:
        with pytest.raises(WebhookRefused, match="expired"):
            _verify(headers)


def test_the_token_does_not_cover_the_body() -> None:
    # Evolution's JWT holds iat, exp, app and action only: the body is not signed, so a
    # body changed on the way passes. This pins the limit (see evolution.py's docstring):
    # only TLS keeps an Evolution webhook's body intact.
    headers = sign(BODY, WEBHOOK_SECRET, now=NOW.timestamp())

    verify_webhook(headers, BODY + b"changed", secret=WEBHOOK_SECRET, now=NOW)


def test_the_package_verifies_with_the_configured_secret(fake_evolution: FakeEvolution) -> None:
    headers = sign(BODY, WEBHOOK_SECRET)

    whatsapp.verify_webhook(headers, BODY, now=datetime.now(UTC))
    with pytest.raises(WebhookRefused):
        whatsapp.verify_webhook(sign(BODY, "not-ours"), BODY, now=datetime.now(UTC))


def test_a_refusal_never_repeats_the_token() -> None:
    token = jwt_token("another-secret", now=NOW.timestamp())

    with pytest.raises(WebhookRefused) as caught:
        _verify(_bearer(token))

    assert token not in str(caught.value) and token.split(".")[2] not in str(caught.value)


# --- parse_webhook(): each kind ------------------------------------------------------------


def test_a_customers_text_message() -> None:
    body = message_event(
        "Is the shop open?", name="Ayesha Khan", id="3AFFB2355CA3FC5E89F7", timestamp=1764061200
    )

    item = _one(body)

    assert (item.kind, item.dedupe_key, item.event) == (
        EventKind.MESSAGE,
        "messages.upsert:3AFFB2355CA3FC5E89F7",
        "messages.upsert",
    )
    message = item.message
    assert message.stored == {
        "id": "3AFFB2355CA3FC5E89F7",
        "from": ADDRESS,
        "fromName": "Ayesha Khan",
        "body": "Is the shop open?",
        "timestamp": 1764061200,
        "isGroup": False,
        "chatName": "Ayesha Khan",
        "type": "chat",
        "hasMedia": False,
        "receivedAt": "2025-11-25T09:00:00.000Z",
    }
    assert list(message.stored) == STORED_KEYS
    assert (message.id, message.chat, message.sender_name, message.text) == (
        "3AFFB2355CA3FC5E89F7",
        ADDRESS,
        "Ayesha Khan",
        "Is the shop open?",
    )
    assert (message.is_group, message.from_me, message.media_kind) == (False, False, "")
    assert message.received_at == datetime(2025, 11, 25, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("media", "text", "kind", "body", "has_media"),
    [
        ("image", "the red one", "image", "the red one", True),
        ("image", "", "image", "", True),
        ("video", "", "video", "", True),
        ("ptt", "", "ptt", "", True),
        ("audio", "", "audio", "", True),
        ("document", "invoice", "document", "invoice", True),
        ("sticker", "", "sticker", "", True),
        ("location", "", "location", "", False),
    ],
)
def test_media_kinds(media: str, text: str, kind: str, body: str, has_media: bool) -> None:
    message = _one(message_event(text, media=media)).message

    assert (message.stored["type"], message.stored["body"], message.stored["hasMedia"]) == (
        kind,
        body,
        has_media,
    )
    assert message.media_kind == (kind if has_media else "")
    assert message.text == body


@pytest.mark.parametrize(
    ("fields", "chat", "is_group", "chat_name"),
    [
        # Addressed by the hidden id with the number beside it: the number is the chat.
        ({"lid": LID}, ADDRESS, False, "Ayesha Khan"),
        # Only the hidden id: that is the chat.
        ({"sender": f"{LID}@lid"}, f"{LID}@lid", False, "Ayesha Khan"),
        ({"group": GROUP}, GROUP, True, None),
        ({"group": GROUP, "lid": LID}, GROUP, True, None),
        ({"sender": "status@broadcast"}, "status@broadcast", False, "Ayesha Khan"),
    ],
    ids=["lid-with-number", "lid-only", "group", "group-lid-member", "status-update"],
)
def test_which_chat_a_message_is_from(fields: dict, chat: str, is_group: bool, chat_name) -> None:
    message = _one(message_event("hi", **fields)).message

    assert (message.chat, message.stored["from"]) == (chat, chat)
    assert (message.is_group, message.stored["isGroup"]) == (is_group, is_group)
    assert message.stored.get("chatName") == chat_name
    assert message.stored["fromName"] == "Ayesha Khan"
    assert message.is_status_update is (chat == "status@broadcast")


def test_a_message_without_a_name() -> None:
    message = _one(message_event("hi", name=None)).message

    assert (message.sender_name, message.stored["fromName"]) == ("", "")


def test_an_answer_from_the_phone() -> None:
    body = message_event(
        "Coming right up", from_me=True, id="A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4", timestamp=1764061200
    )

    item = _one(body)

    assert (item.kind, item.dedupe_key) == (
        EventKind.FROM_PHONE,
        "messages.upsert:A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4",
    )
    message = item.message
    assert (message.id, message.chat, message.text, message.from_me) == (
        "A1B2C3D4E5F6A1B2C3D4E5F6A1B2C3D4",
        ADDRESS,
        "Coming right up",
        True,
    )
    assert message.received_at == datetime(2025, 11, 25, 9, 0, tzinfo=UTC)


def test_the_shops_own_status_update_is_ignored() -> None:
    item = _one(message_event("new stock!", sender="status@broadcast", from_me=True))

    assert item.kind == EventKind.IGNORED and "Status" in item.note


def test_the_echo_of_our_send() -> None:
    body = send_message_event(TEXT, to=NUMBER, id="3EB0C767D0B1A2B3C4D5E6", timestamp=1764061200)

    item = _one(body)

    assert (item.kind, item.dedupe_key, item.event) == (
        EventKind.ECHO,
        "send.message:3EB0C767D0B1A2B3C4D5E6",
        "send.message",
    )
    assert (item.echo.gateway_id, item.echo.chat, item.echo.text, item.echo.reply_id) == (
        "3EB0C767D0B1A2B3C4D5E6",
        ADDRESS,
        TEXT,
        "",
    )
    assert item.echo.at == datetime(2025, 11, 25, 9, 0, tzinfo=UTC)


def test_a_delivery_failure_and_other_statuses() -> None:
    failed = _one(status_event("3EB0C767D0B1A2B3C4D5E6", "ERROR"))
    read = _one(status_event("3EB0C767D0B1A2B3C4D5E6", "READ"))
    theirs = _one(status_event("3A11", "READ", from_me=False))

    assert (failed.kind, failed.dedupe_key) == (
        EventKind.DELIVERY_FAILED,
        "messages.update:3EB0C767D0B1A2B3C4D5E6:ERROR",
    )
    assert (failed.failure.gateway_id, failed.failure.code, failed.failure.reply_id) == (
        "3EB0C767D0B1A2B3C4D5E6",
        "ERROR",
        "",
    )
    assert "could not deliver" in failed.failure.error
    assert (read.kind, read.dedupe_key) == (
        EventKind.DELIVERED,
        "messages.update:3EB0C767D0B1A2B3C4D5E6:READ",
    )
    assert theirs.kind == EventKind.IGNORED


@pytest.mark.parametrize(
    ("body", "state", "code", "qr", "pairing", "logged_out"),
    [
        pytest.param(session_event("open"), State.READY, "open", "", "", False, id="open"),
        pytest.param(
            session_event("connecting"),
            State.STARTING,
            "connecting",
            "",
            "",
            False,
            id="connecting",
        ),
        pytest.param(
            session_event("close", reason=401),
            State.DISCONNECTED,
            "close 401",
            "",
            "",
            True,
            id="close",
        ),
        pytest.param(
            session_event("close", reason=403),
            State.FAILED,
            "close 403",
            "",
            "",
            True,
            id="forbidden",
        ),
        pytest.param(session_event("refused"), State.FAILED, "refused", "", "", True, id="refused"),
        pytest.param(qrcode_event(QR), State.NEEDS_QR, "qrcode.updated", QR, "", True, id="qr"),
        pytest.param(
            qrcode_event(QR, pairing_code="WZYEH1YY"),
            State.NEEDS_PAIRING,
            "qrcode.updated",
            QR,
            "WZYEH1YY",
            True,
            id="pairing",
        ),
        pytest.param(
            qr_limit_event(),
            State.FAILED,
            "QR code limit reached, please login again",
            "",
            "",
            True,
            id="qr-limit",
        ),
    ],
)
def test_session_events(
    body: dict, state: State, code: str, qr: str, pairing: str, logged_out: bool
) -> None:
    item = _one(body)

    assert item.kind == EventKind.SESSION
    status = item.status
    assert (status.state, status.code, status.qr, status.pairing_code, status.logged_out) == (
        state,
        code,
        qr,
        pairing,
        logged_out,
    )
    assert status.reason
    assert item.dedupe_key.startswith(f"{body['event']}:{body['date_time']}:")


def test_a_session_event_and_status_agree() -> None:
    # The same words whichever way Evolution says it (the event or connectionState).
    assert _one(session_event("close", reason=401)).status == evolution.session_status(
        "close", reason=401
    )


def test_a_retried_event_has_the_same_key_and_two_qrs_differ() -> None:
    first = qrcode_event(QR)
    again = json.loads(json.dumps(first))
    other = {**first, "data": qrcode_event("2@other,a,b,c")["data"]}

    assert _one(first).dedupe_key == _one(again).dedupe_key != _one(other).dedupe_key


@pytest.mark.parametrize(
    ("body", "note"),
    [
        pytest.param(
            {**message_event("hi"), "event": "contacts.upsert", "data": [{"remoteJid": JID}]},
            "not an event this dashboard uses",
            id="unknown-event",
        ),
        pytest.param(
            {**message_event("hi"), "event": "chats.update", "data": "anything at all"},
            "not an event this dashboard uses",
            id="unknown-event-any-data",
        ),
        pytest.param(
            message_event("hi", instance="other-shop"), "'other-shop'", id="other-instance"
        ),
        pytest.param(
            {**message_event("hi", instance="other-shop"), "data": None},
            "'other-shop'",
            id="other-instance-any-data",
        ),
    ],
)
def test_what_we_do_not_use_is_ignored(body: dict, note: str) -> None:
    item = _one(body)

    assert item.kind == EventKind.IGNORED
    assert note in item.note
    assert item.dedupe_key.startswith(f"{body['event']}:{body['date_time']}:")


def test_a_reaction_is_not_a_message() -> None:
    item = _one(envelope("messages.upsert", reaction_data("3EB0C767D0B1A2B3C4D5E6", "👍")))

    assert (item.kind, item.note) == (EventKind.IGNORED, "a reaction to a message")


def test_a_v1_timestamp_as_digits_is_read() -> None:
    body = message_event("hi", timestamp=1764061200)
    body["data"]["messageTimestamp"] = "1764061200"

    assert _one(body).message.stored["timestamp"] == 1764061200


def test_the_apikey_is_dropped_from_what_is_stored() -> None:
    body = message_event("hi", apikey="INSTANCE-TOKEN")
    body["data"]["message"]["apikey"] = "NESTED"
    body["data"]["api_key"] = "GLOBAL"

    item = _one(body)

    stored = json.dumps(item.payload)
    assert "INSTANCE-TOKEN" not in stored and "NESTED" not in stored and "GLOBAL" not in stored
    expected = json.loads(json.dumps(body))
    del expected["apikey"], expected["data"]["message"]["apikey"], expected["data"]["api_key"]
    assert item.payload == expected  # everything else as received


@pytest.mark.parametrize(
    "build",
    [
        message_event,
        lambda: send_message_event(TEXT),
        lambda: status_event("3EB0AA"),
        lambda: session_event("open"),
        qrcode_event,
    ],
    ids=["message", "echo", "status", "session", "qr"],
)
def test_every_kind_drops_the_apikey(build: Callable[[], dict]) -> None:
    body = build()
    body["apikey"] = "INSTANCE-TOKEN"

    assert "INSTANCE-TOKEN" not in json.dumps(_one(body).payload)


def _drop(path: str) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        del target[last]

    return change


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        *parents, last = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("build", "change", "place"),
    [
        (message_event, _drop("event"), "event"),
        (message_event, _set("event", 5), "event"),
        (message_event, _drop("instance"), "instance"),
        (message_event, _drop("date_time"), "date_time"),
        (message_event, _drop("data"), "data"),
        (message_event, _set("data", []), "data"),
        (message_event, _drop("data.key"), "data.key"),
        (message_event, _drop("data.key.id"), "data.key.id"),
        (message_event, _set("data.key.id", ""), "data.key.id"),
        (message_event, _set("data.key.id", "3A" * 200), "data.key.id"),
        (message_event, _set("data.key.remoteJid", None), "data.key.remoteJid"),
        (message_event, _set("data.key.fromMe", "false"), "data.key.fromMe"),
        (message_event, _set("data.key.remoteJidAlt", 5), "data.key.remoteJidAlt"),
        (message_event, _set("data.message", None), "data.message"),
        (message_event, _drop("data.messageType"), "data.messageType"),
        (message_event, _set("data.messageTimestamp", "soon"), "data.messageTimestamp"),
        (message_event, _set("data.messageTimestamp", True), "data.messageTimestamp"),
        (message_event, _set("data.pushName", ["Ayesha"]), "data.pushName"),
        (lambda: send_message_event(TEXT), _drop("data.key.id"), "data.key.id"),
        (lambda: status_event("3EB0AA"), _drop("data.keyId"), "data.keyId"),
        (lambda: status_event("3EB0AA"), _set("data.status", None), "data.status"),
        (lambda: status_event("3EB0AA"), _drop("data.fromMe"), "data.fromMe"),
        (lambda: session_event("open"), _set("data.state", 5), "data.state"),
        (lambda: session_event("close"), _set("data.statusReason", "401"), "data.statusReason"),
        (qrcode_event, _drop("data.qrcode"), "data.qrcode"),
        (qrcode_event, _drop("data.qrcode.code"), "data.qrcode.code"),
        (qrcode_event, _set("data.qrcode.pairingCode", 12345678), "data.qrcode.pairingCode"),
    ],
)
def test_a_bad_shape_is_400_naming_the_place(
    build: Callable[[], dict], change: Callable, place: str
) -> None:
    body = build()
    change(body)

    with pytest.raises(WebhookRefused) as caught:
        _one(body)

    assert caught.value.status == 400
    assert str(caught.value).startswith(f"{place}: ")


@pytest.mark.parametrize("body", [[], "event", None, 5])
def test_a_body_that_is_not_an_object_is_400(body: object) -> None:
    with pytest.raises(WebhookRefused, match="^body: ") as caught:
        parse_webhook(body, settings=SETTINGS)

    assert caught.value.status == 400


def test_the_package_parses_with_the_configured_instance(
    fake_evolution: FakeEvolution, settings
) -> None:
    assert whatsapp.parse_webhook(message_event("hi"))[0].kind == EventKind.MESSAGE
    settings.GATEWAY_SESSION = "shop"
    assert whatsapp.parse_webhook(message_event("hi"))[0].kind == EventKind.IGNORED


# --- one message, one id: the send's answer, its echo, its status, its read-back ------------


def test_the_same_message_has_the_same_id_everywhere(
    standin: FakeEvolution, adapter: EvolutionGateway, evolution_receiver: WebhookReceiver
) -> None:
    outcome = adapter.send(ADDRESS, TEXT)
    standin.fail_delivery(outcome.message_id)

    items = [
        item
        for received in evolution_receiver.wait_for(2)
        for item in parse_webhook(received.json(), settings=SETTINGS)
    ]
    echo = next(i.echo for i in items if i.kind == EventKind.ECHO)
    failure = next(i.failure for i in items if i.kind == EventKind.DELIVERY_FAILED)
    [read] = adapter.read_back(ADDRESS, _ago(minutes=5))
    assert outcome.message_id == echo.gateway_id == failure.gateway_id == read.gateway_id
    assert (echo.chat, echo.text) == (read.chat, read.text) == (ADDRESS, TEXT)


def test_every_webhook_the_stand_in_posts_verifies_and_parses(
    standin: FakeEvolution, adapter: EvolutionGateway, evolution_receiver: WebhookReceiver
) -> None:
    standin.add_customer_message("hello")
    standin.answer_from_phone("hi from the phone")
    sent = adapter.send(ADDRESS, TEXT)
    standin.report_status(sent.message_id, "DELIVERY_ACK")
    standin.set_state("close")
    standin.show_qr()
    standin.scan()

    kinds = []
    for received in evolution_receiver.wait_for(8):
        verify_webhook(
            received.headers, received.body, secret=WEBHOOK_SECRET, now=datetime.now(UTC)
        )
        [item] = parse_webhook(json.loads(received.body), settings=SETTINGS)
        assert "apikey" not in item.payload
        kinds.append(item.kind)

    assert kinds == [
        EventKind.MESSAGE,
        EventKind.FROM_PHONE,
        EventKind.ECHO,
        EventKind.DELIVERED,
        EventKind.SESSION,  # close
        EventKind.SESSION,  # connecting
        EventKind.SESSION,  # the QR
        EventKind.SESSION,  # open
    ]


# --- the factory and what Evolution has not -------------------------------------------------


def test_the_factory_gives_the_evolution_adapter(fake_evolution: FakeEvolution) -> None:
    with whatsapp.gateway(status_timeout=TIMEOUT, send_timeout=TIMEOUT) as gateway:
        assert isinstance(gateway, EvolutionGateway)
        assert (gateway.kind, gateway.traits) == ("evolution", evolution.TRAITS)
        assert gateway.address == f"{fake_evolution.url} (instance default)"
        assert gateway.status().ready
        assert gateway.send(ADDRESS, TEXT).ok
    assert whatsapp.kind() == "evolution"
    assert API_KEY not in whatsapp.address()


def test_what_evolution_can_do() -> None:
    traits = evolution.TRAITS
    assert (traits.has_webhooks, traits.can_read_back, traits.can_backfill, traits.can_pull) == (
        True,
        True,
        True,
        False,
    )
    assert traits.session_actions == {"pair", "restart", "logout"}
    assert traits.webhook_setup == "command"
    assert not traits.needs_session_folder


def test_polling_is_not_evolutions(adapter: EvolutionGateway) -> None:
    with pytest.raises(NotImplementedError):
        adapter.pull_messages()
    with pytest.raises(NotImplementedError):
        adapter.mark_processed("3A11")
    assert adapter.buffer_overflowed(10_000) is False


def test_the_adapter_ignores_a_proxy_from_the_environment(
    standin: FakeEvolution, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would turn a refused connection (not sent) into a 502 (maybe sent).
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with _gateway(standin) as gateway:
        assert gateway.send(ADDRESS, TEXT).ok
