"""The cloud adapter against the real stand-in over HTTP: every answer of GATEWAY.md section 4.

No database, no mocks of our own code: `CloudStandin` on 127.0.0.1 answers as
Meta's Graph API does and posts Meta's webhooks, signed, to a plain loopback
receiver; the adapter turns each answer and each delivery into the common
model. A few answers the real API never gives (something else at its address)
come from httpx's MockTransport.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from statecore import whatsapp
from statecore.statefile.parse import parse_json
from statecore.statefile.rules import validate_message
from statecore.whatsapp import cloud, cloud_events
from statecore.whatsapp.cloud import (
    TOKEN_EXPIRED_TEXT,
    TOO_LONG_TEXT,
    WINDOW_CLOSED_TEXT,
    CloudGateway,
)
from statecore.whatsapp.model import (
    Account,
    EventKind,
    GatewayUnavailable,
    Next,
    Sent,
    State,
    WebhookRefused,
)
from statecore.whatsapp.standin_cloud import (
    build_contact,
    build_event,
    build_message,
    build_status,
    message_event,
    new_wamid,
    phone_echo_event,
    session_event,
    sign,
    status_event,
)
from tests.fake_cloud import API_KEY, VERIFY_TOKEN, WEBHOOK_SECRET

if TYPE_CHECKING:
    from tests.fake_cloud import FakeCloud, WebhookReceiver

NUMBER = "923001234567"
ADDRESS = f"{NUMBER}@c.us"
TEXT = "Your order is ready"
# Short, so a "hang" costs half a second; the stand-in hangs for a minute (released at stop).
TIMEOUT = 0.5
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Settings:
    """The two settings parse_webhook reads."""

    GATEWAY_PHONE_NUMBER_ID = "106540352242922"


@pytest.fixture
def standin(fake_cloud: FakeCloud) -> FakeCloud:
    return fake_cloud


@pytest.fixture
def adapter(standin: FakeCloud) -> Iterator[CloudGateway]:
    with _adapter(standin) as gateway:
        yield gateway


@pytest.fixture
def posted(standin: FakeCloud, cloud_receiver: WebhookReceiver) -> WebhookReceiver:
    """The stand-in's webhooks land in the receiver."""
    standin.webhook_url = cloud_receiver.url
    return cloud_receiver


def _adapter(standin: FakeCloud, **overrides: str) -> CloudGateway:
    options = {"api_key": API_KEY, "phone_number_id": standin.phone_number_id, **overrides}
    return CloudGateway(standin.url, status_timeout=TIMEOUT, send_timeout=TIMEOUT, **options)


def _mocked(answer: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> CloudGateway:
    handler = answer if callable(answer) else (lambda request: answer)
    return CloudGateway(
        "https://graph.test/v23.0",
        api_key=API_KEY,
        phone_number_id="106540352242922",
        transport=httpx.MockTransport(handler),
    )


def _graph_error(code: int, message: str = "(#1) Something", **extra: object) -> dict:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


def _items(body: dict) -> list:
    return cloud_events.parse_webhook(body, settings=Settings)


def _arrived(receiver: WebhookReceiver, count: int = 1) -> list:
    """The items of the first `count` deliveries, each verified and parsed as the endpoint would."""
    items = []
    for request in receiver.wait_for_posts(count):
        cloud_events.verify_webhook(request.headers, request.body, secret=WEBHOOK_SECRET, now=NOW)
        items += _items(parse_json(request.body))
    return items


# --- the health check and the account -----------------------------------------------------


def test_a_working_number_is_ready_with_its_name_number_and_quality(
    standin: FakeCloud, adapter: CloudGateway
) -> None:
    status = adapter.status()

    assert (status.state, status.code, status.qr, status.pairing_code) == (
        State.READY,
        "GREEN",
        "",
        "",
    )
    assert status.ready and not status.needs_login and not status.logged_out
    assert status.reason == "the Cloud API answers for Stand-in shop (+923009876543), quality GREEN"
    assert standin.calls() == {"status": 1}


def test_the_account_is_the_business_number_in_digits_and_its_verified_name(
    standin: FakeCloud, adapter: CloudGateway
) -> None:
    standin.set_account(number="+92 321 555-0000", name="Shop ✓ <b>", quality="RED")

    assert adapter.account() == Account(number="923215550000", name="Shop ✓ <b>")
    assert "quality RED" in adapter.status().reason


@pytest.mark.parametrize(
    ("setup", "overrides", "reason", "code"),
    [
        pytest.param(lambda s: s.expire_token(), {}, TOKEN_EXPIRED_TEXT, "190", id="expired"),
        pytest.param(
            lambda s: None, {"api_key": "wrong"}, TOKEN_EXPIRED_TEXT, "190", id="wrong-key"
        ),
        pytest.param(
            lambda s: None,
            {"phone_number_id": "555666777"},
            "the Cloud API knows no phone number id 555666777 for this access token: "
            "check GATEWAY_PHONE_NUMBER_ID",
            "100",
            id="wrong-phone-number-id",
        ),
        pytest.param(
            lambda s: None,
            {"api_key": ""},
            "no access token was sent: set GATEWAY_API_KEY",
            "104",
            id="no-key",
        ),
    ],
)
def test_a_refused_health_check_is_failed_in_words_with_the_graph_code(
    standin: FakeCloud,
    setup: Callable[[FakeCloud], object],
    overrides: dict[str, str],
    reason: str,
    code: str,
) -> None:
    setup(standin)
    with _adapter(standin, **overrides) as gateway:
        status = gateway.status()
        account = gateway.account()

    assert (status.state, status.code) == (State.FAILED, code)
    # The token's reason is exactly the one the session page shows; others start with ours.
    assert status.reason == reason if code == "190" else status.reason.startswith(reason)
    # No QR and nothing to scan: a person fixes a setting, not a link.
    assert (status.qr, status.pairing_code, status.logged_out, status.needs_login) == (
        "",
        "",
        False,
        False,
    )
    assert account is None


def test_a_renewed_token_is_ready_again(standin: FakeCloud, adapter: CloudGateway) -> None:
    standin.expire_token()
    assert adapter.status().state == State.FAILED

    standin.renew_token()

    assert adapter.status().state == State.READY


@pytest.mark.parametrize(
    ("answer", "state", "code", "words"),
    [
        pytest.param(
            httpx.Response(500, json=_graph_error(131000, "(#131000) Something went wrong")),
            State.UNKNOWN,
            "131000",
            "HTTP 500 (#131000) Something went wrong",
            id="500",
        ),
        pytest.param(
            httpx.Response(200, text="<html>proxy</html>"),
            State.UNKNOWN,
            "HTTP 200",
            "'<html>proxy</html>'",
            id="200-not-graph",
        ),
        pytest.param(
            httpx.Response(400, json=_graph_error(80007, "(#80007) Rate limit issues")),
            State.UNKNOWN,
            "80007",
            "limiting calls",
            id="rate-limited",
        ),
        pytest.param(
            httpx.Response(403, json=_graph_error(10, "(#10) Permission denied")),
            State.FAILED,
            "10",
            "lacks the whatsapp_business_messaging permission",
            id="permission",
        ),
        pytest.param(
            httpx.Response(404, text="Not Found"),
            State.UNKNOWN,
            "HTTP 404",
            "HTTP 404 'Not Found'",
            id="404-not-graph",
        ),
    ],
)
def test_other_health_answers_are_said_in_words(
    answer: httpx.Response, state: State, code: str, words: str
) -> None:
    with _mocked(answer) as gateway:
        status = gateway.status()

    assert (status.state, status.code) == (state, code)
    assert words in status.reason


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(500, json=_graph_error(1)), id="500"),
        pytest.param(httpx.Response(200, text="<html>"), id="garbage"),
    ],
)
def test_an_account_without_a_usable_answer_raises(answer: httpx.Response) -> None:
    with _mocked(answer) as gateway, pytest.raises(GatewayUnavailable):
        gateway.account()


