"""The wwebjs adapter against the real stand-in over HTTP: every answer of GATEWAY.md section 1, classified.

No database, no mocks: `WwebjsStandin` on 127.0.0.1 answers exactly as the
scripts' whatsapp-web.js + Express service does, and the adapter turns each
answer into the common model (`statecore.whatsapp.model`). Each table row is
one answer of the service; the class it gets is the point of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from statecore import whatsapp
from statecore.statefile.columns import reply_address
from statecore.whatsapp import wwebjs
from statecore.whatsapp.model import (
    Account,
    GatewayUnavailable,
    Next,
    SendOutcome,
    Sent,
    State,
)
from statecore.whatsapp.standin_wwebjs import BUFFER_SIZE, DEFAULT_ACCOUNT
from statecore.whatsapp.wwebjs import WwebjsGateway

if TYPE_CHECKING:
    from tests.fake_gateway import FakeGateway

NUMBER = "923001234567"
ADDRESS = f"{NUMBER}@c.us"
TEXT = "Your order is ready"
QR = "2@AbCdEf+/=,noise==,identity==,secret=="
# Short, so a "hang" costs half a second; the stand-in hangs for a minute (released at stop).
TIMEOUT = 0.5


@pytest.fixture
def standin(fake_gateway: FakeGateway) -> FakeGateway:
    return fake_gateway


@pytest.fixture
def adapter(standin: FakeGateway) -> Iterator[WwebjsGateway]:
    with WwebjsGateway(standin.url, status_timeout=TIMEOUT, send_timeout=TIMEOUT) as gateway:
        yield gateway


def _down(standin: FakeGateway) -> None:
    standin.set_send_mode("down")  # server-wide: the port refuses every connection


# --- GET /status -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "state", "code", "qr", "logged_out"),
    [
        pytest.param(lambda s: None, State.READY, "isReady", "", False, id="ready"),
        # isReady false alone does not mean a scan is needed (GATEWAY.md).
        pytest.param(
            lambda s: s.go_not_ready(),
            State.DISCONNECTED,
            "isReady=false",
            "",
            False,
            id="not-ready-no-qr",
        ),
        pytest.param(lambda s: s.show_qr(QR), State.NEEDS_QR, "hasQR", QR, True, id="qr"),
        pytest.param(
            lambda s: s.set_status_failure("error500"),
            State.UNKNOWN,
            "HTTP 500",
            "",
            False,
            id="error500",
        ),
        pytest.param(
            lambda s: s.set_status_failure("garbage"),
            State.UNKNOWN,
            "HTTP 200",
            "",
            False,
            id="garbage",
        ),
    ],
)
def test_status_answers_are_classified(
    standin: FakeGateway,
    adapter: WwebjsGateway,
    setup: Callable[[FakeGateway], object],
    state: State,
    code: str,
    qr: str,
    logged_out: bool,
) -> None:
    setup(standin)

    status = adapter.status()

    assert (status.state, status.code, status.qr, status.logged_out) == (
        state,
        code,
        qr,
        logged_out,
    )
    assert status.ready is (state == State.READY)
    assert status.needs_login is (state == State.NEEDS_QR)
    assert status.reason  # always a sentence a person can read
    assert standin.calls()["status"] == 1


@pytest.mark.parametrize(
    ("failure", "words"),
    [("error500", "HTTP 500 Internal server error"), ("garbage", "HTTP 200 '<html><body>Gateway")],
)
def test_a_broken_status_answer_is_said_in_words(
    standin: FakeGateway, adapter: WwebjsGateway, failure: str, words: str
) -> None:
    standin.set_status_failure(failure)

    assert words in adapter.status().reason


def test_not_ready_without_a_qr_says_so_in_words(standin: FakeGateway, adapter) -> None:
    standin.go_not_ready()

    status = adapter.status()

    assert "not ready" in status.reason
    assert "QR" not in status.reason


def test_the_qr_is_the_exact_string_and_follows_a_renewal(standin: FakeGateway, adapter) -> None:
    first = standin.renew_qr()
    assert adapter.status().qr == first

    second = standin.renew_qr()
    assert second != first
    assert adapter.status().qr == second

    standin.scan()
    after = adapter.status()
    assert (after.state, after.qr) == (State.READY, "")


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_status_failure("drop"), id="drop"),
        pytest.param(lambda s: s.set_status_failure("hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_status_without_an_answer_raises_gateway_unavailable(
    standin: FakeGateway, adapter: WwebjsGateway, setup: Callable[[FakeGateway], object]
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable) as caught:
        adapter.status()

    assert f"{standin.url}/status" in str(caught.value)


def test_status_at_a_wrong_address_is_unknown_not_ready_or_not(standin: FakeGateway) -> None:
    with WwebjsGateway(standin.url + "/nowhere", status_timeout=TIMEOUT) as wrong:
        status = wrong.status()

    assert (status.state, status.code) == (State.UNKNOWN, "HTTP 404")


# --- GET /info ------------------------------------------------------------------------


def test_info_when_ready_is_the_account(standin: FakeGateway, adapter: WwebjsGateway) -> None:
    standin.set_account(number="923009998877", name="Shop ✓", platform="iphone")

    assert adapter.account() == Account(number="923009998877", name="Shop ✓", platform="iphone")


def test_info_of_the_default_account_keeps_its_three_fields(adapter: WwebjsGateway) -> None:
    assert adapter.account().as_dict() == DEFAULT_ACCOUNT


def test_info_when_not_ready_is_none(standin: FakeGateway, adapter: WwebjsGateway) -> None:
    standin.go_not_ready()

    assert adapter.account() is None
    assert standin.calls()["info"] == 1


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_info_failure("error500"), id="error500"),
        pytest.param(lambda s: s.set_info_failure("garbage"), id="garbage"),
        pytest.param(lambda s: s.set_info_failure("drop"), id="drop"),
        pytest.param(lambda s: s.set_info_failure("hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_info_failures_raise_gateway_unavailable(
    standin: FakeGateway, adapter: WwebjsGateway, setup: Callable[[FakeGateway], object]
) -> None:
    setup(standin)

    with pytest.raises(GatewayUnavailable):
        adapter.account()


# --- POST /send -----------------------------------------------------------------------


def test_a_sent_message_keeps_the_short_message_id_as_given(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    outcome = adapter.send(ADDRESS, "Salaam, ünïcode ✓", reply_id="reply_1")

    [call] = standin.sends
    assert outcome == SendOutcome.sent(call.message_id)
    assert outcome.ok and outcome.next is None
    # What the service received: the digits and the text as given.
    assert (call.number, call.message, call.chat_id) == (NUMBER, "Salaam, ünïcode ✓", ADDRESS)
    assert call.delivered


def test_a_bare_number_is_sent_as_it_is(standin: FakeGateway, adapter: WwebjsGateway) -> None:
    assert adapter.send(NUMBER, TEXT).ok

    assert [call.chat_id for call in standin.sends] == [ADDRESS]


@pytest.mark.parametrize(
    ("setup", "text", "kind", "next_", "words", "delivered"),
    [
        # 400 "WhatsApp client is not ready": the check runs before any send.
        pytest.param(
            lambda s: s.go_not_ready(),
            TEXT,
            Sent.NOT_SENT,
            Next.HOLD,
            "WhatsApp client is not ready",
            [False],
            id="400-not-ready",
        ),
        pytest.param(
            lambda s: s.set_send_mode("not_ready"),
            TEXT,
            Sent.NOT_SENT,
            Next.HOLD,
            "WhatsApp client is not ready",
            [False],
            id="400-not-ready-mode",
        ),
        # 400 "Missing required fields": refused before anything else; the stand-in
        # records no send for it.
        pytest.param(
            lambda s: None,
            "",
            Sent.NOT_SENT,
            Next.FINAL,
            "Missing required fields",
            [],
            id="400-missing-fields",
        ),
        # 400 "Failed to send message: ...": sendMessage threw, it may have reached WhatsApp.
        pytest.param(
            lambda s: s.set_send_mode("send_failed"),
            TEXT,
            Sent.MAYBE_SENT,
            None,
            "Failed to send message",
            [True],
            id="400-failed-to-send",
        ),
        pytest.param(
            lambda s: s.set_send_mode("error500"),
            TEXT,
            Sent.MAYBE_SENT,
            None,
            "HTTP 500",
            [True],
            id="500",
        ),
        pytest.param(
            lambda s: s.set_send_mode("garbage"),
            TEXT,
            Sent.MAYBE_SENT,
            None,
            "Gateway says hi",
            [True],
            id="garbage",
        ),
        pytest.param(
            lambda s: s.set_send_mode("drop"),
            TEXT,
            Sent.MAYBE_SENT,
            None,
            "broke off",
            [True],
            id="drop",
        ),
        pytest.param(
            lambda s: s.set_send_mode("hang"),
            TEXT,
            Sent.MAYBE_SENT,
            None,
            f"did not answer within {TIMEOUT:g} s",
            [True],
            id="hang",
        ),
        # A refused connection never reached the service.
        pytest.param(_down, TEXT, Sent.NOT_SENT, Next.RETRY, "unreachable", [], id="down"),
    ],
)
def test_send_answers_are_classified(
    standin: FakeGateway,
    adapter: WwebjsGateway,
    setup: Callable[[FakeGateway], object],
    text: str,
    kind: Sent,
    next_: Next | None,
    words: str,
    delivered: list[bool],
) -> None:
    setup(standin)

    outcome = adapter.send(ADDRESS, text)

    assert (outcome.kind, outcome.next, outcome.message_id) == (kind, next_, "")
    assert words in outcome.error
    assert not outcome.ok
    assert [call.delivered for call in standin.sends] == delivered


def test_a_wrong_path_is_a_config_problem_not_a_maybe(standin: FakeGateway) -> None:
    # api_endpoint at a prefix the service does not serve: Express's own 404 page.
    with WwebjsGateway(standin.url.replace("/api/whatsapp", "/api/whatsap")) as wrong:
        outcome = wrong.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert "404" in outcome.error and "Cannot POST" in outcome.error
    assert standin.sends == []


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(200, json={}), id="200-empty-object"),
        pytest.param(httpx.Response(200, json={"success": False}), id="200-success-false"),
        pytest.param(httpx.Response(200, json=[{"success": True}]), id="200-a-list"),
    ],
)
def test_a_200_that_is_not_the_services_success_may_have_sent(answer: httpx.Response) -> None:
    # Answers the service never gives (something else at its address did): not "sent".
    transport = httpx.MockTransport(lambda request: answer)
    with WwebjsGateway("http://gateway.test/api/whatsapp", transport=transport) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert outcome.kind == Sent.MAYBE_SENT


def test_a_not_ready_send_then_a_ready_one(standin: FakeGateway, adapter: WwebjsGateway) -> None:
    standin.queue_send_modes("not_ready", "ok")

    first, second = adapter.send(ADDRESS, TEXT), adapter.send(ADDRESS, TEXT)

    assert (first.kind, first.next) == (Sent.NOT_SENT, Next.HOLD)
    assert second.ok and second.message_id == standin.delivered()[0].message_id
    assert len(standin.delivered()) == 1


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("120363025246125888@g.us", "cannot reach a group"),
        ("24816190603455@lid", "number is hidden"),
        ("status@broadcast", "Status update cannot be answered"),
        ("status", "is not a phone number"),
        ("", "is not a phone number"),
        ("+ -@c.us", "is not a phone number"),
    ],
)
def test_an_address_this_service_cannot_reach_is_refused_before_send(
    standin: FakeGateway, adapter: WwebjsGateway, address: str, words: str
) -> None:
    outcome = adapter.send(address, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert words in outcome.error
    assert standin.calls()["send"] == 0
    assert standin.sends == []


# --- cannot_reach and reply_address (pure) ------------------------------------------------


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (ADDRESS, ""),
        (NUMBER, ""),
        ("+92 300 1234567", ""),
        ("923001234567@s.whatsapp.net", ""),
        ("120363025246125888@g.us", "cannot reach a group"),
        ("24816190603455@lid", "cannot reach a contact whose number is hidden"),
        ("status@broadcast", "a Status update cannot be answered"),
        ("status", "'status' is not a phone number"),
        ("", "'' is not a phone number"),
        ("shop@c.us", "is not a phone number"),
    ],
)
def test_cannot_reach(settings, address: str, words: str) -> None:
    why = wwebjs.cannot_reach(address)
    assert (words in why) if words else (why == "")
    # The package's function asks the configured kind's adapter: the same answer.
    settings.GATEWAY_KIND = "wwebjs"
    assert whatsapp.cannot_reach(address) == wwebjs.cannot_reach(address)
    assert WwebjsGateway.cannot_reach(address) == wwebjs.cannot_reach(address)


def test_cannot_reach_names_a_long_address_briefly() -> None:
    assert len(wwebjs.cannot_reach("x" * 5000)) < 100


@pytest.mark.parametrize(
    ("recipient", "original_sender", "address"),
    [
        # The old assistant cut the @ part off: the original message says what it was.
        (NUMBER, ADDRESS, ADDRESS),
        ("120363025246125888", "120363025246125888@g.us", "120363025246125888@g.us"),
        ("24816190603455", "24816190603455@lid", "24816190603455@lid"),
        ("status", "status@broadcast", "status@broadcast"),
        # Otherwise the recipient as it is.
        (NUMBER, "", NUMBER),
        (NUMBER, "923009999999@c.us", NUMBER),
        (ADDRESS, "120363025246125888@g.us", ADDRESS),
        ("24816190603455@lid", ADDRESS, "24816190603455@lid"),
    ],
)
def test_reply_address(recipient: str, original_sender: str, address: str) -> None:
    assert reply_address(recipient, original_sender) == address


@pytest.mark.parametrize(
    ("recipient", "original_sender", "reachable"),
    [
        (NUMBER, ADDRESS, True),
        # Bare digits that look like a number, yet the chat was a group or a hidden contact.
        ("120363025246125888", "120363025246125888@g.us", False),
        ("24816190603455", "24816190603455@lid", False),
        ("status", "status@broadcast", False),
    ],
)
def test_a_reply_to_bare_digits_is_judged_by_the_chat_it_answers(
    recipient: str, original_sender: str, reachable: bool
) -> None:
    assert (wwebjs.cannot_reach(reply_address(recipient, original_sender)) == "") is reachable


# --- GET /messages?unprocessed=true and POST /messages/<id>/processed ---------------------


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


def test_pull_messages_returns_each_object_on_the_old_watchers_keys_as_given(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    given = [
        standin.add_customer_message(
            "Salaam <b>bold</b> 😀", name="Ayesha", id="3AFFB2355CA3FC5E89F7", timestamp=1764061200
        ),
        standin.add_customer_message(
            "", sender="923001112223@c.us", type="image", has_media=True, name="Bilal"
        ),
        standin.add_customer_message("Hi all", sender="120363025246125888@g.us", name="Member"),
        standin.add_customer_message("Hidden", sender="24816190603455@lid", name="Hidden"),
        standin.add_customer_message("My status", sender="status@broadcast", name="Friend"),
    ]

    pulled = adapter.pull_messages()

    # Exactly as given, on the old watcher's keys ("processed" is the service's own).
    assert [message.stored for message in pulled] == [
        {key: item[key] for key in STORED_KEYS} for item in given
    ]
    assert [list(message.stored) for message in pulled] == [STORED_KEYS] * len(given)
    text, media, group, hidden, status_update = pulled
    assert (text.id, text.chat, text.sender_name, text.text) == (
        "3AFFB2355CA3FC5E89F7",
        ADDRESS,
        "Ayesha",
        "Salaam <b>bold</b> 😀",
    )
    assert text.stored["timestamp"] == 1764061200
    assert [m.media_kind for m in pulled] == ["", "image", "", "", ""]
    assert (media.text, media.stored["body"], media.stored["hasMedia"]) == ("", "", True)
    assert [m.is_group for m in pulled] == [False, False, True, False, False]
    assert [m.is_status_update for m in pulled] == [False, False, False, False, True]
    assert hidden.chat == "24816190603455@lid"
    assert group.stored["chatName"] == "Stand-in group"
    assert not any(m.from_me for m in pulled)
    assert standin.processed_ids() == []  # pulling marks nothing


def test_pull_messages_leaves_out_processed_ones(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    first = standin.add_customer_message("first")
    second = standin.add_customer_message("second")
    adapter.mark_processed(first["id"])

    assert [m.id for m in adapter.pull_messages()] == [second["id"]]


def test_an_empty_buffer_is_no_messages(adapter: WwebjsGateway) -> None:
    assert adapter.pull_messages() == []


def test_an_item_without_an_id_is_skipped_and_the_rest_kept(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    standin.add_customer_message("no id", id="")
    kept = standin.add_customer_message("kept")

    assert [m.id for m in adapter.pull_messages()] == [kept["id"]]


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_messages_failure("error500"), id="error500"),
        pytest.param(lambda s: s.set_messages_failure("garbage"), id="garbage"),
        pytest.param(lambda s: s.set_messages_failure("drop"), id="drop"),
        pytest.param(lambda s: s.set_messages_failure("hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_pull_messages_failures_raise_gateway_unavailable(
    standin: FakeGateway, adapter: WwebjsGateway, setup: Callable[[FakeGateway], object]
) -> None:
    standin.add_customer_message("waiting")
    setup(standin)

    with pytest.raises(GatewayUnavailable):
        adapter.pull_messages()


def test_pull_messages_at_a_wrong_address_raises(standin: FakeGateway) -> None:
    with WwebjsGateway(standin.url + "/nowhere", status_timeout=TIMEOUT) as wrong:
        with pytest.raises(GatewayUnavailable, match="404"):
            wrong.pull_messages()


def test_mark_processed_marks_it_on_the_service(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    message = standin.add_customer_message("mark me")

    assert adapter.mark_processed(message["id"]) is None

    assert standin.processed_ids() == [message["id"]]
    assert standin.calls()["processed"] == 1


def test_mark_processed_of_a_message_the_service_no_longer_holds_is_fine(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    # 404 {"error": "Message not found"}: it fell off the buffer (or the service restarted).
    adapter.mark_processed("3AGONE")

    assert standin.calls()["processed"] == 1


def test_mark_processed_quotes_an_id_with_odd_characters(
    standin: FakeGateway, adapter: WwebjsGateway
) -> None:
    message = standin.add_customer_message("odd id", id="3A/B C?#")

    adapter.mark_processed(message["id"])

    assert standin.processed_ids() == ["3A/B C?#"]


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda s: s.set_messages_failure("error500"), id="error500"),
        pytest.param(lambda s: s.set_messages_failure("garbage"), id="garbage"),
        pytest.param(lambda s: s.set_messages_failure("drop"), id="drop"),
        pytest.param(lambda s: s.set_messages_failure("hang"), id="hang"),
        pytest.param(_down, id="down"),
    ],
)
def test_mark_processed_failures_raise_gateway_unavailable(
    standin: FakeGateway, adapter: WwebjsGateway, setup: Callable[[FakeGateway], object]
) -> None:
    message = standin.add_customer_message("mark me")
    setup(standin)

    with pytest.raises(GatewayUnavailable):
        adapter.mark_processed(message["id"])

    assert standin.processed_ids() == []


def test_mark_processed_at_a_wrong_address_raises(standin: FakeGateway) -> None:
    # Express's "Cannot POST" page is not the service's "Message not found".
    message = standin.add_customer_message("mark me")
    with WwebjsGateway(standin.url + "/nowhere", status_timeout=TIMEOUT) as wrong:
        with pytest.raises(GatewayUnavailable, match="404"):
            wrong.mark_processed(message["id"])


@pytest.mark.parametrize(
    ("count", "overflowed"), [(0, False), (BUFFER_SIZE - 1, False), (BUFFER_SIZE, True)]
)
def test_buffer_overflowed_at_the_services_100(count: int, overflowed: bool) -> None:
    assert wwebjs.BUFFER_SIZE == BUFFER_SIZE == 100
    assert WwebjsGateway.buffer_overflowed(count) is overflowed


def test_a_full_buffer_is_seen_as_overflowed(standin: FakeGateway, adapter: WwebjsGateway) -> None:
    given = [standin.add_customer_message(f"m{n}") for n in range(BUFFER_SIZE + 3)]

    pulled = adapter.pull_messages()

    assert [m.id for m in pulled] == [m["id"] for m in given[3:]]
    assert adapter.buffer_overflowed(len(pulled))


# --- the factory ---------------------------------------------------------------------------


def test_the_factory_gives_the_wwebjs_adapter_at_api_endpoint(db, standin: FakeGateway) -> None:
    from tests.session_helpers import use_gateway

    use_gateway(standin.url + "/")

    with whatsapp.gateway(status_timeout=TIMEOUT, send_timeout=TIMEOUT) as gateway:
        assert (gateway.kind, gateway.traits.can_pull, gateway.address) == (
            "wwebjs",
            True,
            standin.url,
        )
        assert gateway.status().ready
        assert gateway.send(ADDRESS, TEXT).ok
    assert whatsapp.kind() == "wwebjs"
    assert whatsapp.address() == standin.url + "/"


def test_the_adapter_ignores_a_proxy_from_the_environment(
    standin: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would turn a refused connection (not sent) into a 502 (maybe sent).
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with WwebjsGateway(standin.url, send_timeout=TIMEOUT) as gateway:
        assert gateway.send(ADDRESS, TEXT).ok
