"""What `statecore/whatsapp/http.py` promises every adapter, pinned where no adapter test does.

The words of a failure (`describe`), the time format of the gateways' JSON
(`iso_z`), a webhook header found in any letter case (`header`), and an adapter's
`close` (and its `with` block) really closing its HTTP client: each adapter runs
against its real stand-in on 127.0.0.1, no mocks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from statecore.whatsapp import http, waha_events
from statecore.whatsapp.cloud import CloudGateway
from statecore.whatsapp.evolution import EvolutionGateway
from statecore.whatsapp.waha import WahaGateway
from statecore.whatsapp.wwebjs import WwebjsGateway
from tests.fake_cloud import API_KEY as CLOUD_KEY
from tests.fake_evolution import API_KEY as EVOLUTION_KEY
from tests.fake_waha import API_KEY as WAHA_KEY

SECRET = "test-webhook-secret"


# --- describe: the words after a failure ------------------------------------------------


def test_describe_names_the_exception_and_what_it_says() -> None:
    error = httpx.ConnectError("[Errno 111] Connection refused")

    assert http.describe(error) == "ConnectError: [Errno 111] Connection refused"


def test_describe_of_an_exception_that_says_nothing_is_its_name_alone() -> None:
    # httpx raises some timeouts with an empty message: no dangling colon.
    assert http.describe(httpx.ReadTimeout("")) == "ReadTimeout"


# --- iso_z: JavaScript's toISOString -------------------------------------------------------


def test_iso_z_writes_a_utc_time_with_milliseconds_and_a_z() -> None:
    moment = datetime(2024, 5, 1, 12, 30, 5, 123456, tzinfo=UTC)

    assert http.iso_z(moment) == "2024-05-01T12:30:05.123Z"


def test_iso_z_turns_a_local_time_into_utc() -> None:
    # Karachi's 17:30 is 12:30 in UTC: Evolution compares it with its own UTC times.
    karachi = timezone(timedelta(hours=5))
    moment = datetime(2024, 5, 1, 17, 30, 5, 123456, tzinfo=karachi)

    assert http.iso_z(moment) == "2024-05-01T12:30:05.123Z"


# --- header: any letter case -------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["X-Webhook-Hmac", "x-webhook-hmac", "X-WEBHOOK-HMAC", "x-Webhook-HMAC"],
)
def test_header_is_found_in_any_letter_case(written: str) -> None:
    headers = {"Content-Type": "application/json", written: "abc123"}

    assert http.header(headers, "X-Webhook-Hmac") == "abc123"
    assert http.header(headers, "x-webhook-hmac") == "abc123"


def test_an_absent_header_is_none() -> None:
    assert http.header({"Content-Type": "application/json"}, "X-Webhook-Hmac") is None


def test_a_waha_webhook_signed_under_lower_case_header_names_is_accepted() -> None:
    # Node's http client sends header names in lower case; Django shows them title-cased.
    body = json.dumps({"id": "evt_1", "timestamp": 1_714_564_800_000}).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
    headers = {"x-webhook-hmac": signature, "x-webhook-hmac-algorithm": "sha512"}

    waha_events.verify_webhook(
        headers, body, secret=SECRET, now=datetime(2024, 5, 2, tzinfo=UTC)
    )  # no WebhookRefused


# --- close: an adapter's HTTP client is really closed --------------------------------------


def _waha(fake_waha) -> WahaGateway:
    return WahaGateway(fake_waha.url, api_key=WAHA_KEY)


def _evolution(fake_evolution) -> EvolutionGateway:
    return EvolutionGateway(fake_evolution.url, api_key=EVOLUTION_KEY)


def _cloud(fake_cloud) -> CloudGateway:
    return CloudGateway(
        fake_cloud.url, api_key=CLOUD_KEY, phone_number_id=fake_cloud.phone_number_id
    )


def _wwebjs(fake_gateway) -> WwebjsGateway:
    return WwebjsGateway(fake_gateway.url)


ADAPTERS = [
    pytest.param("fake_waha", _waha, id="waha"),
    pytest.param("fake_evolution", _evolution, id="evolution"),
    pytest.param("fake_cloud", _cloud, id="cloud"),
    pytest.param("fake_gateway", _wwebjs, id="wwebjs"),
]


@pytest.mark.parametrize(("fixture", "make"), ADAPTERS)
def test_close_closes_the_http_client(
    request: pytest.FixtureRequest, fixture: str, make: Callable
) -> None:
    adapter = make(request.getfixturevalue(fixture))
    adapter.status()  # it works while open

    adapter.close()

    with pytest.raises(RuntimeError, match="client has been closed"):
        adapter.status()


@pytest.mark.parametrize(("fixture", "make"), ADAPTERS)
def test_leaving_the_with_block_closes_the_http_client(
    request: pytest.FixtureRequest, fixture: str, make: Callable
) -> None:
    with make(request.getfixturevalue(fixture)) as adapter:
        adapter.status()

    with pytest.raises(RuntimeError, match="client has been closed"):
        adapter.status()


def test_a_status_call_to_an_address_of_another_scheme_names_the_setting(db, settings):
    # httpx's UnsupportedProtocol is an HTTPError: it must still read as our setting.
    from statecore.whatsapp import GatewayUnavailable, evolution

    settings.GATEWAY_KIND = "evolution"
    settings.GATEWAY_URL = "ftp://127.0.0.1:21"
    settings.GATEWAY_API_KEY = "k"
    settings.GATEWAY_SESSION = "default"
    with evolution.client(settings, status_timeout=1, send_timeout=1) as gateway:
        with pytest.raises(GatewayUnavailable) as caught:
            gateway.status()
    assert "is not usable" in str(caught.value) and "did not answer" not in str(caught.value)