def test_nothing_answering_raises_gateway_unavailable(standin: FakeCloud, adapter) -> None:
    standin.set_send_mode("down")

    with pytest.raises(GatewayUnavailable) as caught:
        adapter.status()
    with pytest.raises(GatewayUnavailable):
        adapter.account()

    assert adapter.address in str(caught.value)


def test_a_health_check_that_times_out_raises() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with _mocked(hang) as gateway, pytest.raises(GatewayUnavailable, match="did not answer"):
        gateway.status()


def test_the_health_check_asks_for_the_three_fields_with_the_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"display_phone_number": "+1 555-0100", "id": "1"})

    with _mocked(answer) as gateway:
        assert gateway.status().ready

    [request] = seen
    assert (request.method, str(request.url)) == (
        "GET",
        "https://graph.test/v23.0/106540352242922"
        "?fields=display_phone_number%2Cverified_name%2Cquality_rating",
    )
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


# --- sending ------------------------------------------------------------------------------


def test_a_sent_message_keeps_the_wamid_and_carries_our_reply_id(
    standin: FakeCloud, adapter: CloudGateway
) -> None:
    outcome = adapter.send(ADDRESS, "Salaam, ünïcode ✓", reply_id="reply_7")

    [call] = standin.sends
    assert outcome.ok and outcome.next is None and outcome.error == ""
    assert outcome.message_id == call.gateway_id
    assert outcome.message_id.startswith("wamid.")
    assert (call.to, call.text, call.reply_id, call.delivered) == (
        NUMBER,
        "Salaam, ünïcode ✓",
        "reply_7",
        True,
    )


def test_the_send_request_is_metas_text_message_with_the_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"messages": [{"id": "wamid.X"}]})

    with _mocked(answer) as gateway:
        assert gateway.send("+92 300 1234567", TEXT, reply_id="r-1").message_id == "wamid.X"
        assert gateway.send(ADDRESS, TEXT).ok
        assert gateway.send(ADDRESS, TEXT, reply_id="x" * 513).ok

    first, bare, too_long = seen
    assert str(first.url) == "https://graph.test/v23.0/106540352242922/messages"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(first.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": NUMBER,
        "type": "text",
        "text": {"preview_url": False, "body": TEXT},
        "biz_opaque_callback_data": "r-1",
    }
    # No reply id, or one longer than the API's 512: the field is left out, not refused.
    assert "biz_opaque_callback_data" not in json.loads(bare.content)
    assert "biz_opaque_callback_data" not in json.loads(too_long.content)


def _rate_80007(s: FakeCloud) -> None:
    s.rate_limit_code = 80007
    s.set_send_mode("rate_limited")


