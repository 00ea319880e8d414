"""The waha adapter against the real stand-in over HTTP: every answer of GATEWAY.md section 2, classified.

No database, no mocks of our own code: `WahaStandin` on 127.0.0.1 answers (and
posts its webhooks) as WAHA does, and the adapter turns each answer into the
common model. The webhook half (`verify_webhook`, `parse_webhook`) is fed the
stand-in's own bodies, as it posts them or as its builders make them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from statecore import whatsapp
from statecore.statefile.parse import parse_json
from statecore.whatsapp import waha, waha_events
from statecore.whatsapp.model import (
    DEDUPE_WINDOW,
    Account,
    EventKind,
    GatewayUnavailable,
    Next,
    SendOutcome,
    Sent,
    SessionAction,
    State,
    WebhookItem,
    WebhookRefused,
)
from statecore.whatsapp.standin_waha import (
    DEFAULT_PAIRING_CODE,
    WahaStandin,
    ack_event,
    envelope,
    message_event,
    serialize,
    session_event,
    sign,
)
from statecore.whatsapp.waha import WahaGateway
from tests.fake_waha import API_KEY, WEBHOOK_SECRET, HookReceiver

if TYPE_CHECKING:
    from tests.fake_waha import FakeWaha

NUMBER = "923001234567"
CHAT = f"{NUMBER}@c.us"
GROUP = "120363025246125888@g.us"
LID = "24816190603455@lid"
TEXT = "Your order is ready"
QR = "2@AbCdEf+/=,noise==,identity==,secret=="
# Short, so a "hang" costs half a second; the stand-in hangs for a minute (released at stop).
TIMEOUT = 0.5
ENGINES = ["WEBJS", "NOWEB", "GOWS"]
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
def standin(fake_waha: FakeWaha) -> FakeWaha:
    return fake_waha


@pytest.fixture
def adapter(standin: FakeWaha) -> Iterator[WahaGateway]:
    with WahaGateway(
        standin.url, api_key=API_KEY, status_timeout=TIMEOUT, send_timeout=TIMEOUT
    ) as gateway:
        yield gateway


@pytest.fixture
def hooks(standin: FakeWaha, waha_hook_receiver: HookReceiver) -> HookReceiver:
    standin.webhook_url = waha_hook_receiver.url
    return waha_hook_receiver


def _down(standin: FakeWaha) -> None:
    standin.set_send_mode("down")  # server-wide: the port refuses every connection


def _parse(body: dict, settings) -> WebhookItem:
    """One body as the endpoint reads it: the strict parser, then the adapter."""
    [item] = waha_events.parse_webhook(parse_json(serialize(body)), settings=settings)
    return item


def _received(hooks: HookReceiver, settings, index: int = -1) -> WebhookItem:
    """The stand-in's webhook as it arrived, verified and parsed."""
    received = hooks.received[index]
    waha_events.verify_webhook(
        received.headers, received.body, secret=WEBHOOK_SECRET, now=datetime.now(UTC)
    )
    [item] = waha_events.parse_webhook(parse_json(received.body), settings=settings)
    return item


# --- GET /api/sessions/<session> ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state", "logged_out", "words"),
    [
        ("WORKING", State.READY, False, "linked and working"),
        ("STARTING", State.STARTING, False, "starting"),
        ("SCAN_QR_CODE", State.NEEDS_QR, True, "scan the QR code"),
        ("STOPPED", State.DISCONNECTED, False, "stopped on the gateway: restart it"),
        ("FAILED", State.FAILED, False, "restart it; if that does not help, log out"),
        ("PASSKEY_REQUIRED", State.NEEDS_PAIRING, True, "passkey"),
        ("PASSKEY_CONFIRMATION_REQUIRED", State.NEEDS_PAIRING, True, "confirm the new link"),
    ],
)
def test_every_session_state_is_mapped_with_its_words_and_code(
    standin: FakeWaha,
    adapter: WahaGateway,
    status: str,
    state: State,
    logged_out: bool,
    words: str,
) -> None:
    standin.set_status(status)

    got = adapter.status()

    assert (got.state, got.code, got.logged_out) == (state, status, logged_out)
    assert words in got.reason
    assert got.qr == (standin.qr if status == "SCAN_QR_CODE" else "")
    assert got.ready is (status == "WORKING")
    assert got.needs_login is logged_out
    assert standin.calls()["session"] == 1
    assert standin.calls()["qr"] == (1 if status == "SCAN_QR_CODE" else 0)


def test_the_qr_is_the_exact_string_and_follows_a_new_one(
    standin: FakeWaha, adapter: WahaGateway
) -> None:
    standin.show_qr(QR)
    assert adapter.status().qr == QR
    second = standin.show_qr()
    assert second != QR and adapter.status().qr == second
    standin.scan()
    after = adapter.status()
    assert (after.state, after.qr) == (State.READY, "")


