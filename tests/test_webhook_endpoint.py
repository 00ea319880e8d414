"""`/gateway/webhook` end to end, per gateway kind, with each stand-in's own bodies and
signatures: a good delivery stored once, a forged one refused with nothing stored,
malformed bodies 400 naming the place, an unknown event 200 and ignored, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from statecore.models import GatewayState, Message, Status, WebhookReceipt
from statecore.whatsapp import standin_cloud, standin_evolution, standin_waha

URL = "/gateway/webhook"
# Measured on SQLite: a new message (or an echo) is the receipt check, the add (insert,
# counters, audit, the auto-approve check) and the receipt, in savepoints; a duplicate is
# one lookup of its key. The PostgreSQL run holds to the same bounds.
QUERIES_PER_MESSAGE = 9
QUERIES_PER_DUPLICATE = 1
SECRET = "test-webhook-secret"


@dataclass(frozen=True)
class Kind:
    name: str
    fixture: str
    message: Callable[[str], dict]  # a customer's message, as a whole delivery
    unknown: Callable[[], dict]  # a well-formed event of a kind we do not use
    encode: Callable[[dict], bytes]
    sign: Callable[[bytes, str], dict[str, str]]
    # Does the signature cover the body? (Evolution's JWT does not.)
    signs_body: bool = True


def _waha_unknown() -> dict:
    return standin_waha.envelope("presence.update", {"id": "923001234567@c.us", "presences": []})


def _evolution_unknown() -> dict:
    return standin_evolution.envelope("presence.update", {"id": "5511@s.whatsapp.net"})


def _cloud_unknown() -> dict:
    return standin_cloud.build_event("message_template_status_update", {"event": "APPROVED"})


KINDS = {
    "waha": Kind(
        "waha",
        "fake_waha",
        lambda text: standin_waha.message_event(text, event="message.any"),
        _waha_unknown,
        standin_waha.serialize,
        standin_waha.sign,
    ),
    "evolution": Kind(
        "evolution",
        "fake_evolution",
        lambda text: standin_evolution.message_event(text, apikey="instance-token-SECRET"),
        _evolution_unknown,
        lambda body: json.dumps(body).encode(),
        standin_evolution.sign,
        signs_body=False,
    ),
    "cloud": Kind(
        "cloud",
        "fake_cloud",
        lambda text: standin_cloud.message_event(text),
        _cloud_unknown,
        standin_cloud.encode,
        standin_cloud.sign,
    ),
}


@pytest.fixture(params=list(KINDS))
def kind(request, db) -> Kind:
    chosen = KINDS[request.param]
    request.getfixturevalue(chosen.fixture)  # the stand-in, and the settings pointed at it
    return chosen


def post(body: bytes, headers: dict[str, str]) -> Any:
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    extra.pop("HTTP_CONTENT_TYPE", None)
    return Client().post(URL, body, content_type="application/json", **extra)


def deliver(kind: Kind, body: dict, *, secret: str = SECRET) -> Any:
    raw = kind.encode(body)
    return post(raw, kind.sign(raw, secret))


def nothing_stored() -> bool:
    return not Message.objects.exists() and not WebhookReceipt.objects.exists()


def test_a_signed_message_is_stored_once_even_when_delivered_twice(kind):
    body = kind.message("Is the shop open today?")
    first, second = deliver(kind, body), deliver(kind, body)
    assert (first.status_code, second.status_code) == (200, 200)
    stored = Message.objects.get()
    assert (stored.status, stored.body, stored.chat) == (
        Status.INCOMING,
        "Is the shop open today?",
        "923001234567",
    )
    assert WebhookReceipt.objects.count() == 1
    assert second.json()["items"][0]["outcome"] == "already received"


def test_an_unsigned_delivery_is_refused_and_nothing_is_stored(kind):
    raw = kind.encode(kind.message("forged"))
    response = post(raw, {})
    assert response.status_code == 401 and response.json()["ok"] is False
    assert nothing_stored()


def test_a_delivery_signed_with_another_secret_is_refused(kind):
    response = deliver(kind, kind.message("forged"), secret="not-our-secret")
    assert response.status_code == 401
    assert nothing_stored()


@pytest.mark.parametrize("name", [name for name, kind in KINDS.items() if kind.signs_body])
def test_a_body_changed_after_signing_is_refused(request, db, name):
    kind = KINDS[name]
    request.getfixturevalue(kind.fixture)
    raw = kind.encode(kind.message("Pay 10"))
    headers = kind.sign(raw, SECRET)
    assert post(raw.replace(b"Pay 10", b"Pay 99"), headers).status_code == 401
    assert nothing_stored()


MALFORMED = {
    "a key twice": (b'{"event": "message", "event": "message"}', "event"),
    "a lone surrogate": (b'{"event": "message", "payload": {"body": "\\ud800"}}', "payload"),
    "deep nesting": (b'{"a": ' * 200 + b"1" + b"}" * 200, "nest"),
    "NaN": (b'{"event": "message", "n": NaN}', "NaN"),
    "not JSON": (b"event=message", "body"),
    "a NUL": (b'{"event": "message\\u0000"}', "body"),
    "empty": (b"", "empty"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_signed_malformed_body_is_a_400_naming_the_place(kind, case):
    raw, named = MALFORMED[case]
    response = post(raw, kind.sign(raw, SECRET))
    assert response.status_code == 400, response.content
    assert named.lower() in response.json()["error"].lower()
    assert nothing_stored()


def test_a_signed_event_we_do_not_use_is_a_200_stored_as_ignored(kind):
    response = deliver(kind, kind.unknown())
    assert response.status_code == 200
    receipt = WebhookReceipt.objects.get()
    assert receipt.what == "ignored"
    assert not Message.objects.exists()


def test_no_secret_is_stored_from_a_body(db, fake_evolution):
    kind = KINDS["evolution"]
    assert deliver(kind, kind.message("hi")).status_code == 200
    assert "instance-token-SECRET" not in WebhookReceipt.objects.get().payload
    assert "instance-token-SECRET" not in Message.objects.get().raw


def test_evolutions_token_does_not_cover_the_body_but_must_be_ours_and_fresh(db, fake_evolution):
    kind = KINDS["evolution"]
    raw = kind.encode(kind.message("hi"))
    stale = standin_evolution.sign(raw, SECRET, now=0)  # expired in 1970
    assert post(raw, stale).status_code == 401
    assert nothing_stored()


def test_a_captured_waha_body_older_than_the_dedupe_window_cannot_be_replayed(db, fake_waha):
    kind = KINDS["waha"]
    body = kind.message("old")
    body["timestamp"] -= 8 * 24 * 3600 * 1000
    assert deliver(kind, body).status_code == 401
    assert nothing_stored()


def test_without_a_secret_no_delivery_is_trusted(kind, settings):
    settings.GATEWAY_WEBHOOK_SECRET = ""
    assert deliver(kind, kind.message("hi"), secret="").status_code == 401
    assert nothing_stored()


def test_the_scripts_service_posts_no_webhooks(db):
    raw = b'{"event": "message"}'
    assert post(raw, {}).status_code == 404


def test_get_is_only_for_the_cloud_apis_verification(db, fake_waha):
    assert Client().get(URL).status_code == 405


def test_the_cloud_api_verification_echoes_the_challenge_only_to_our_token(db, fake_cloud):
    good = {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "8"}
    response = Client().get(URL, good)
    assert (response.status_code, response.content) == (200, b"8")
    bad = Client().get(URL, {**good, "hub.verify_token": "guess"})
    assert bad.status_code == 403 and b"8" not in bad.content


def test_a_session_event_reaches_the_session_verbs(db, fake_evolution):
    kind = KINDS["evolution"]
    assert deliver(kind, standin_evolution.qrcode_event("2@QRCODE,abc")).status_code == 200
    state = GatewayState.objects.get()
    assert (state.state, state.qr) == ("needs_qr", "2@QRCODE,abc")
    # The login QR (and its picture) is never kept with the stored event.
    stored = WebhookReceipt.objects.get().payload
    assert "2@QRCODE,abc" not in stored and "data:image/" not in stored


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("name", list(KINDS))
def test_no_signed_body_of_any_shape_gets_a_5xx(request, db, name):
    kind = KINDS[name]
    request.getfixturevalue(kind.fixture)

    @hypothesis_settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.one_of(
            JSON,
            st.fixed_dictionaries({"event": st.text(max_size=20), "payload": JSON}),
            st.fixed_dictionaries({"object": st.just("whatsapp_business_account"), "entry": JSON}),
            st.fixed_dictionaries(
                {
                    "event": st.sampled_from(
                        [
                            "message",
                            "message.any",
                            "message.ack",
                            "session.status",
                            "messages.upsert",
                            "send.message",
                            "connection.update",
                            "qrcode.updated",
                            "messages.update",
                        ]
                    ),
                    "payload": JSON,
                    "data": JSON,
                    "timestamp": st.integers(),
                    "session": st.just("default"),
                    "instance": st.just("default"),
                }
            ),
        )
    )
    def check(body):
        raw = json.dumps(body).encode()
        response = post(raw, kind.sign(raw, SECRET))
        assert response.status_code < 500, (body, response.content)

    check()


@pytest.mark.parametrize("stamp", [-(10**17), 10**17, -1])
def test_a_waha_body_dated_outside_the_calendar_is_refused_not_a_5xx(db, fake_waha, stamp):
    # Found by the test above: a timestamp no datetime holds once made a 500.
    kind = KINDS["waha"]
    body = kind.message("when?")
    body["timestamp"] = stamp
    assert deliver(kind, body).status_code in (400, 401)
    assert nothing_stored()


def test_one_message_by_webhook_takes_a_bounded_number_of_queries(
    kind, django_assert_max_num_queries
):
    deliver(kind, kind.message("warm-up"))  # the state's one row, made once
    body = kind.message("Is the shop open?")
    with django_assert_max_num_queries(QUERIES_PER_MESSAGE):
        assert deliver(kind, body).status_code == 200
    with django_assert_max_num_queries(QUERIES_PER_DUPLICATE):
        assert deliver(kind, body).status_code == 200


def test_an_echo_by_webhook_takes_a_bounded_number_of_queries(
    db, fake_waha, django_assert_max_num_queries
):
    kind = KINDS["waha"]
    deliver(kind, kind.message("warm-up"))
    echo = standin_waha.message_event("Thanks!", event="message.any", from_me=True, source="api")
    with django_assert_max_num_queries(QUERIES_PER_MESSAGE):
        assert deliver(kind, echo).status_code == 200