@pytest.mark.parametrize(
    ("setup", "kind", "next_", "words", "delivered"),
    [
        pytest.param(
            lambda s: s.set_send_mode("window_closed"),
            Sent.NOT_SENT,
            Next.FINAL,
            WINDOW_CLOSED_TEXT,
            [False],
            id="400-131047-window-closed",
        ),
        pytest.param(
            lambda s: s.set_send_mode("undeliverable"),
            Sent.NOT_SENT,
            Next.FINAL,
            "cannot deliver to this number",
            [False],
            id="400-131026-undeliverable",
        ),
        pytest.param(
            lambda s: s.set_send_mode("bad_parameter"),
            Sent.NOT_SENT,
            Next.FINAL,
            "(#100) Invalid parameter (code 100)",
            [False],
            id="400-100-bad-parameter",
        ),
        pytest.param(
            lambda s: s.set_send_mode("token_expired"),
            Sent.NOT_SENT,
            Next.CONFIG,
            TOKEN_EXPIRED_TEXT,
            [False],
            id="401-190-token-expired",
        ),
        pytest.param(
            lambda s: s.set_send_mode("rate_limited"),
            Sent.NOT_SENT,
            Next.RETRY,
            "(code 130429)",
            [False],
            id="400-130429-rate-limited",
        ),
        pytest.param(
            _rate_80007, Sent.NOT_SENT, Next.RETRY, "(code 80007)", [False], id="400-80007"
        ),
        pytest.param(
            lambda s: s.set_send_mode("error500"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 500",
            [True],
            id="500",
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
        # A refused connection never reached Meta.
        pytest.param(
            lambda s: s.set_send_mode("down"),
            Sent.NOT_SENT,
            Next.RETRY,
            "unreachable",
            [],
            id="down",
        ),
        # The token itself expired: every call is refused before any send.
        pytest.param(
            lambda s: s.expire_token(),
            Sent.NOT_SENT,
            Next.CONFIG,
            TOKEN_EXPIRED_TEXT,
            [],
            id="expired-token",
        ),
    ],
)
def test_send_answers_are_classified(
    standin: FakeCloud,
    adapter: CloudGateway,
    setup: Callable[[FakeCloud], object],
    kind: Sent,
    next_: Next | None,
    words: str,
    delivered: list[bool],
) -> None:
    setup(standin)

    outcome = adapter.send(ADDRESS, TEXT, reply_id="reply_1")

    assert (outcome.kind, outcome.next, outcome.message_id) == (kind, next_, "")
    assert words in outcome.error
    assert [call.delivered for call in standin.sends] == delivered


def test_a_window_closed_at_once_says_exactly_why(standin: FakeCloud, adapter) -> None:
    standin.set_send_mode("window_closed")

    assert adapter.send(ADDRESS, TEXT).error == WINDOW_CLOSED_TEXT


def test_a_send_with_a_wrong_key_is_a_config_problem_and_sends_nothing(standin: FakeCloud) -> None:
    with _adapter(standin, api_key="not-the-key") as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert standin.sends == [] and standin.calls() == {"send": 1}


def test_a_send_for_a_wrong_phone_number_id_is_a_config_problem(standin: FakeCloud) -> None:
    with _adapter(standin, phone_number_id="555666777") as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert "GATEWAY_PHONE_NUMBER_ID" in outcome.error
    assert standin.sends == []


def test_a_window_closed_later_is_sent_now_and_fails_in_a_status(
    standin: FakeCloud, adapter: CloudGateway, posted: WebhookReceiver
) -> None:
    standin.set_send_mode("window_closed_later")

    outcome = adapter.send(ADDRESS, TEXT, reply_id="reply_9")

    assert outcome.ok
    [item] = _arrived(posted)
    assert item.kind == EventKind.DELIVERY_FAILED
    assert (item.failure.gateway_id, item.failure.error, item.failure.code) == (
        outcome.message_id,
        WINDOW_CLOSED_TEXT,
        "131047",
    )
    assert item.dedupe_key == f"{outcome.message_id}:failed"
    assert standin.delivered() == []


def test_a_text_over_4096_characters_is_final_without_a_request(
    standin: FakeCloud, adapter: CloudGateway
) -> None:
    outcome = adapter.send(ADDRESS, "x" * 4097)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert outcome.error == f"the text has 4,097 characters: {TOO_LONG_TEXT}"
    assert standin.calls()["send"] == 0


def test_a_text_of_exactly_4096_characters_goes(standin: FakeCloud, adapter) -> None:
    assert adapter.send(ADDRESS, "é" * 4096).ok
    assert len(standin.sends[0].text) == 4096


def test_an_empty_text_is_final_without_a_request(standin: FakeCloud, adapter) -> None:
    outcome = adapter.send(ADDRESS, " \n ")

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert standin.calls()["send"] == 0


@pytest.mark.parametrize(
    ("answer", "kind", "next_", "words"),
    [
        pytest.param(
            httpx.Response(200, json={}),
            Sent.MAYBE_SENT,
            None,
            "without a message id",
            id="200-no-id",
        ),
        pytest.param(
            httpx.Response(200, text="<html>hi</html>"),
            Sent.MAYBE_SENT,
            None,
            "without a message id",
            id="200-html",
        ),
        pytest.param(
            httpx.Response(503, json=_graph_error(131016, "(#131016) Service unavailable")),
            Sent.MAYBE_SENT,
            None,
            "HTTP 503",
            id="503",
        ),
        pytest.param(
            httpx.Response(502, text="Bad gateway"), Sent.MAYBE_SENT, None, "HTTP 502", id="502"
        ),
        pytest.param(
            httpx.Response(400, json=_graph_error(131057, "(#131057) Account in maintenance mode")),
            Sent.NOT_SENT,
            Next.HOLD,
            "maintenance",
            id="131057-maintenance",
        ),
        pytest.param(
            httpx.Response(400, json=_graph_error(131056, "(#131056) Pair rate limit hit")),
            Sent.NOT_SENT,
            Next.RETRY,
            "too many messages to this customer",
            id="131056-pair-rate",
        ),
        pytest.param(
            httpx.Response(403, json=_graph_error(10, "(#10) Permission denied")),
            Sent.NOT_SENT,
            Next.CONFIG,
            "permission",
            id="403-10",
        ),
        pytest.param(
            httpx.Response(403, json=_graph_error(368, "(#368) Temporarily blocked")),
            Sent.NOT_SENT,
            Next.CONFIG,
            "policy violation",
            id="368-blocked",
        ),
        pytest.param(
            httpx.Response(401, json=_graph_error(12345, "something new")),
            Sent.NOT_SENT,
            Next.CONFIG,
            "something new",
            id="401-unknown-code",
        ),
        pytest.param(
            httpx.Response(400, json=_graph_error(999999, "(#999999) A new refusal")),
            Sent.NOT_SENT,
            Next.FINAL,
            "A new refusal (code 999999)",
            id="400-unknown-code",
        ),
        pytest.param(
            httpx.Response(404, text="<html>Not Found</html>"),
            Sent.NOT_SENT,
            Next.CONFIG,
            "no Cloud API answers at this address",
            id="404-not-graph",
        ),
        pytest.param(
            httpx.Response(301, headers={"Location": "https://graph.test/v23.0/x"}),
            Sent.NOT_SENT,
            Next.CONFIG,
            "redirects",
            id="301",
        ),
        pytest.param(
            httpx.Response(429, text="slow down"),
            Sent.NOT_SENT,
            Next.RETRY,
            "HTTP 429",
            id="429-not-graph",
        ),
        pytest.param(
            httpx.Response(418, text="teapot"),
            Sent.MAYBE_SENT,
            None,
            "HTTP 418",
            id="418-not-graph",
        ),
    ],
)
def test_answers_the_real_api_rarely_or_never_gives_are_classified(
    answer: httpx.Response, kind: Sent, next_: Next | None, words: str
) -> None:
    with _mocked(answer) as gateway:
        outcome = gateway.send(ADDRESS, TEXT)

    assert (outcome.kind, outcome.next) == (kind, next_)
    assert words in outcome.error


def test_an_unusable_address_is_a_config_problem() -> None:
    with CloudGateway("ftp://127.0.0.1/v23.0", api_key=API_KEY, phone_number_id="1") as gateway:
        outcome = gateway.send(ADDRESS, TEXT)
        with pytest.raises(GatewayUnavailable):
            gateway.status()

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.CONFIG)
    assert "not usable" in outcome.error


def test_the_key_never_shows_in_the_address_errors_or_reprs(standin: FakeCloud) -> None:
    secret = "EAAG-very-secret-token"
    with _adapter(standin, api_key=secret) as gateway:
        texts = [gateway.address, repr(gateway), repr(gateway._http.headers)]
        texts += [gateway.send(ADDRESS, TEXT).error, gateway.status().reason]
        standin.set_send_mode("hang")
        texts.append(gateway.send(ADDRESS, TEXT).error)
        standin.set_send_mode("down")
        texts.append(gateway.send(ADDRESS, TEXT).error)
        with pytest.raises(GatewayUnavailable) as caught:
            gateway.status()
        texts.append(str(caught.value))

    assert gateway.address == f"{standin.url}/{standin.phone_number_id}"
    assert not [text for text in texts if secret in text]


@pytest.mark.parametrize(
    ("address", "words"),
    [
        (ADDRESS, ""),
        (NUMBER, ""),
        ("+92 300 1234567", ""),
        (f"{NUMBER}@s.whatsapp.net", ""),
        ("120363025246125888@g.us", "cannot reach a group"),
        ("24816190603455@lid", "cannot reach a contact whose number is hidden"),
        ("status@broadcast", "a Status update cannot be answered"),
        ("status", "'status' is not a phone number"),
        ("", "'' is not a phone number"),
        ("shop@c.us", "is not a phone number"),
        ("1234", "is not a phone number"),
        ("1234567890123456", "is not a phone number"),
        (f"{NUMBER}@newsletter", "is not a phone number"),
    ],
)
def test_cannot_reach(settings, address: str, words: str) -> None:
    why = cloud.cannot_reach(address)
    assert (words in why) if words else (why == "")
    settings.GATEWAY_KIND = "cloud"
    assert whatsapp.cannot_reach(address) == why
    assert CloudGateway.cannot_reach(address) == why


@pytest.mark.parametrize(
    "address", ["120363025246125888@g.us", "24816190603455@lid", "status@broadcast"]
)
def test_an_address_it_cannot_reach_is_final_without_a_request(
    standin: FakeCloud, adapter: CloudGateway, address: str
) -> None:
    outcome = adapter.send(address, TEXT)

    assert (outcome.kind, outcome.next) == (Sent.NOT_SENT, Next.FINAL)
    assert outcome.error == cloud.cannot_reach(address)
    assert standin.calls()["send"] == 0


def test_a_hang_is_maybe_sent_and_its_echo_settles_it(
    standin: FakeCloud, adapter: CloudGateway, posted: WebhookReceiver
) -> None:
    standin.set_send_mode("hang")

    outcome = adapter.send(ADDRESS, TEXT, reply_id="reply_3")

    assert outcome.kind == Sent.MAYBE_SENT
    [item] = _arrived(posted)
    # The echo names the message WhatsApp holds, and our reply.
    assert (item.kind, item.echo.gateway_id, item.echo.reply_id) == (
        EventKind.ECHO,
        standin.delivered()[0].gateway_id,
        "reply_3",
    )


# --- what the Cloud API does not have, and its webhook set-up -------------------------------


def test_its_traits() -> None:
    traits = cloud.TRAITS
    assert (traits.has_webhooks, traits.can_pull, traits.can_read_back, traits.can_backfill) == (
        True,
        False,
        False,
        False,
    )
    assert (traits.reply_window, traits.max_text_length, traits.webhook_setup) == (
        timedelta(hours=24),
        4096,
        "manual",
    )
    assert traits.session_actions == frozenset() and not traits.needs_session_folder
    assert CloudGateway.traits is traits and CloudGateway.kind == "cloud"


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.read_back(ADDRESS, NOW),
        lambda g: g.recent_messages(ADDRESS, NOW),
        lambda g: g.request_pairing_code(NUMBER),
        lambda g: g.restart(),
        lambda g: g.logout(),
        lambda g: g.apply_webhook({"application": "https://x"}),
        lambda g: g.pull_messages(),
        lambda g: g.mark_processed("wamid.X"),
    ],
)
def test_what_it_has_no_call_for_raises_not_implemented(
    standin: FakeCloud, adapter: CloudGateway, call: Callable[[CloudGateway], object]
) -> None:
    with pytest.raises(NotImplementedError):
        call(adapter)
    assert sum(standin.calls().values()) == 0