def test_a_qr_that_cannot_be_fetched_leaves_the_status(standin: FakeWaha, adapter) -> None:
    standin.show_qr(QR)
    standin.set_failure("qr", "error500")

    status = adapter.status()

    assert (status.state, status.qr) == (State.NEEDS_QR, "")


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        pytest.param(
            lambda s: s.set_failure("session", "error500"), "HTTP 500", "stand-in error", id="500"
        ),
        pytest.param(
            lambda s: s.set_failure("session", "garbage"),
            "HTTP 200",
            "Gateway says hi",
            id="garbage",
        ),
        pytest.param(
            lambda s: setattr(s, "api_key", "rotated"), "HTTP 401", "GATEWAY_API_KEY", id="401"
        ),
        pytest.param(
            lambda s: setattr(s, "session", "shop"), "HTTP 404", "GATEWAY_SESSION", id="404"
        ),
    ],
)
def test_a_session_answer_that_is_not_one_is_unknown_in_words(
    standin: FakeWaha, adapter: WahaGateway, setup: Callable, code: str, words: str
) -> None:
    setup(standin)

    status = adapter.status()

    assert (status.state, status.code) == (State.UNKNOWN, code)
    assert words in status.reason


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_failure("session", "drop"), id="drop"),
        pytest.param(lambda s: s.set_failure("session", "hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_status_without_an_answer_raises_gateway_unavailable(
    standin: FakeWaha, adapter: WahaGateway, setup: Callable
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable) as caught:
        adapter.status()

    assert f"{standin.url}/api/sessions/default" in str(caught.value)


# --- the account ----------------------------------------------------------------------------


def test_the_account_is_the_linked_number_and_name(standin: FakeWaha, adapter) -> None:
    standin.set_account(number="923009998877", name="Shop ✓")

    assert adapter.account() == Account(number="923009998877", name="Shop ✓")


def test_no_account_while_logged_out(standin: FakeWaha, adapter: WahaGateway) -> None:
    standin.show_qr()

    assert adapter.account() is None
    assert standin.calls()["me"] == 1


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        pytest.param(lambda s: s.set_failure("me", "error500"), "HTTP 500", id="500"),
        pytest.param(lambda s: s.set_failure("me", "garbage"), "no id", id="garbage"),
        pytest.param(lambda s: s.set_failure("me", "drop"), "did not answer", id="drop"),
        pytest.param(lambda s: setattr(s, "api_key", "rotated"), "GATEWAY_API_KEY", id="401"),
        pytest.param(_down, "did not answer", id="down"),
    ],
)
def test_account_failures_raise_gateway_unavailable(
    standin: FakeWaha, adapter: WahaGateway, setup: Callable, words: str
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable, match=words):
        adapter.account()


# --- POST /api/sendText ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engines_answer_is_sent_with_the_short_id(
    standin: FakeWaha, adapter: WahaGateway, engine: str
) -> None:
    standin.engine = engine

    outcome = adapter.send(CHAT, "Salaam, ünïcode ✓", reply_id="reply_1")

    [call] = standin.sends
    assert outcome == SendOutcome.sent(call.gateway_id)
    assert call.gateway_id.startswith("3EB0") and "_" not in call.gateway_id
    assert (call.chat_id, call.text, call.delivered) == (CHAT, "Salaam, ünïcode ✓", True)


def test_an_empty_201_is_sent_without_an_id(standin: FakeWaha, adapter: WahaGateway) -> None:
    standin.empty_201 = True

    assert adapter.send(CHAT, TEXT) == SendOutcome.sent("")


@pytest.mark.parametrize(
    ("setup", "kind", "next_", "words", "delivered"),
    [
        # 422 with `expected`: WAHA checks the session before sending anything.
        pytest.param(
            lambda s: s.set_status("STOPPED"),
            Sent.NOT_SENT,
            Next.HOLD,
            "the WhatsApp session is STOPPED",
            [False],
            id="422-stopped",
        ),
        pytest.param(
            lambda s: s.set_status("SCAN_QR_CODE"),
            Sent.NOT_SENT,
            Next.HOLD,
            "SCAN_QR_CODE",
            [False],
            id="422-logged-out",
        ),
        pytest.param(
            lambda s: s.set_send_mode("not_working"),
            Sent.NOT_SENT,
            Next.HOLD,
            "Session status is not as expected",
            [False],
            id="422-not-working-mode",
        ),
        # 422 for anything else says nothing about the session: it may have gone.
        pytest.param(
            lambda s: s.set_send_mode("unprocessable"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 422: The method is not implemented",
            [False],
            id="422-without-expected",
        ),
        pytest.param(
            lambda s: s.set_send_mode("validation"),
            Sent.NOT_SENT,
            Next.FINAL,
            "refused the message: chatId must be",
            [False],
            id="400",
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
            lambda s: s.set_send_mode("error500"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 500: stand-in error",
            [True],
            id="500",
        ),
        pytest.param(
            lambda s: s.set_send_mode("drop"), Sent.MAYBE_SENT, None, "broke off", [True], id="drop"
        ),
        pytest.param(
            lambda s: s.set_send_mode("hang"),
            Sent.MAYBE_SENT,
            None,
            f"did not answer within {TIMEOUT:g} s",
            [True],
            id="hang",
        ),
        # A refused connection never reached WAHA.
        pytest.param(_down, Sent.NOT_SENT, Next.RETRY, "unreachable", [], id="down"),
    ],
)
def test_send_answers_are_classified(
    standin: FakeWaha,
    adapter: WahaGateway,
    setup: Callable,
    kind: Sent,
    next_: Next | None,
    words: str,
    delivered: list[bool],
) -> None:
    setup(standin)

    outcome = adapter.send(CHAT, TEXT)

    assert (outcome.kind, outcome.next, outcome.message_id) == (kind, next_, "")
    assert words in outcome.error
    assert [call.delivered for call in standin.sends] == delivered


def test_a_wrong_key_is_config_and_nothing_reaches_the_send(standin: FakeWaha) -> None:
    with WahaGateway(standin.url, api_key="wrong", send_timeout=TIMEOUT) as wrong:
        outcome = wrong.send(CHAT, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert "wrong" not in outcome.error
    assert standin.sends == [] and standin.calls()["send"] == 1


@pytest.mark.parametrize(
    ("base", "session"),
    [
        pytest.param("", "shop", id="unknown-session"),
        pytest.param("/waha", "default", id="wrong-path"),
    ],
)
def test_a_404_is_config_not_a_maybe(standin: FakeWaha, base: str, session: str) -> None:
    with WahaGateway(standin.url + base, api_key=API_KEY, session=session) as wrong:
        outcome = wrong.send(CHAT, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert "HTTP 404" in outcome.error
    assert standin.sends == []


def test_the_session_named_in_the_settings_is_the_one_sent_with() -> None:
    standin = WahaStandin(api_key=API_KEY, session="shop-2").start()
    try:
        with WahaGateway(standin.url, api_key=API_KEY, session="shop-2") as gateway:
            assert gateway.send(CHAT, TEXT).ok
            assert gateway.status().ready
    finally:
        standin.stop()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "http://[::1"])
def test_an_unusable_address_is_config(url: str) -> None:
    with WahaGateway(url, api_key=API_KEY) as gateway:
        outcome = gateway.send(CHAT, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # Answers the stand-in does not give, from other WAHA versions or what stands before it.
        pytest.param(
            httpx.Response(201, json={"id": f"true_{CHAT}_3EB0AB", "fromMe": True}),
            SendOutcome.sent("3EB0AB"),
            id="wamessage-id-string",
        ),
        pytest.param(
            httpx.Response(200, text="<html>ok</html>"), SendOutcome.sent(""), id="2xx-garbage"
        ),
        pytest.param(
            httpx.Response(502, text="Bad Gateway"),
            SendOutcome.maybe_sent("the gateway answered HTTP 502: 'Bad Gateway'"),
            id="502-proxy",
        ),
        pytest.param(
            httpx.Response(403, json={"message": "Forbidden"}),
            SendOutcome.not_sent(
                Next.CONFIG, "the gateway refused our API key (HTTP 403): check GATEWAY_API_KEY"
            ),
            id="403",
        ),
        pytest.param(
            httpx.Response(301, headers={"Location": "https://waha.example/api/sendText"}),
            SendOutcome.not_sent(
                Next.CONFIG,
                "the gateway address redirects (HTTP 301 to https://waha.example/api/sendText): "
                "set GATEWAY_URL to where WAHA answers",
            ),
            id="redirect",
        ),
    ],
)
def test_answers_from_other_versions_and_proxies(answer: httpx.Response, expected) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with WahaGateway("http://waha.test", api_key=API_KEY, transport=transport) as gateway:
        assert gateway.send(CHAT, TEXT) == expected


@pytest.mark.parametrize(
    ("address", "chat_id"),
    [
        (NUMBER, CHAT),
        ("+92 300 1234567", CHAT),
        (CHAT, CHAT),
        (f"{NUMBER}@s.whatsapp.net", CHAT),
        (GROUP, GROUP),
        (LID, LID),
    ],
)
def test_the_chat_id_is_passed_as_waha_names_it(
    standin: FakeWaha, adapter: WahaGateway, address: str, chat_id: str
) -> None:
    assert adapter.send(address, TEXT).ok

    assert [call.chat_id for call in standin.sends] == [chat_id]


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (CHAT, ""),
        (NUMBER, ""),
        ("+92 300 1234567", ""),
        (f"{NUMBER}@s.whatsapp.net", ""),
        (GROUP, ""),
        ("923001234567-1528797493@g.us", ""),
        (LID, ""),
        ("status@broadcast", "a Status update cannot be answered"),
        ("120363000000000000@newsletter", "a channel cannot be answered"),
        ("status", "'status' is not a phone number"),
        ("", "'' is not a phone number"),
        ("shop@c.us", "is not a phone number"),
        ("923001234567@example.com", "is not a WhatsApp chat"),
    ],
)
def test_cannot_reach(settings, address: str, words: str) -> None:
    why = waha.cannot_reach(address)
    assert (words in why) if words else (why == "")
    settings.GATEWAY_KIND = "waha"
    assert whatsapp.cannot_reach(address) == why == WahaGateway.cannot_reach(address)


