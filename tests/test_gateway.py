"""The gateway client against a real HTTP gateway on 127.0.0.1 (no database, no mocks)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from statecore.gateway import (
    GatewayBadAnswer,
    GatewayClient,
    GatewayError,
    GatewayRefused,
    GatewayServerError,
    GatewayTimeout,
    GatewayUnreachable,
    SendResult,
    retry_delays,
    send_with_retries,
)

if TYPE_CHECKING:
    from tests.fake_gateway import FakeGateway

# Until tests/conftest.py registers it for everyone; registering twice is harmless.
pytest_plugins = ["tests.fake_gateway"]

NUMBER = "923001234567"
KEY = "msg-42-attempt"
EXPONENTIAL = {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True}
CONSTANT = {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": False}


@pytest.fixture
def client(fake_gateway: FakeGateway) -> Iterator[GatewayClient]:
    # Short timeouts so "hang" costs half a second, not thirty.
    with GatewayClient(fake_gateway.url, status_timeout=0.5, send_timeout=0.5) as gateway_client:
        yield gateway_client


def _send(client: GatewayClient) -> str:
    return client.send(NUMBER, "Your order is ready", idempotency_key=KEY)


# -- send: one call, each outcome -------------------------------------------


def test_send_returns_the_gateway_message_id(client: GatewayClient) -> None:
    assert _send(client).startswith(f"true_{NUMBER}@c.us_")


def test_send_posts_number_message_and_idempotency_key(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    client.send(NUMBER, "Salaam, ünïcode ✓", idempotency_key="key-7")

    [call] = fake_gateway.sends
    assert (call.number, call.message, call.idempotency_key) == (
        NUMBER,
        "Salaam, ünïcode ✓",
        "key-7",
    )


def test_send_refused_is_retryable_and_carries_the_gateway_error(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.refuse_error = "Phone not connected"
    fake_gateway.set_send_mode("refuse")

    with pytest.raises(GatewayRefused) as caught:
        _send(client)

    assert caught.value.may_have_sent is False
    assert caught.value.error == "Phone not connected"
    assert "Phone not connected" in str(caught.value)


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [
        # The 500 body says success:false, yet a 5xx is still "unknown".
        ("error500", GatewayServerError),
        ("hang", GatewayTimeout),
        ("garbage", GatewayBadAnswer),
        ("drop", GatewayBadAnswer),
    ],
)
def test_send_failing_after_the_request_went_out_may_have_sent(
    client: GatewayClient, fake_gateway: FakeGateway, mode: str, error_class: type[GatewayError]
) -> None:
    fake_gateway.set_send_mode(mode)

    with pytest.raises(error_class) as caught:
        _send(client)

    assert caught.value.may_have_sent is True
    assert fake_gateway.url in str(caught.value)


def test_send_to_a_down_gateway_is_unreachable_and_retryable(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.set_send_mode("down")

    with pytest.raises(GatewayUnreachable) as caught:
        _send(client)

    assert caught.value.may_have_sent is False
    assert "unreachable" in str(caught.value)


def test_send_that_cannot_connect_in_time_is_unreachable_not_a_timeout() -> None:
    # A listening socket that never accepts, its backlog full: the kernel drops
    # the SYN, so the connect itself times out. Nothing was sent.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(8)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            with GatewayClient(f"http://127.0.0.1:{port}/api/whatsapp", send_timeout=0.3) as c:
                with pytest.raises(GatewayUnreachable):
                    _send(c)
        finally:
            for filler in fillers:
                filler.close()


def test_send_to_a_wrong_path_is_a_bad_answer(fake_gateway: FakeGateway) -> None:
    # A 4xx without JSON success:false: we cannot tell what the server did.
    with GatewayClient(fake_gateway.url + "/nowhere") as wrong:
        with pytest.raises(GatewayBadAnswer) as caught:
            _send(wrong)

    assert caught.value.may_have_sent is True
    assert "404" in str(caught.value)


# -- status and info ----------------------------------------------------------


@pytest.mark.parametrize("ready", [True, False])
def test_status_reports_whether_the_gateway_is_ready(
    client: GatewayClient, fake_gateway: FakeGateway, ready: bool
) -> None:
    fake_gateway.set_status(ready)

    assert client.status() is ready


@pytest.mark.parametrize(
    ("failure", "error_class"),
    [
        ("error500", GatewayServerError),
        ("garbage", GatewayBadAnswer),
        ("hang", GatewayTimeout),
        ("drop", GatewayBadAnswer),
    ],
)
def test_status_failure_raises_its_gateway_error(
    client: GatewayClient, fake_gateway: FakeGateway, failure: str, error_class: type[GatewayError]
) -> None:
    fake_gateway.set_status(failure)

    with pytest.raises(error_class):
        client.status()


def test_status_of_a_down_gateway_is_unreachable(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.set_send_mode("down")

    with pytest.raises(GatewayUnreachable):
        client.status()


def test_info_returns_the_logged_in_account(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    account = {"number": "923009999999", "name": "Shop", "platform": "android"}
    fake_gateway.set_info(account)

    assert client.info() == account


def test_info_that_is_not_json_is_a_bad_answer(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.set_info("garbage")

    with pytest.raises(GatewayBadAnswer):
        client.info()


# -- retry_delays ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "delays"),
    [
        ({}, [2.0, 4.0]),
        (None, [2.0, 4.0]),
        (EXPONENTIAL, [2.0, 4.0]),
        (CONSTANT, [2.0, 2.0]),
        ({"max_retries": 5, "retry_delay_seconds": 1.5}, [1.5, 3.0, 6.0, 12.0]),
        ({"max_retries": 1}, []),
    ],
)
def test_retry_delays_follow_the_retry_config(config: dict | None, delays: list[float]) -> None:
    assert retry_delays(config) == delays


@pytest.mark.parametrize(
    "config",
    [
        {"max_retries": 0},
        {"max_retries": True},
        {"max_retries": "3"},
        {"retry_delay_seconds": -1},
        {"retry_delay_seconds": float("inf")},
        {"exponential_backoff": "yes"},
    ],
)
def test_retry_delays_reject_a_nonsense_config(config: dict) -> None:
    with pytest.raises(ValueError, match="retry_config"):
        retry_delays(config)


# -- send_with_retries ------------------------------------------------------------


def _send_with_retries(client: GatewayClient, config: dict, sleeps: list[float]) -> SendResult:
    return send_with_retries(
        client,
        NUMBER,
        "Your order is ready",
        idempotency_key=KEY,
        retry_config=config,
        sleep=sleeps.append,
    )


def test_send_with_retries_succeeds_first_time_without_waiting(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    sleeps: list[float] = []

    result = _send_with_retries(client, EXPONENTIAL, sleeps)

    assert result.ok and result.message_id and result.attempts == 1
    assert sleeps == []
    assert fake_gateway.send_counts() == {KEY: 1}


def test_send_with_retries_succeeds_after_a_refusal_with_the_same_key(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_send_modes("refuse", "ok")
    sleeps: list[float] = []

    result = _send_with_retries(client, EXPONENTIAL, sleeps)

    assert result.ok and result.attempts == 2
    assert sleeps == [2.0]
    assert [call.mode for call in fake_gateway.sends] == ["refuse", "ok"]
    assert fake_gateway.send_counts() == {KEY: 2}


@pytest.mark.parametrize(("config", "waits"), [(EXPONENTIAL, [2.0, 4.0]), (CONSTANT, [2.0, 2.0])])
def test_send_with_retries_gives_up_after_max_retries_refusals(
    client: GatewayClient, fake_gateway: FakeGateway, config: dict, waits: list[float]
) -> None:
    fake_gateway.set_send_mode("refuse")
    sleeps: list[float] = []

    result = _send_with_retries(client, config, sleeps)

    assert not result.ok and result.attempts == 3
    assert isinstance(result.error, GatewayRefused) and not result.outcome_unknown
    assert sleeps == waits
    assert fake_gateway.send_counts() == {KEY: 3}


@pytest.mark.parametrize("mode", ["error500", "hang", "garbage", "drop"])
def test_send_with_retries_never_retries_an_unknown_outcome(
    client: GatewayClient, fake_gateway: FakeGateway, mode: str
) -> None:
    fake_gateway.set_send_mode(mode)
    sleeps: list[float] = []

    result = _send_with_retries(client, EXPONENTIAL, sleeps)

    assert result.outcome_unknown and result.attempts == 1 and result.message_id is None
    assert sleeps == []
    assert fake_gateway.send_counts() == {KEY: 1}


def test_send_with_retries_stops_at_an_unknown_outcome_after_a_refusal(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.queue_send_modes("refuse", "error500", "ok")
    sleeps: list[float] = []

    result = _send_with_retries(client, EXPONENTIAL, sleeps)

    assert isinstance(result.error, GatewayServerError) and result.attempts == 2
    assert sleeps == [2.0]
    assert fake_gateway.send_counts() == {KEY: 2}


def test_send_with_retries_to_a_down_gateway_tries_max_retries_times(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.set_send_mode("down")
    sleeps: list[float] = []

    result = _send_with_retries(client, EXPONENTIAL, sleeps)

    assert isinstance(result.error, GatewayUnreachable) and result.attempts == 3
    assert sleeps == [2.0, 4.0]
    assert fake_gateway.sends == []


def test_send_with_retries_succeeds_when_the_gateway_comes_back(
    client: GatewayClient, fake_gateway: FakeGateway
) -> None:
    fake_gateway.set_send_mode("down")
    sleeps: list[float] = []

    def wait_then_come_back(seconds: float) -> None:
        sleeps.append(seconds)
        fake_gateway.set_send_mode("ok")

    result = send_with_retries(
        client,
        NUMBER,
        "hello",
        idempotency_key=KEY,
        retry_config=EXPONENTIAL,
        sleep=wait_then_come_back,
    )

    assert result.ok and result.attempts == 2
    assert sleeps == [2.0]
    assert fake_gateway.send_counts() == {KEY: 1}