def test_it_keeps_no_buffer_that_could_overflow() -> None:
    assert CloudGateway.buffer_overflowed(10_000) is False


def test_webhook_config_is_where_meta_sends_the_webhooks_now(
    standin: FakeCloud, adapter: CloudGateway
) -> None:
    assert adapter.webhook_config() == {}

    standin.webhook_url = "https://shop.example/gateway/webhook"
    standin.set_webhook_override("phone_number", "https://elsewhere.example/hook")

    assert adapter.webhook_config() == {
        "application": "https://shop.example/gateway/webhook",
        "phone_number": "https://elsewhere.example/hook",
    }
    assert standin.calls()["webhook_config"] == 2


def test_webhook_config_without_a_usable_answer_raises(standin: FakeCloud, adapter) -> None:
    standin.expire_token()

    with pytest.raises(GatewayUnavailable, match="190"):
        adapter.webhook_config()


def test_the_webhook_plan_points_every_set_level_at_us_and_keeps_the_rest(adapter) -> None:
    current = {
        "application": "https://old.example/hook",
        "phone_number": "https://elsewhere.example/hook",
        "something_new": {"kept": True},
    }
    ours = "https://shop.example/gateway/webhook"

    plan = adapter.webhook_plan(current, url=ours, secret="the-app-secret")

    assert plan == {
        "application": ours,
        "phone_number": ours,
        "something_new": {"kept": True},
        "fields": ["messages"],
        "verify_token": "the value of GATEWAY_VERIFY_TOKEN",
    }
    assert current["application"] == "https://old.example/hook"  # not changed in place
    assert "the-app-secret" not in json.dumps(plan)


def test_webhook_instructions_name_the_url_the_setting_and_the_field() -> None:
    words = cloud.webhook_instructions("https://shop.example/gateway/webhook")

    for part in ("https://shop.example/gateway/webhook", "GATEWAY_VERIFY_TOKEN", "'messages'"):
        assert part in words
    assert "GATEWAY_WEBHOOK_SECRET" in words and VERIFY_TOKEN not in words


def test_the_factory_gives_the_cloud_adapter_from_the_settings(standin: FakeCloud) -> None:
    with whatsapp.gateway(status_timeout=TIMEOUT, send_timeout=TIMEOUT) as gateway:
        assert isinstance(gateway, CloudGateway)
        assert (gateway.kind, gateway.address) == ("cloud", whatsapp.address())
        assert gateway.status().ready
        assert gateway.send(ADDRESS, TEXT).ok
    assert whatsapp.traits() is cloud.TRAITS