@pytest.mark.parametrize("address", ["status@broadcast", "shop@c.us"])
def test_an_unreachable_address_is_refused_before_any_call(
    standin: FakeWaha, adapter: WahaGateway, address: str
) -> None:
    outcome = adapter.send(address, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert standin.calls()["send"] == 0


def test_cannot_reach_names_a_long_address_briefly() -> None:
    assert len(waha.cannot_reach("x" * 5000 + "@c.us")) < 120


# --- one message, one id ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_the_send_its_echo_its_ack_and_its_read_back_name_the_same_message(
    standin: FakeWaha, adapter: WahaGateway, hooks: HookReceiver, settings, engine: str
) -> None:
    standin.engine, standin.noweb_store = engine, True
    before = datetime.now(UTC) - timedelta(seconds=2)

    outcome = adapter.send(CHAT, TEXT)
    echo = _received(hooks, settings)
    standin.fail_delivery(outcome.message_id)
    failure = _received(hooks, settings)
    [read_back] = adapter.read_back(CHAT, before)

    assert outcome.ok and outcome.message_id
    assert echo.kind == EventKind.ECHO
    assert (echo.echo.gateway_id, echo.echo.chat, echo.echo.text) == (
        outcome.message_id,
        CHAT,
        TEXT,
    )
    assert before <= echo.echo.at <= datetime.now(UTC)
    assert failure.kind == EventKind.DELIVERY_FAILED
    assert (failure.failure.gateway_id, failure.failure.code) == (outcome.message_id, "ERROR")
    assert "could not deliver" in failure.failure.error
    assert read_back == echo.echo


def test_a_group_message_is_named_by_its_own_id_not_its_sender(settings) -> None:
    first = _parse(message_event("one", sender=GROUP, participant="923009990000@c.us"), settings)
    second = _parse(message_event("two", sender=GROUP, participant="923009990000@c.us"), settings)

    assert first.message.id != second.message.id
    assert "@" not in first.message.id
    assert waha.short_id(f"false_{GROUP}_3A1B_923009990000@c.us") == "3A1B"
    assert waha.short_id(f"true_{CHAT}_3EB0C7") == "3EB0C7"
    assert waha.short_id("3EB0C7") == "3EB0C7"


# --- reading a chat back ----------------------------------------------------------------------


def test_read_back_lists_only_our_messages_since_then(standin: FakeWaha, adapter) -> None:
    standin.echo_mode = "never"
    early = adapter.send(CHAT, "too early").message_id
    standin.add_customer_message("theirs")
    with standin._lock:  # the first one was sent an hour ago
        standin._chats[CHAT][0]["timestamp"] -= 3600
    since = datetime.now(UTC) - timedelta(minutes=5)
    first = adapter.send(CHAT, "first").message_id
    second = adapter.send(CHAT, "second").message_id
    adapter.send("923009999999", "another chat")

    echoes = adapter.read_back(CHAT, since)

    assert [(e.gateway_id, e.text) for e in echoes] == [(first, "first"), (second, "second")]
    assert early not in {e.gateway_id for e in echoes}
    assert all(e.chat == CHAT and e.reply_id == "" for e in echoes)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        pytest.param(
            lambda s: setattr(s, "engine", "NOWEB"),
            "turn its store on",
            id="noweb-no-store",
        ),
        pytest.param(lambda s: s.set_status("STARTING"), "HTTP 422", id="not-working"),
        pytest.param(lambda s: s.set_failure("chat_messages", "error500"), "HTTP 500", id="500"),
        pytest.param(lambda s: s.set_failure("chat_messages", "garbage"), "HTTP 200", id="garbage"),
        pytest.param(_down, "did not answer", id="down"),
    ],
)
def test_read_back_and_backfill_failures_raise_gateway_unavailable(
    standin: FakeWaha, adapter: WahaGateway, setup: Callable, words: str
) -> None:
    setup(standin)
    since = datetime.now(UTC) - timedelta(hours=1)

    with pytest.raises(GatewayUnavailable, match=words):
        adapter.read_back(CHAT, since)
    with pytest.raises(GatewayUnavailable, match=words):
        adapter.recent_messages(CHAT, since)


@pytest.mark.parametrize("engine", ENGINES)
def test_backfill_finds_a_lost_message_as_its_webhook_would_have_stored_it(
    standin: FakeWaha, adapter: WahaGateway, hooks: HookReceiver, settings, engine: str
) -> None:
    standin.engine, standin.noweb_store = engine, True
    now = int(time.time())
    standin.add_customer_message("delivered", name="Farah", timestamp=now - 60)
    delivered = _received(hooks, settings).message
    standin.lose_webhooks = True
    lost = standin.add_customer_message("lost", name="Farah", media="image", timestamp=now - 30)
    adapter.send(CHAT, "ours")

    found = adapter.recent_messages(CHAT, datetime.now(UTC) - timedelta(minutes=5))

    # WAHA lists the newest first; the oldest comes first here.
    assert [m.id for m in found] == [delivered.id, lost["id"].split("_")[2]]
    again = found[0]
    assert {k: v for k, v in again.stored.items() if k != "receivedAt"} == {
        k: v for k, v in delivered.stored.items() if k != "receivedAt"
    }
    assert (found[1].text, found[1].media_kind, found[1].stored["hasMedia"]) == (
        "lost",
        "image",
        True,
    )
    assert not any(m.from_me for m in found)
    assert len(hooks.received) == 1  # only the first one came by webhook


def test_backfill_of_a_hidden_contact_by_number(standin: FakeWaha, adapter: WahaGateway) -> None:
    standin.engine = "GOWS"
    standin.add_customer_message("hi", sender=LID, phone=NUMBER)

    [found] = adapter.recent_messages(CHAT, datetime.now(UTC) - timedelta(minutes=5))

    assert (found.chat, found.stored["from"]) == (CHAT, CHAT)


# --- the session from the dashboard -----------------------------------------------------------


def test_traits_say_what_waha_offers() -> None:
    traits = waha.TRAITS
    assert (traits.has_webhooks, traits.can_read_back, traits.can_backfill, traits.can_pull) == (
        True,
        True,
        True,
        False,
    )
    assert traits.session_actions == {
        SessionAction.PAIR,
        SessionAction.RESTART,
        SessionAction.LOGOUT,
    }
    assert traits.webhook_setup == "command" and not traits.needs_session_folder


def test_a_pairing_code_for_a_number(standin: FakeWaha, adapter: WahaGateway) -> None:
    standin.show_qr()

    assert adapter.request_pairing_code("+92 300 1234567") == DEFAULT_PAIRING_CODE
    assert standin.pairing_requests() == [NUMBER]


def test_no_pairing_code_while_linked(standin: FakeWaha, adapter: WahaGateway) -> None:
    with pytest.raises(GatewayUnavailable, match="SCAN_QR_CODE status"):
        adapter.request_pairing_code(NUMBER)
    with pytest.raises(ValueError):
        adapter.request_pairing_code("call me")
    assert standin.pairing_requests() == [NUMBER]


def test_restart_keeps_the_login(
    standin: FakeWaha, adapter: WahaGateway, hooks: HookReceiver
) -> None:
    adapter.restart()

    assert standin.calls()["restart"] == 1
    assert [b["payload"]["status"] for b in hooks.bodies()] == ["STOPPED", "STARTING", "WORKING"]
    assert adapter.status().ready


def test_logout_asks_for_a_new_link(standin: FakeWaha, adapter: WahaGateway) -> None:
    adapter.logout()

    status = adapter.status()
    assert (status.state, status.logged_out, bool(status.qr)) == (State.NEEDS_QR, True, True)
    assert adapter.account() is None


@pytest.mark.parametrize("action", ["restart", "logout"])
def test_a_session_action_without_an_answer_raises(
    standin: FakeWaha, adapter: WahaGateway, action: str
) -> None:
    standin.set_failure(action, "error500")

    with pytest.raises(GatewayUnavailable, match="HTTP 500"):
        getattr(adapter, action)()


def test_what_waha_does_not_have(adapter: WahaGateway) -> None:
    with pytest.raises(NotImplementedError):
        adapter.pull_messages()
    with pytest.raises(NotImplementedError):
        adapter.mark_processed("3A")
    assert adapter.buffer_overflowed(10_000) is False


# --- the webhook's configuration -----------------------------------------------------------------

OUR_URL = "https://dashboard.example/gateway/webhook"