def test_the_adapter_ignores_a_proxy_from_the_environment(
    standin: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with _adapter(standin) as gateway:
        assert gateway.send(ADDRESS, TEXT).ok


# --- verify_webhook and challenge -------------------------------------------------------


def _signed(body: dict) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, sign(raw, WEBHOOK_SECRET)


def test_a_good_signature_passes_in_any_letter_case() -> None:
    raw, headers = _signed(message_event())

    cloud_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)
    lower = {k.lower(): v for k, v in headers.items()}
    cloud_events.verify_webhook(lower, raw, secret=WEBHOOK_SECRET, now=NOW)
    upper = {k.upper(): v.upper() for k, v in headers.items()}
    cloud_events.verify_webhook(upper, raw, secret=WEBHOOK_SECRET, now=NOW)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        pytest.param(
            lambda raw, h: (raw, {k: v for k, v in h.items() if k != "X-Hub-Signature-256"}),
            "missing",
            id="missing",
        ),
        pytest.param(
            lambda raw, h: (raw, sign(raw, "another-secret")), "does not match", id="wrong-secret"
        ),
        pytest.param(
            lambda raw, h: (raw.replace(b"Hello", b"Hellp"), h),
            "does not match",
            id="body-changed",
        ),
        pytest.param(
            lambda raw, h: (raw, {**h, "X-Hub-Signature-256": h["X-Hub-Signature-256"][7:]}),
            "expected 'sha256=<hex>'",
            id="no-scheme",
        ),
        pytest.param(
            lambda raw, h: (raw, {**h, "X-Hub-Signature-256": h["X-Hub-Signature"]}),
            "expected 'sha256=<hex>'",
            id="sha1-only",
        ),
        pytest.param(
            lambda raw, h: (raw, {**h, "X-Hub-Signature-256": "sha256=" + "é" * 64}),
            "does not match",
            id="not-hex",
        ),
    ],
)
def test_a_bad_signature_is_refused_with_401(
    change: Callable[[bytes, dict], tuple[bytes, dict]], words: str
) -> None:
    raw, headers = change(*_signed(message_event("Hello")))

    with pytest.raises(WebhookRefused) as caught:
        cloud_events.verify_webhook(headers, raw, secret=WEBHOOK_SECRET, now=NOW)

    assert caught.value.status == 401
    assert words in str(caught.value)


def test_without_a_secret_nothing_is_trusted() -> None:
    raw = b"{}"
    # Even a body "signed" with the empty key: no secret set, no webhook trusted.
    empty_key = {"X-Hub-Signature-256": "sha256=" + hmac.new(b"", raw, hashlib.sha256).hexdigest()}
    with pytest.raises(WebhookRefused) as caught:
        cloud_events.verify_webhook(empty_key, raw, secret="", now=NOW)
    assert caught.value.status == 401


def test_the_package_verifies_with_the_configured_secret(fake_cloud: FakeCloud) -> None:
    raw, headers = _signed(message_event())
    whatsapp.verify_webhook(headers, raw, now=NOW)

    with pytest.raises(WebhookRefused):
        whatsapp.verify_webhook(sign(raw, "x"), raw, now=NOW)


@pytest.mark.parametrize(
    ("params", "token", "status"),
    [
        pytest.param(
            {"hub.mode": "subscribe", "hub.verify_token": "tok-1"}, "tok-1", None, id="right"
        ),
        pytest.param(
            {"hub.mode": "subscribe", "hub.verify_token": "tok-2"}, "tok-1", 403, id="wrong"
        ),
        pytest.param(
            {"hub.mode": "subscribe", "hub.verify_token": "tok-11"}, "tok-1", 403, id="longer"
        ),
        pytest.param({"hub.mode": "subscribe"}, "tok-1", 403, id="no-token"),
        pytest.param(
            {"hub.mode": "unsubscribe", "hub.verify_token": "tok-1"}, "tok-1", 403, id="mode"
        ),
        pytest.param({"hub.verify_token": "tok-1"}, "tok-1", 403, id="no-mode"),
        pytest.param({"hub.mode": "subscribe", "hub.verify_token": ""}, "", 403, id="none-set"),
    ],
)
def test_challenge(params: dict[str, str], token: str, status: int | None) -> None:
    params = {**params, "hub.challenge": "1158201444"}
    if status is None:
        assert cloud_events.challenge(params, verify_token=token) == "1158201444"
        return
    with pytest.raises(WebhookRefused) as caught:
        cloud_events.challenge(params, verify_token=token)
    assert caught.value.status == status


def test_a_challenge_that_is_not_metas_short_token_is_not_echoed() -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "t",
        "hub.challenge": "<script>x</script> y",
    }
    with pytest.raises(WebhookRefused) as caught:
        cloud_events.challenge(params, verify_token="t")
    assert caught.value.status == 400


def test_the_package_answers_the_challenge_with_the_configured_token(fake_cloud) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"}
    assert whatsapp.challenge(params) == "42"


def test_the_stand_ins_callback_verification_is_what_challenge_accepts(
    fake_cloud: FakeCloud, posted: WebhookReceiver
) -> None:
    assert fake_cloud.verify_callback("987") == (200, "987")

    [request] = posted.received
    assert cloud_events.challenge(request.query, verify_token=VERIFY_TOKEN) == "987"


# --- parse_webhook: what the stand-in posts ------------------------------------------------


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