def test_a_fresh_session_gets_our_webhook(standin: FakeWaha, adapter: WahaGateway) -> None:
    current = adapter.webhook_config()
    plan = adapter.webhook_plan(current, url=OUR_URL, secret="s3cret")
    adapter.apply_webhook(plan)

    assert current == {}
    assert plan == {
        "webhooks": [
            {
                "url": OUR_URL,
                "events": ["message.any", "message.ack", "session.status"],
                "hmac": {"key": "s3cret"},
                "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
            }
        ]
    }
    assert standin.config == plan == adapter.webhook_config()
    # Planned again on what is there: nothing to change.
    assert adapter.webhook_plan(adapter.webhook_config(), url=OUR_URL, secret="s3cret") == plan
    assert standin.calls()["update"] == 1


def test_the_plan_keeps_every_other_setting(standin: FakeWaha, adapter: WahaGateway) -> None:
    theirs = {
        "url": "https://crm.example/hook",
        "events": ["message"],
        "hmac": {"key": "crm-key"},
        "customHeaders": [{"name": "X-Crm", "value": "1"}],
    }
    ours_before = {
        "url": OUR_URL,
        "events": ["message", "message.any"],
        "hmac": {"key": "old-secret"},
        "retries": {"policy": "constant", "delaySeconds": 5, "attempts": 3},
        "customHeaders": [{"name": "X-Shop", "value": "7"}],
    }
    config = {
        "metadata": {"shop": "Karachi"},
        "proxy": {"server": "proxy.example:3128"},
        "noweb": {"store": {"enabled": True, "fullSync": False}},
        "webhooks": [theirs, ours_before],
    }
    with httpx.Client(
        base_url=standin.url, headers={"X-Api-Key": API_KEY}, trust_env=False
    ) as http:
        http.put("/api/sessions/default", json={"name": "default", "config": config})

    plan = adapter.webhook_plan(adapter.webhook_config(), url=OUR_URL, secret="s3cret")

    assert {k: v for k, v in plan.items() if k != "webhooks"} == {
        k: v for k, v in config.items() if k != "webhooks"
    }
    assert plan["webhooks"] == [
        theirs,
        {
            **ours_before,
            "events": ["message.any", "message.ack", "session.status"],
            "hmac": {"key": "s3cret"},
        },
    ]
    assert config["webhooks"][1]["hmac"] == {"key": "old-secret"}  # `current` left as it was


def test_after_applying_it_waha_posts_to_us_signed_with_our_secret(
    standin: FakeWaha, adapter: WahaGateway, waha_hook_receiver: HookReceiver, settings
) -> None:
    plan = adapter.webhook_plan(
        adapter.webhook_config(), url=waha_hook_receiver.url, secret=WEBHOOK_SECRET
    )
    adapter.apply_webhook(plan)  # restarts the session: its status events come to us

    standin.add_customer_message("Is the shop open?")

    assert waha_hook_receiver.events() == [
        "session.status",
        "session.status",
        "session.status",
        "message.any",
    ]
    item = _received(waha_hook_receiver, settings)
    assert (item.kind, item.message.text) == (EventKind.MESSAGE, "Is the shop open?")


def test_a_plan_needs_a_url_and_a_secret(adapter: WahaGateway) -> None:
    with pytest.raises(ValueError):
        adapter.webhook_plan({}, url=OUR_URL, secret="")
    with pytest.raises(ValueError):
        adapter.webhook_plan({}, url="", secret="s3cret")


def test_webhook_config_and_apply_without_an_answer_raise(standin: FakeWaha, adapter) -> None:
    standin.set_failure("session", "error500")
    with pytest.raises(GatewayUnavailable):
        adapter.webhook_config()
    standin.set_failure("update", "error500")
    with pytest.raises(GatewayUnavailable):
        adapter.apply_webhook({"webhooks": []})
    assert standin.config is None


# --- verify_webhook -------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _signed(body: dict, secret: str = WEBHOOK_SECRET) -> tuple[dict[str, str], bytes]:
    raw = serialize(body)
    return sign(raw, secret), raw


def _at(moment: datetime) -> dict:
    return session_event("WORKING") | {"timestamp": int(moment.timestamp() * 1000)}


def test_a_webhook_the_standin_posted_passes(
    standin: FakeWaha, hooks: HookReceiver, settings
) -> None:
    standin.add_customer_message("hi")

    item = _received(hooks, settings)  # verified on the headers as they arrived

    assert item.kind == EventKind.MESSAGE


@pytest.mark.parametrize("case", [str.lower, str.upper, lambda h: h])
def test_headers_in_any_letter_case(case: Callable[[str], str]) -> None:
    headers, raw = _signed(_at(NOW))

    waha_events.verify_webhook(
        {case(k): v for k, v in headers.items()}, raw, secret=WEBHOOK_SECRET, now=NOW
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(lambda h, b: ({}, b), "X-Webhook-Hmac: missing", id="no-signature"),
        pytest.param(
            lambda h, b: (sign(b, "another-secret"), b), "does not match", id="another-secret"
        ),
        pytest.param(
            lambda h, b: (h, b.replace(b'"WORKING"', b'"FAILED"')),
            "does not match",
            id="changed-body",
        ),
        pytest.param(
            lambda h, b: (h | {"X-Webhook-Hmac": h["X-Webhook-Hmac"][:-2]}, b),
            "does not match",
            id="cut-signature",
        ),
        pytest.param(
            lambda h, b: (h | {"X-Webhook-Hmac": "é" * 128}, b), "does not match", id="not-hex"
        ),
        pytest.param(
            lambda h, b: (h | {"X-Webhook-Hmac-Algorithm": "sha256"}, b),
            "expected sha512",
            id="sha256",
        ),
    ],
)
def test_a_missing_or_wrong_signature_is_401(change: Callable, words: str) -> None:
    headers, raw = change(*_signed(_at(NOW)))

    with pytest.raises(WebhookRefused) as caught:
        waha_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)

    assert caught.value.status == 401 and words in str(caught.value)
    assert WEBHOOK_SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("age", "passes"),
    [
        (timedelta(0), True),
        (timedelta(days=6), True),
        (DEDUPE_WINDOW - timedelta(minutes=1), True),
        (DEDUPE_WINDOW + timedelta(minutes=1), False),
        (timedelta(days=8), False),
    ],
)
def test_a_signed_body_older_than_the_dedupe_window_is_refused(
    age: timedelta, passes: bool
) -> None:
    headers, raw = _signed(_at(NOW - age))

    if passes:
        waha_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)
    else:
        with pytest.raises(WebhookRefused) as caught:
            waha_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)
        assert caught.value.status == 401 and "more than 7 days ago" in str(caught.value)


def test_the_timestamp_header_is_not_what_counts() -> None:
    # X-Webhook-Timestamp is not signed: only the body's own timestamp is trusted.
    headers, raw = _signed(_at(NOW - timedelta(days=8)))
    headers["X-Webhook-Timestamp"] = str(int(NOW.timestamp() * 1000))

    with pytest.raises(WebhookRefused):
        waha_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)


@pytest.mark.parametrize(
    "raw",
    [
        serialize({"event": "message", "session": "default", "engine": "WEBJS"}),
        serialize({"event": "message", "timestamp": "1764417600000"}),
    ],
)
def test_a_signed_body_without_its_own_time_passes_the_signature_and_is_a_400(
    raw: bytes, settings
) -> None:
    # Authentic (signed with our key) but not WAHA's shape: a 400 naming the place, not a 401.
    waha_events.verify_webhook(sign(raw, WEBHOOK_SECRET), raw, secret=WEBHOOK_SECRET, now=NOW)
    settings.GATEWAY_SESSION = "default"
    with pytest.raises(WebhookRefused) as caught:
        waha_events.parse_webhook(json.loads(raw), settings=settings)
    assert caught.value.status == 400


def test_the_package_refuses_webhooks_without_a_secret(fake_waha: FakeWaha, settings) -> None:
    headers, raw = _signed(_at(datetime.now(UTC)))
    whatsapp.verify_webhook(headers, raw, now=datetime.now(UTC))
    settings.GATEWAY_WEBHOOK_SECRET = ""
    with pytest.raises(WebhookRefused):
        whatsapp.verify_webhook(headers, raw, now=datetime.now(UTC))


# --- parse_webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_customers_message_on_the_old_watchers_keys(settings, engine: str) -> None:
    body = message_event(
        "Salaam <b>bold</b> 😀",
        name="Ayesha",
        engine=engine,
        short_id="3AFFB2355CA3FC5E89F7",
        timestamp=1764061200,
    )
    body["timestamp"] = 1764061201234

    item = _parse(body, settings)

    assert (item.kind, item.dedupe_key, item.event) == (EventKind.MESSAGE, body["id"], "message")
    assert item.payload == body
    message = item.message
    assert list(message.stored) == STORED_KEYS
    assert message.stored == {
        "id": "3AFFB2355CA3FC5E89F7",
        "from": CHAT,
        "fromName": "Ayesha",
        "body": "Salaam <b>bold</b> 😀",
        "timestamp": 1764061200,
        "isGroup": False,
        "chatName": "Ayesha",
        "type": "chat",
        "hasMedia": False,
        "receivedAt": "2025-11-25T09:00:01.234Z",
    }
    assert (message.id, message.chat, message.sender_name, message.text) == (
        "3AFFB2355CA3FC5E89F7",
        CHAT,
        "Ayesha",
        "Salaam <b>bold</b> 😀",
    )
    assert (message.is_group, message.from_me, message.media_kind) == (False, False, "")
    assert message.received_at == datetime(2025, 11, 25, 9, 0, 1, 234000, tzinfo=UTC)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "media", ["image", "video", "ptt", "audio", "document", "sticker", "location"]
)
def test_media_in_every_engine_is_its_kind(settings, engine: str, media: str) -> None:
    item = _parse(message_event("", media=media, engine=engine), settings)

    stored = item.message.stored
    assert (stored["type"], stored["body"], item.message.media_kind) == (media, "", media)
    assert stored["hasMedia"] is (media != "location")


def test_noweb_media_not_downloaded_is_still_media(settings) -> None:
    # NOWEB says hasMedia only when it downloaded the file.
    body = message_event("look", media="image", engine="NOWEB")
    body["payload"]["hasMedia"] = False

    stored = _parse(body, settings).message.stored

    assert (stored["type"], stored["hasMedia"], stored["body"]) == ("image", True, "look")


def test_a_media_message_known_only_by_its_mimetype(settings) -> None:
    body = message_event("", engine="NOWEB")
    body["payload"].update({"hasMedia": True, "media": {"mimetype": "video/mp4"}, "_data": {}})

    assert _parse(body, settings).message.stored["type"] == "video"


def test_a_wrapped_disappearing_voice_note(settings) -> None:
    body = message_event("", engine="NOWEB")
    body["payload"]["_data"]["message"] = {
        "ephemeralMessage": {"message": {"audioMessage": {"ptt": True}}}
    }

    assert _parse(body, settings).message.stored["type"] == "ptt"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_group_message_is_the_groups_chat(settings, engine: str) -> None:
    body = message_event(
        "hi all", sender=GROUP, name="Member", participant="923009990000@c.us", engine=engine
    )

    message = _parse(body, settings).message

    assert (message.chat, message.is_group, message.sender_name) == (GROUP, True, "Member")
    assert (message.stored["from"], message.stored["isGroup"]) == (GROUP, True)
    assert "chatName" not in message.stored  # WAHA does not send a group's subject
    assert message.id == body["payload"]["id"].split("_")[2]


@pytest.mark.parametrize("engine", ["NOWEB", "GOWS"])
def test_a_hidden_contact_is_answered_by_number_when_the_engine_gives_it(
    settings, engine: str
) -> None:
    message = _parse(message_event("hi", sender=LID, phone=NUMBER, engine=engine), settings).message

    assert (message.chat, message.stored["from"]) == (CHAT, CHAT)