def test_a_customers_message_is_stored_on_the_old_watchers_keys(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    sent = standin.add_customer_message(
        "Salaam <b>bold</b> 😀 a/b", name="Ayesha Khan", timestamp=1764061200
    )

    [item] = _arrived(posted)

    assert (item.kind, item.dedupe_key, item.event) == (EventKind.MESSAGE, sent["id"], "messages")
    message = item.message
    assert list(message.stored) == STORED_KEYS
    assert message.stored == {
        "id": sent["id"],
        "from": ADDRESS,
        "fromName": "Ayesha Khan",
        "body": "Salaam <b>bold</b> 😀 a/b",
        "timestamp": 1764061200,
        "isGroup": False,
        "chatName": "Ayesha Khan",
        "type": "chat",
        "hasMedia": False,
        "receivedAt": "2025-11-25T09:00:00.000Z",
    }
    assert (message.id, message.chat, message.sender_name, message.text) == (
        sent["id"],
        ADDRESS,
        "Ayesha Khan",
        "Salaam <b>bold</b> 😀 a/b",
    )
    assert (message.is_group, message.from_me, message.media_kind) == (False, False, "")
    assert message.received_at == datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
    assert validate_message(message.stored, "incoming") == []
    # The item as received, in its change's context.
    assert item.payload["messages"] == [sent]
    assert item.payload["metadata"]["phone_number_id"] == standin.phone_number_id


@pytest.mark.parametrize(
    ("media", "caption", "kind", "body", "has_media"),
    [
        ("image", "the blue one", "image", "the blue one", True),
        ("image", "", "image", "", True),
        ("voice", "", "ptt", "", True),
        ("audio", "", "audio", "", True),
        ("video", "look", "video", "look", True),
        ("document", "invoice.pdf", "document", "invoice.pdf", True),
        ("sticker", "", "sticker", "", True),
        ("location", "Shop", "location", "", False),
    ],
)
def test_media_arrive_with_their_kind_and_caption(
    standin: FakeCloud,
    posted: WebhookReceiver,
    media: str,
    caption: str,
    kind: str,
    body: str,
    has_media: bool,
) -> None:
    standin.add_customer_message(caption, media=media)

    [item] = _arrived(posted)

    stored = item.message.stored
    assert (stored["type"], stored["body"], stored["hasMedia"]) == (kind, body, has_media)
    assert item.message.media_kind == (kind if has_media else "")
    assert item.message.text == body
    assert validate_message(stored, "incoming") == []


def test_a_group_message_is_from_the_group(standin: FakeCloud, posted: WebhookReceiver) -> None:
    standin.add_customer_message("Hi all", group_id="Y2FwaV9ncm91cDoxNzA1", name="Member")

    [item] = _arrived(posted)

    message = item.message
    assert (message.chat, message.is_group, message.sender_name) == (
        "Y2FwaV9ncm91cDoxNzA1@g.us",
        True,
        "Member",
    )
    assert message.stored["isGroup"] is True and "chatName" not in message.stored
    assert cloud.cannot_reach(message.chat)  # and a reply cannot go to it


def test_the_number_is_preferred_and_a_hidden_one_is_the_lid(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    standin.add_customer_message("with number", sender="923001112223", user_id="PK.1234567")
    standin.add_customer_message(
        "hidden", sender="923004445556", user_id="PK.7654321", hide_number=True
    )

    # Each is posted from its own thread: they may arrive in either order.
    hidden, first = sorted(_arrived(posted, 2), key=lambda item: item.message.text)

    assert first.message.chat == "923001112223@c.us"
    assert (hidden.message.chat, hidden.message.sender_name) == ("PK.7654321@lid", "Ayesha Khan")
    assert "923004445556" not in json.dumps(hidden.payload)
    assert cloud.cannot_reach(hidden.message.chat)


@pytest.mark.parametrize("mode", ["before_answer", "after_answer"])
def test_our_send_comes_back_as_an_echo_with_our_reply_id(
    standin: FakeCloud, adapter: CloudGateway, posted: WebhookReceiver, mode: str
) -> None:
    standin.echo_mode = mode

    outcome = adapter.send(ADDRESS, TEXT, reply_id="reply_42")
    if mode == "before_answer":
        # Posted inside the send, as Meta can: the echo is there before the answer.
        assert len(posted.posts()) == 1

    [item] = _arrived(posted)
    assert (item.kind, item.event, item.dedupe_key) == (
        EventKind.ECHO,
        "statuses",
        f"{outcome.message_id}:sent",
    )
    assert item.echo.gateway_id == outcome.message_id  # the same wamid as the send's answer
    assert (item.echo.chat, item.echo.reply_id, item.echo.text) == (ADDRESS, "reply_42", "")
    assert item.echo.at is not None


def test_no_echo_when_the_stand_in_sends_none(
    standin: FakeCloud, adapter: CloudGateway, posted: WebhookReceiver
) -> None:
    standin.echo_mode = "never"

    assert adapter.send(ADDRESS, TEXT).ok
    standin.wait_for_webhooks()

    assert posted.posts() == []


def test_a_later_delivery_failure_names_the_sent_message(
    standin: FakeCloud, adapter: CloudGateway, posted: WebhookReceiver
) -> None:
    standin.echo_mode = "never"
    outcome = adapter.send(ADDRESS, TEXT, reply_id="reply_5")

    assert standin.fail_delivery(outcome.message_id) == 200

    [item] = _arrived(posted)
    failure = item.failure
    assert (item.kind, failure.gateway_id, failure.code) == (
        EventKind.DELIVERY_FAILED,
        outcome.message_id,
        "131026",
    )
    assert failure.error.startswith("WhatsApp could not deliver it: ")
    assert "cannot deliver to this number" in failure.error
    # Meta matches a failed status by the wamid only: no reply id comes back in it.
    assert failure.reply_id == ""


def test_a_failed_status_carries_a_reply_id_when_there_is_one() -> None:
    status = build_status("wamid.F", "failed", error=(131047, "Re-engagement message", ""))
    status["biz_opaque_callback_data"] = "reply_8"

    [item] = _items(build_event("messages", {"statuses": [status]}))

    assert (item.failure.reply_id, item.failure.error) == ("reply_8", WINDOW_CLOSED_TEXT)


def test_a_failed_status_without_errors_still_fails() -> None:
    [item] = _items(status_event("wamid.F", "failed"))

    assert (item.kind, item.failure.code) == (EventKind.DELIVERY_FAILED, "")
    assert "no reason given" in item.failure.error


@pytest.mark.parametrize("state", ["delivered", "read", "played"])
def test_later_statuses_change_nothing(state: str) -> None:
    [item] = _items(status_event("wamid.D", state, reply_id="reply_1"))

    assert (item.kind, item.dedupe_key, item.note) == (
        EventKind.DELIVERED,
        f"wamid.D:{state}",
        state,
    )


def test_an_answer_from_the_phone_is_part_of_the_conversation(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    echo = standin.answer_from_phone("I'll call you", chat="923001112223")

    [item] = _arrived(posted)

    assert (item.kind, item.dedupe_key, item.event) == (
        EventKind.FROM_PHONE,
        echo["id"],
        "smb_message_echoes",
    )
    message = item.message
    assert (message.id, message.chat, message.text, message.from_me) == (
        echo["id"],
        "923001112223@c.us",
        "I'll call you",
        True,
    )
    assert message.received_at is not None


@pytest.mark.parametrize(
    ("body", "kind", "state", "words"),
    [
        pytest.param(session_event(), EventKind.SESSION, State.FAILED, "disabled", id="banned"),
        pytest.param(
            session_event(ban_state="REINSTATE"),
            EventKind.SESSION,
            State.READY,
            "reinstated",
            id="reinstated",
        ),
        pytest.param(
            session_event(
                "ACCOUNT_RESTRICTION",
                ban_state=None,
                restrictions=("RESTRICTED_CUSTOMER_INITIATED_MESSAGING",),
            ),
            EventKind.SESSION,
            State.FAILED,
            "cannot answer customers",
            id="restricted-replies",
        ),
        pytest.param(
            session_event(
                "ACCOUNT_RESTRICTION",
                ban_state=None,
                restrictions=("RESTRICTED_BIZ_INITIATED_MESSAGING",),
            ),
            EventKind.IGNORED,
            None,
            "replies can still go",
            id="restricted-outreach-only",
        ),
        pytest.param(
            session_event(ban_state="SCHEDULE_FOR_DISABLE"),
            EventKind.IGNORED,
            None,
            "replies can still go",
            id="scheduled",
        ),
    ],
)
def test_account_updates_are_the_session(
    body: dict, kind: EventKind, state: State | None, words: str
) -> None:
    [item] = _items(body)

    assert (item.kind, item.event) == (kind, "account_update")
    if state is None:
        assert words in item.note and item.status is None
    else:
        assert (item.status.state, item.status.qr, item.status.pairing_code) == (state, "", "")
        assert words in item.status.reason and item.status.code.startswith(
            body["entry"][0]["changes"][0]["value"]["event"]
        )


def test_another_phone_numbers_change_is_ignored_with_a_note() -> None:
    [item] = _items(message_event(phone_number_id="999000999000"))

    assert item.kind == EventKind.IGNORED
    assert "another phone number id (999000999000)" in item.note


@pytest.mark.parametrize(
    ("body", "event", "words"),
    [
        pytest.param(
            {"object": "page", "entry": []}, "page", "not WhatsApp's", id="another-object"
        ),
        pytest.param(
            build_event("message_template_status_update", {"event": "APPROVED"}),
            "message_template_status_update",
            "field is not used",
            id="another-field",
        ),
        pytest.param(
            build_event(
                "messages",
                {
                    "messages": [
                        {**build_message(), "type": "reaction", "reaction": {"emoji": "👍"}}
                    ]
                },
            ),
            "messages",
            "a reaction",
            id="reaction",
        ),
        pytest.param(
            build_event(
                "messages", {"errors": [{"code": 131000, "title": "Something went wrong"}]}
            ),
            "errors",
            "Something went wrong (code 131000)",
            id="errors",
        ),
        pytest.param(
            status_event("wamid.W", "warning"), "statuses", "'warning' status", id="unknown-status"
        ),
    ],
)
def test_well_formed_things_we_do_not_use_are_ignored(body: dict, event: str, words: str) -> None:
    [item] = _items(body)

    assert (item.kind, item.event) == (EventKind.IGNORED, event)
    assert words in item.note
    assert item.dedupe_key


def test_a_batch_gives_one_item_each_in_order() -> None:
    first, second = build_message("one", id="wamid.1"), build_message("two", id="wamid.2")
    body = build_event(
        "messages",
        {
            "contacts": [build_contact("Ayesha Khan", wa_id=NUMBER)],
            "messages": [first, second],
            "statuses": [build_status("wamid.S", "sent"), build_status("wamid.S", "delivered")],
        },
    )
    body["entry"].append(phone_echo_event("from the phone", id="wamid.P")["entry"][0])

    items = _items(body)

    assert [(i.kind, i.dedupe_key) for i in items] == [
        (EventKind.MESSAGE, "wamid.1"),
        (EventKind.MESSAGE, "wamid.2"),
        (EventKind.ECHO, "wamid.S:sent"),
        (EventKind.DELIVERED, "wamid.S:delivered"),
        (EventKind.FROM_PHONE, "wamid.P"),
    ]
    assert [i.message.text for i in items[:2]] == ["one", "two"]


def test_each_message_gets_its_own_senders_name() -> None:
    body = build_event(
        "messages",
        {
            "contacts": [
                build_contact("Bilal", wa_id="923001112223", user_id="PK.2"),
                build_contact("Hidden Hina", wa_id=None, user_id="PK.3"),
                build_contact("Ayesha Khan", wa_id=NUMBER, user_id="PK.1"),
            ],
            "messages": [
                build_message("a", sender=NUMBER, user_id="PK.1"),
                build_message("b", sender=None, user_id="PK.3"),
                build_message("c", sender="923001112223", user_id="PK.2"),
            ],
        },
    )

    names = [(i.message.chat, i.message.sender_name) for i in _items(body)]

    assert names == [
        (ADDRESS, "Ayesha Khan"),
        ("PK.3@lid", "Hidden Hina"),
        ("923001112223@c.us", "Bilal"),
    ]


@pytest.mark.parametrize(
    ("kind", "content", "shown", "body"),
    [
        (
            "interactive",
            {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes, deliver"}},
            "buttons_response",
            "Yes, deliver",
        ),
        (
            "interactive",
            {
                "type": "list_reply",
                "list_reply": {"id": "l2", "title": "Large", "description": "L"},
            },
            "list_response",
            "Large",
        ),
        (
            "button",
            {"payload": "STOP", "text": "Stop promotions"},
            "buttons_response",
            "Stop promotions",
        ),
        ("contacts", [{"name": {"formatted_name": "Ali"}}], "vcard", ""),
        (
            "order",
            {"catalog_id": "1", "text": "2 of these", "product_items": []},
            "order",
            "2 of these",
        ),
        ("unsupported", None, "unknown", ""),
    ],
)
def test_answers_to_buttons_and_other_kinds_keep_what_the_customer_chose(
    kind: str, content: object, shown: str, body: str
) -> None:
    message = {**build_message(id="wamid.K"), "type": kind}
    del message["text"]
    if content is not None:
        message[kind] = content

    [item] = _items(build_event("messages", {"messages": [message]}))

    assert (item.kind, item.message.stored["type"], item.message.text) == (
        EventKind.MESSAGE,
        shown,
        body,
    )
    assert item.message.stored["hasMedia"] is False


def test_a_status_of_a_message_to_a_group_names_the_group() -> None:
    status = {**build_status("wamid.G", "sent", recipient_id="Y2FwaV9n"), "recipient_type": "group"}

    [item] = _items(build_event("messages", {"statuses": [status]}))

    assert item.echo.chat == "Y2FwaV9n@g.us"


def test_a_change_with_nothing_we_use_is_one_ignored_item() -> None:
    [item] = _items(build_event("messages", {}))

    assert (item.kind, item.note) == (EventKind.IGNORED, "nothing this dashboard uses")


def test_the_same_delivery_gives_the_same_keys_and_different_ones_differ() -> None:
    ignored = build_event("message_template_status_update", {"event": "APPROVED"})
    other = build_event("message_template_status_update", {"event": "REJECTED"})

    assert _items(ignored)[0].dedupe_key == _items(json.loads(json.dumps(ignored)))[0].dedupe_key
    assert _items(ignored)[0].dedupe_key != _items(other)[0].dedupe_key


def test_secrets_are_dropped_from_what_is_stored() -> None:
    body = message_event("hi")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"][0]["apikey"] = "evolution-instance-token"
    value["metadata"]["access_token"] = "EAAG-token"
    value["contacts"][0]["profile"]["APIKEY"] = "another"

    [item] = _items(body)

    stored = json.dumps(item.payload)
    for secret in ("evolution-instance-token", "EAAG-token", "another"):
        assert secret not in stored
    assert item.payload["messages"][0]["text"] == {"body": "hi"}


def test_a_body_from_the_wire_parses_strictly(standin: FakeCloud, posted: WebhookReceiver) -> None:
    # Meta escapes "/" and non-ASCII; the project's strict parser reads it back exactly.
    standin.add_customer_message("ünï/code 😀")

    [request] = posted.wait_for_posts(1)

    assert b"\\/" in request.body and b"\\u00fc" in request.body
    [item] = _items(parse_json(request.body))
    assert item.message.text == "ünï/code 😀"


def _with(path: list, value: object, remove: bool = False) -> dict:
    """A good two-change delivery with one place changed (or removed)."""
    body = message_event("first")
    second = message_event("second")["entry"][0]["changes"][0]
    body["entry"][0]["changes"].append(second)
    node = body
    for key in path[:-1]:
        node = node[key]
    if remove:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


_MESSAGE = ["entry", 0, "changes", 1, "value", "messages", 0]


@pytest.mark.parametrize(
    ("body", "place"),
    [
        pytest.param(["not", "an", "object"], "body: expected a JSON object", id="body"),
        pytest.param({"entry": []}, "object: missing", id="object"),
        pytest.param(
            {"object": "whatsapp_business_account", "entry": {}},
            "entry: expected a list, got object",
            id="entry",
        ),
        pytest.param(
            _with(["entry", 0, "changes"], None, True), "entry[0].changes: missing", id="changes"
        ),
        pytest.param(
            _with(["entry", 0, "changes", 1, "field"], 7),
            "entry[0].changes[1].field: expected a string, got a number",
            id="field",
        ),
        pytest.param(
            _with(["entry", 0, "changes", 1, "value", "metadata"], None, True),
            "entry[0].changes[1].value.metadata: missing",
            id="metadata",
        ),
        pytest.param(
            _with([*_MESSAGE, "id"], None, True),
            "entry[0].changes[1].value.messages[0].id: missing",
            id="message-id",
        ),
        pytest.param(
            _with([*_MESSAGE, "id"], ""),
            "entry[0].changes[1].value.messages[0].id: empty",
            id="empty-id",
        ),
        pytest.param(
            _with([*_MESSAGE, "timestamp"], "yesterday"),
            "entry[0].changes[1].value.messages[0].timestamp: expected unix seconds",
            id="timestamp",
        ),
        pytest.param(
            _with([*_MESSAGE, "text", "body"], 5),
            "entry[0].changes[1].value.messages[0].text.body: expected a string",
            id="text-body",
        ),
        pytest.param(
            _with([*_MESSAGE, "text"], None, True),
            "entry[0].changes[1].value.messages[0].text: missing",
            id="text",
        ),
        pytest.param(
            _with(_MESSAGE, build_message(sender=None)),
            "entry[0].changes[1].value.messages[0].from: missing",
            id="from",
        ),
        pytest.param(
            _with([*_MESSAGE, "from"], "shop"),
            "entry[0].changes[1].value.messages[0].from: expected a phone number",
            id="from-not-a-number",
        ),
        pytest.param(
            _with(["entry", 0, "changes", 1, "value", "contacts", 0, "profile", "name"], ["x"]),
            "entry[0].changes[1].value.contacts[0].profile.name: expected a string, got list",
            id="contact-name",
        ),
        pytest.param(
            _with(["entry", 0, "changes", 1, "value", "messages"], {"id": "x"}),
            "entry[0].changes[1].value.messages: expected a list, got object",
            id="messages",
        ),
        pytest.param(
            build_event("messages", {"statuses": [{"id": "wamid.S", "timestamp": "1"}]}),
            "entry[0].changes[0].value.statuses[0].status: missing",
            id="status",
        ),
        pytest.param(
            build_event(
                "messages",
                {
                    "statuses": [
                        {**build_status("wamid.S", "failed"), "errors": [{"code": "131047"}]}
                    ]
                },
            ),
            "entry[0].changes[0].value.statuses[0].errors[0].code: expected a number",
            id="error-code",
        ),
        pytest.param(
            build_event(
                "smb_message_echoes",
                {
                    "message_echoes": [
                        {"id": "wamid.E", "type": "text", "timestamp": "1", "text": {"body": "x"}}
                    ]
                },
            ),
            "entry[0].changes[0].value.message_echoes[0].to: missing",
            id="echo-to",
        ),
        pytest.param(
            build_event("account_update", {"ban_info": {}}),
            "entry[0].changes[0].value.event: missing",
            id="account-event",
        ),
    ],
)
def test_a_wrong_shape_is_refused_with_400_naming_the_place(body: object, place: str) -> None:
    with pytest.raises(WebhookRefused) as caught:
        _items(body)

    assert caught.value.status == 400
    assert str(caught.value).startswith(place)


def test_the_package_parses_with_the_configured_phone_number(fake_cloud: FakeCloud) -> None:
    [item] = whatsapp.parse_webhook(message_event("hi", id=new_wamid()))
    assert item.kind == EventKind.MESSAGE

    [other] = whatsapp.parse_webhook(message_event("hi", phone_number_id="1"))
    assert other.kind == EventKind.IGNORED