def test_a_hidden_contact_without_a_number_stays_hidden(settings) -> None:
    message = _parse(message_event("hi", sender=LID), settings).message

    assert message.chat == LID and message.stored["from"] == LID


def test_a_number_with_a_device_is_the_number(settings) -> None:
    body = message_event("hi", sender=LID, engine="NOWEB")
    body["payload"]["_data"]["key"]["remoteJidAlt"] = f"{NUMBER}:3@s.whatsapp.net"

    assert _parse(body, settings).message.chat == CHAT


def test_a_status_update_is_a_message_the_inbox_knows_to_skip(settings) -> None:
    message = _parse(message_event("my status", sender="status@broadcast"), settings).message

    assert message.is_status_update


def test_an_echo_of_our_send(settings) -> None:
    body = message_event(TEXT, event="message.any", from_me=True, source="api", short_id="3EB0AA")

    item = _parse(body, settings)

    assert item.kind == EventKind.ECHO
    assert (item.echo.gateway_id, item.echo.chat, item.echo.text, item.echo.reply_id) == (
        "3EB0AA",
        CHAT,
        TEXT,
        "",
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_an_answer_from_the_phone(standin: FakeWaha, hooks: HookReceiver, settings, engine) -> None:
    standin.engine = engine
    payload = standin.answer_from_phone("On my way", CHAT)

    item = _received(hooks, settings)

    assert item.kind == EventKind.FROM_PHONE
    message = item.message
    assert (message.from_me, message.chat, message.text) == (True, CHAT, "On my way")
    assert message.id == payload["id"].split("_")[2]
    assert message.received_at == datetime.fromtimestamp(payload["timestamp"], UTC)


def test_a_message_of_ours_without_a_source_is_not_guessed(settings) -> None:
    item = _parse(message_event(TEXT, event="message.any", from_me=True), settings)

    assert item.kind == EventKind.IGNORED and "does not say" in item.note


@pytest.mark.parametrize(
    ("ack_name", "kind"),
    [
        ("ERROR", EventKind.DELIVERY_FAILED),
        ("PENDING", EventKind.DELIVERED),
        ("SERVER", EventKind.DELIVERED),
        ("DEVICE", EventKind.DELIVERED),
        ("READ", EventKind.DELIVERED),
        ("PLAYED", EventKind.DELIVERED),
    ],
)
def test_acks_of_our_messages(settings, ack_name: str, kind: EventKind) -> None:
    item = _parse(ack_event("3EB0AA", ack_name=ack_name), settings)

    assert item.kind == kind
    if kind == EventKind.DELIVERY_FAILED:
        assert (item.failure.gateway_id, item.failure.code, item.failure.reply_id) == (
            "3EB0AA",
            "ERROR",
            "",
        )


def test_an_ack_by_number_only(settings) -> None:
    body = ack_event("3EB0AA")
    del body["payload"]["ackName"]

    assert _parse(body, settings).kind == EventKind.DELIVERY_FAILED


def test_an_ack_of_a_customers_message_is_ignored(settings) -> None:
    assert (
        _parse(ack_event("3A11", ack_name="READ", from_me=False), settings).kind
        == EventKind.IGNORED
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("WORKING", State.READY),
        ("STARTING", State.STARTING),
        ("SCAN_QR_CODE", State.NEEDS_QR),
        ("STOPPED", State.DISCONNECTED),
        ("FAILED", State.FAILED),
        ("PASSKEY_REQUIRED", State.NEEDS_PAIRING),
        ("SOMETHING_NEW", State.UNKNOWN),
    ],
)
def test_session_events_map_as_the_status_does(settings, status: str, state: State) -> None:
    item = _parse(session_event(status), settings)

    assert item.kind == EventKind.SESSION
    assert item.status == waha.session_status(status)
    assert (item.status.state, item.status.code) == (state, status)


def test_a_passkey_confirmation_names_the_code_to_check(settings) -> None:
    item = _parse(session_event("PASSKEY_CONFIRMATION_REQUIRED", data={"code": "1234"}), settings)

    assert item.status.state == State.NEEDS_PAIRING and "1234" in item.status.reason


def test_the_standins_session_events_as_they_arrive(standin: FakeWaha, hooks, settings) -> None:
    standin.set_status("FAILED")

    item = _received(hooks, settings)

    assert (item.kind, item.status.state) == (EventKind.SESSION, State.FAILED)


@pytest.mark.parametrize(
    ("body", "note"),
    [
        pytest.param(
            envelope("presence.update", {"id": CHAT}), "'presence.update'", id="unknown-event"
        ),
        pytest.param(
            message_event("hi", session="other-shop"), "'other-shop'", id="another-session"
        ),
        pytest.param(
            message_event("news", sender="120363000000000000@newsletter"), "channel", id="channel"
        ),
        pytest.param(
            envelope("message.reaction", "not even an object"),  # type: ignore[arg-type]
            "not used",
            id="unused-with-any-payload",
        ),
    ],
)
def test_well_formed_events_we_do_not_use_are_ignored_with_a_note(
    settings, body: dict, note: str
) -> None:
    item = _parse(body, settings)

    assert (item.kind, item.dedupe_key) == (EventKind.IGNORED, body["id"])
    assert note in item.note
    assert item.message is item.echo is item.failure is item.status is None


def test_a_whatsapp_notice_is_not_a_message(settings) -> None:
    body = message_event("")
    body["payload"]["_data"]["type"] = "e2e_notification"

    assert _parse(body, settings).kind == EventKind.IGNORED


def test_every_secret_is_dropped_from_what_is_stored(settings) -> None:
    body = message_event("hi")
    body["apikey"] = "instance-token"
    body["payload"]["_data"]["nested"] = [{"APIKEY": "again", "kept": 1}]

    item = _parse(body, settings)

    assert "instance-token" not in serialize(item.payload).decode()
    assert "again" not in serialize(item.payload).decode()
    assert item.payload["payload"]["_data"]["nested"] == [{"kept": 1}]
    assert {k: v for k, v in body.items() if k != "apikey"}.keys() == item.payload.keys()


def _without(path: str) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def change(body: dict) -> None:
        target = body
        for key in parents:
            target = target[key]
        del target[last]

    return change


def _set(path: str, value: object) -> Callable[[dict], None]:
    *parents, last = path.split(".")

    def change(body: dict) -> None:
        target = body
        for key in parents:
            target = target[key]
        target[last] = value

    return change


@pytest.mark.parametrize(
    ("make", "change", "place"),
    [
        (message_event, _without("id"), "id: missing"),
        (message_event, _set("event", 5), "event: expected a non-empty string"),
        (message_event, _without("session"), "session: missing"),
        (message_event, _set("timestamp", "now"), "timestamp: expected"),
        (message_event, _set("payload", [1]), "payload: expected an object"),
        (message_event, _without("payload.from"), "payload.from: missing"),
        (message_event, _set("payload.id", 42), "payload.id: expected a non-empty string"),
        (message_event, _without("payload.fromMe"), "payload.fromMe: expected true or false"),
        (message_event, _set("payload.body", {"text": "hi"}), "payload.body: expected a string"),
        (message_event, _set("payload.timestamp", "yesterday"), "payload.timestamp: expected"),
        (
            message_event,
            _set("payload.hasMedia", "yes"),
            "payload.hasMedia: expected true or false",
        ),
        (lambda: session_event("WORKING"), _without("payload.status"), "payload.status: missing"),
        (lambda: ack_event("3EB0AA"), _without("payload.id"), "payload.id: missing"),
        (
            lambda: ack_event("3EB0AA"),
            lambda b: b["payload"].pop("ackName") and b["payload"].pop("ack"),
            "payload.ackName: expected one of ERROR",
        ),
    ],
)
def test_a_body_of_the_wrong_shape_is_400_naming_the_place(
    settings, make: Callable[[], dict], change: Callable[[dict], None], place: str
) -> None:
    body = make()
    change(body)

    with pytest.raises(WebhookRefused) as caught:
        _parse(body, settings)

    assert caught.value.status == 400
    assert str(caught.value).startswith(place)


def test_a_body_that_is_not_an_object_is_400(settings) -> None:
    with pytest.raises(WebhookRefused, match="^body: expected a JSON object"):
        waha_events.parse_webhook([1, 2], settings=settings)


def test_a_null_body_and_a_numeric_string_time_are_fine(settings) -> None:
    # NOWEB gives no body for media without a caption, and its longs as strings.
    body = message_event("", media="sticker", engine="NOWEB")
    body["payload"]["body"] = None
    body["payload"]["timestamp"] = "1764061200"

    stored = _parse(body, settings).message.stored

    assert (stored["body"], stored["timestamp"]) == ("", 1764061200)


# --- the factory, the settings and the secrets ---------------------------------------------------


def test_the_factory_gives_the_waha_adapter_from_the_settings(standin: FakeWaha) -> None:
    with whatsapp.gateway(status_timeout=TIMEOUT, send_timeout=TIMEOUT) as gateway:
        assert isinstance(gateway, WahaGateway)
        assert (gateway.kind, gateway.address) == ("waha", f"{standin.url} (session default)")
        assert gateway.status().ready
        assert gateway.send(CHAT, TEXT).ok
    assert whatsapp.kind() == "waha" and whatsapp.traits() == waha.TRAITS
    assert whatsapp.address() == f"{standin.url} (session default)"


def test_the_package_dispatches_webhooks_to_waha(fake_waha: FakeWaha) -> None:
    body = message_event("hi") | {"timestamp": int(time.time() * 1000)}
    headers, raw = _signed(body)

    whatsapp.verify_webhook(headers, raw, now=datetime.now(UTC))
    [item] = whatsapp.parse_webhook(parse_json(raw))

    assert item.kind == EventKind.MESSAGE
    with pytest.raises(WebhookRefused):
        whatsapp.challenge({"hub.mode": "subscribe"})


def test_the_key_is_sent_and_never_shown() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"key": {"id": "3EB0AA"}})

    gateway = WahaGateway(
        "http://user:pw@waha.test:3000/", api_key="the-key", transport=httpx.MockTransport(answer)
    )
    assert gateway.send(CHAT, TEXT) == SendOutcome.sent("3EB0AA")
    assert seen[0].headers["X-Api-Key"] == "the-key"
    assert seen[0].url.path == "/api/sendText"
    assert parse_json(seen[0].content) == {"session": "default", "chatId": CHAT, "text": TEXT}
    assert gateway.address == "http://waha.test:3000 (session default)"
    for shown in (gateway.address, repr(gateway)):
        assert "the-key" not in shown and "pw" not in shown


def test_the_adapter_ignores_a_proxy_from_the_environment(
    standin: FakeWaha, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would turn a refused connection (not sent) into a 502 (maybe sent).
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with WahaGateway(standin.url, api_key=API_KEY, send_timeout=TIMEOUT) as gateway:
        assert gateway.send(CHAT, TEXT).ok


def test_the_standin_signs_as_wahas_documented_example() -> None:
    # WAHA's docs: this body, signed with this key, gives this X-Webhook-Hmac.
    raw = b'{"event":"message","session":"default","engine":"WEBJS"}'
    assert sign(raw, "my-secret-key")["X-Webhook-Hmac"] == (
        "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8"
        "097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89"
    )


def test_a_list_in_an_error_answer_is_no_chat() -> None:
    # Only a 200 lists a chat's messages; a proxy's 502 is no answer whatever its body.
    transport = httpx.MockTransport(lambda request: httpx.Response(502, json=[]))
    with WahaGateway("http://waha.test", api_key=API_KEY, transport=transport) as gateway:
        with pytest.raises(GatewayUnavailable, match="HTTP 502"):
            gateway.read_back(CHAT, datetime.now(UTC))
