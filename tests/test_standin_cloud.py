"""The stand-in answers exactly like Meta's WhatsApp Cloud API (GATEWAY.md section 4).

Plain HTTP calls to a real server on 127.0.0.1, and its webhooks caught by a
plain loopback receiver: the status codes, Graph error bodies, webhook bodies
and signature headers pinned here are the wire format the cloud adapter is
written against.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import pytest

from statecore.whatsapp.config import GRAPH_VERSION
from statecore.whatsapp.standin_cloud import (
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_WABA_ID,
    SEND_MODES,
    CloudStandin,
    build_message,
    build_status,
    encode,
    new_wamid,
    sign,
)
from tests.fake_cloud import API_KEY, VERIFY_TOKEN, WEBHOOK_SECRET, FakeCloud, WebhookReceiver

WAMID_SHAPE = re.compile(r"^wamid\.[A-Za-z0-9+/]+=*$")
NUMBER = "923001234567"


@pytest.fixture
def standin(fake_cloud: FakeCloud) -> FakeCloud:
    return fake_cloud


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


@pytest.fixture
def posted(standin: FakeCloud, cloud_receiver: WebhookReceiver) -> WebhookReceiver:
    standin.webhook_url = cloud_receiver.url
    return cloud_receiver


def _auth(token: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _health(http: httpx.Client, standin: FakeCloud, **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", _auth())
    return http.get(
        f"{standin.url}/{standin.phone_number_id}",
        params={"fields": "display_phone_number,verified_name,quality_rating"},
        **kwargs,
    )


def _text(to: str = NUMBER, body: str = "hi", **extra: object) -> dict:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": False, "body": body},
        **extra,
    }


def _send(http: httpx.Client, standin: FakeCloud, body: dict | None = None, **kw) -> httpx.Response:
    kw.setdefault("headers", _auth())
    return http.post(
        f"{standin.url}/{standin.phone_number_id}/messages", json=body or _text(), **kw
    )


def _error(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert error["fbtrace_id"] and error["type"]
    return error


# -- the phone number node -----------------------------------------------------------------


def test_the_health_check_answers_the_asked_fields_and_the_id(standin, http) -> None:
    response = _health(http, standin)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert "x-powered-by" not in response.headers  # Graph is no Express app
    assert response.json() == {
        "display_phone_number": "+92 300 9876543",
        "verified_name": "Stand-in shop",
        "quality_rating": "GREEN",
        "id": DEFAULT_PHONE_NUMBER_ID,
    }
    assert standin.url.endswith(f"/{GRAPH_VERSION}")


def test_set_account_changes_what_it_answers(standin: FakeCloud, http) -> None:
    standin.set_account(number="+1 555-010-0999", quality="YELLOW")

    data = _health(http, standin).json()

    assert (data["display_phone_number"], data["verified_name"], data["quality_rating"]) == (
        "+1 555-010-0999",
        "Stand-in shop",
        "YELLOW",
    )


def test_the_token_may_come_in_the_query_and_any_version_prefix(standin: FakeCloud, http) -> None:
    bare = f"{standin.url.rsplit('/', 1)[0]}/{standin.phone_number_id}"
    assert http.get(bare, params={"fields": "verified_name", "access_token": API_KEY}).json() == {
        "verified_name": "Stand-in shop",
        "id": DEFAULT_PHONE_NUMBER_ID,
    }
    older = bare.replace(f"/{standin.phone_number_id}", f"/v19.0/{standin.phone_number_id}")
    assert http.get(older, headers=_auth()).status_code == 200


def test_no_token_is_graphs_104(standin: FakeCloud, http) -> None:
    response = _health(http, standin, headers={})

    assert response.status_code == 400
    assert _error(response)["code"] == 104


def test_a_wrong_token_is_graphs_401_190(standin: FakeCloud, http) -> None:
    response = _health(http, standin, headers=_auth("nope"))

    assert response.status_code == 401
    error = _error(response)
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert error["message"] == "Invalid OAuth access token - Cannot parse access token"
    assert response.headers["www-authenticate"].startswith(
        'OAuth "Facebook Platform" "invalid_token"'
    )


def test_an_expired_token_is_401_190_463_everywhere_until_renewed(standin: FakeCloud, http) -> None:
    standin.expire_token()

    for response in (_health(http, standin), _send(http, standin)):
        assert response.status_code == 401
        error = _error(response)
        assert (error["code"], error["error_subcode"]) == (190, 463)
        assert error["message"].startswith("Error validating access token: Session has expired")
    assert standin.token_expired and standin.sends == []

    standin.renew_token()
    assert _health(http, standin).status_code == 200


def test_an_unknown_field_is_graphs_100(standin: FakeCloud, http) -> None:
    response = http.get(
        f"{standin.url}/{standin.phone_number_id}", params={"fields": "nope"}, headers=_auth()
    )

    assert response.status_code == 400
    assert _error(response)["code"] == 100
    assert "nonexisting field (nope)" in _error(response)["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_another_id_is_graphs_unsupported_request(standin: FakeCloud, http, method: str) -> None:
    path = "/555666777" if method == "GET" else "/555666777/messages"
    response = http.request(method, standin.url + path, headers=_auth(), json=_text())

    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100,
        33,
        "GraphMethodException",
    )
    assert error["message"].startswith(
        f"Unsupported {method.lower()} request. Object with ID '555666777'"
    )


def test_an_unknown_path_is_graphs_2500(standin: FakeCloud, http) -> None:
    response = http.get(f"{standin.url}/{standin.phone_number_id}/nowhere", headers=_auth())

    assert response.status_code == 400
    assert (_error(response)["code"], _error(response)["message"]) == (
        2500,
        "Unknown path components: /nowhere",
    )


def test_webhook_configuration_follows_the_url_and_overrides(standin: FakeCloud, http) -> None:
    def ask() -> dict:
        return http.get(
            f"{standin.url}/{standin.phone_number_id}",
            params={"fields": "webhook_configuration"},
            headers=_auth(),
        ).json()

    assert ask() == {"webhook_configuration": {}, "id": DEFAULT_PHONE_NUMBER_ID}
    standin.webhook_url = "https://shop.example/hook"
    standin.set_webhook_override("whatsapp_business_account", "https://waba.example/hook")
    assert ask()["webhook_configuration"] == {
        "application": "https://shop.example/hook",
        "whatsapp_business_account": "https://waba.example/hook",
    }
    standin.set_webhook_override("whatsapp_business_account", None)
    assert ask()["webhook_configuration"] == {"application": "https://shop.example/hook"}
    with pytest.raises(ValueError):
        standin.set_webhook_override("app", "https://x")


# -- sends ---------------------------------------------------------------------------------


def test_a_send_answers_metas_shape_with_a_wamid(standin: FakeCloud, http) -> None:
    response = _send(http, standin, _text("+92 300 1234567", "Salaam ✓"))

    assert response.status_code == 200
    data = response.json()
    wamid = data["messages"][0]["id"]
    assert data == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": "+92 300 1234567", "wa_id": NUMBER}],
        "messages": [{"id": wamid}],
    }
    assert WAMID_SHAPE.match(wamid)
    # Like Meta's, the id carries the recipient's number inside.
    assert NUMBER.encode() in base64.b64decode(wamid.removeprefix("wamid."))
    [call] = standin.sends
    assert (call.to, call.chat, call.text, call.mode, call.gateway_id, call.delivered) == (
        NUMBER,
        f"{NUMBER}@c.us",
        "Salaam ✓",
        "ok",
        wamid,
        True,
    )


@pytest.mark.parametrize(
    ("mode", "status", "code", "delivered", "has_id"),
    [
        ("window_closed", 400, 131047, False, False),
        ("window_closed_later", 200, None, False, True),
        ("undeliverable", 400, 131026, False, False),
        ("bad_parameter", 400, 100, False, False),
        ("token_expired", 401, 190, False, False),
        ("rate_limited", 400, 130429, False, False),
        ("error500", 500, 131000, True, True),
    ],
)
def test_each_send_mode_answers_as_meta_does(
    standin: FakeCloud,
    http,
    mode: str,
    status: int,
    code: int | None,
    delivered: bool,
    has_id: bool,
) -> None:
    standin.set_send_mode(mode)

    response = _send(http, standin)

    assert response.status_code == status
    if code is not None:
        error = _error(response)
        assert error["code"] == code
        # WhatsApp's own errors name their code; Graph's token error words it.
        assert error["message"].startswith(
            "Error validating access token" if code == 190 else f"(#{code})"
        )
    [call] = standin.sends
    assert (call.mode, call.delivered, bool(call.gateway_id)) == (mode, delivered, has_id)


def test_the_window_closed_error_is_metas_words(standin: FakeCloud, http) -> None:
    standin.set_send_mode("window_closed")

    error = _error(_send(http, standin))

    assert error["message"] == "(#131047) Re-engagement message"
    assert error["error_data"]["details"].startswith(
        "Message failed to send because more than 24 hours have passed"
    )


def test_the_rate_limit_code_is_a_knob(standin: FakeCloud, http) -> None:
    standin.rate_limit_code = 80007
    standin.set_send_mode("rate_limited")

    assert _error(_send(http, standin))["code"] == 80007


def test_every_mode_is_covered_and_unknown_ones_are_refused(standin: FakeCloud) -> None:
    assert set(SEND_MODES) == {
        "ok",
        "window_closed",
        "window_closed_later",
        "undeliverable",
        "bad_parameter",
        "token_expired",
        "rate_limited",
        "error500",
        "hang",
        "drop",
        "down",
    }
    with pytest.raises(ValueError):
        standin.set_send_mode("bogus")
    with pytest.raises(ValueError):
        standin.queue_send_modes("down")  # a refused connection is no one call's answer
    with pytest.raises(ValueError):
        standin.echo_mode = "sometimes"


def test_drop_hangs_up_after_whatsapp_got_it(standin: FakeCloud, http) -> None:
    standin.set_send_mode("drop")

    with pytest.raises(httpx.RemoteProtocolError):
        _send(http, standin)

    assert [c.delivered for c in standin.sends] == [True]


def test_hang_answers_nothing_until_stopped(standin: FakeCloud) -> None:
    standin.set_send_mode("hang")
    outcome: list[object] = []

    def call() -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            try:
                outcome.append(_send(client, standin))
            except httpx.HTTPError as exc:
                outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    caller.join(timeout=0.3)
    assert caller.is_alive() and outcome == []  # still waiting for an answer
    standin.stop()
    caller.join(timeout=10)

    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.HTTPError)  # released without an answer
    assert [c.delivered for c in standin.sends] == [True]


def test_down_refuses_connections_and_comes_back_on_the_same_port(standin: FakeCloud, http) -> None:
    port = standin.port
    standin.set_send_mode("down")

    with pytest.raises(httpx.ConnectError):
        _health(http, standin)

    standin.set_send_mode("ok")
    assert standin.port == port
    assert _send(http, standin).status_code == 200


def test_queued_modes_answer_one_send_each_then_the_set_mode(standin: FakeCloud, http) -> None:
    standin.queue_send_modes("window_closed", "rate_limited")

    codes = [_send(http, standin).status_code for _ in range(3)]

    assert codes == [400, 400, 200]
    assert [c.mode for c in standin.sends] == ["window_closed", "rate_limited", "ok"]
    assert [c.delivered for c in standin.delivered()] == [True]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({**_text(), "messaging_product": "sms"}, "messaging_product is required"),
        ({k: v for k, v in _text().items() if k != "to"}, "to is required"),
        (_text(body=""), "text['body'] is required"),
        (_text(body="x" * 4097), "text['body'] must be at most 4096 characters long"),
        (_text(biz_opaque_callback_data="r" * 513), "biz_opaque_callback_data must be at most 512"),
    ],
)
def test_a_malformed_send_is_graphs_100_and_sends_nothing(
    standin: FakeCloud, http, body: dict, words: str
) -> None:
    response = _send(http, standin, body)

    assert response.status_code == 400
    assert _error(response)["code"] == 100 and words in _error(response)["message"]
    assert standin.sends == []


def test_the_longest_text_and_callback_data_go(standin: FakeCloud, http) -> None:
    body = _text(body="x" * 4096, biz_opaque_callback_data="r" * 512)

    assert _send(http, standin, body).status_code == 200
    assert standin.sends[0].reply_id == "r" * 512


def test_calls_are_counted_per_route(standin: FakeCloud, http) -> None:
    _health(http, standin)
    _health(http, standin, headers={})
    _send(http, standin)
    http.get(
        f"{standin.url}/{standin.phone_number_id}",
        params={"fields": "webhook_configuration"},
        headers=_auth(),
    )
    http.get(f"{standin.url}/elsewhere", headers=_auth())

    assert standin.calls() == {"status": 2, "send": 1, "webhook_config": 1, "other": 1}


# -- webhooks --------------------------------------------------------------------------------


def test_a_customers_message_is_posted_signed_as_meta_signs(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    message = standin.add_customer_message("Salaam ü/é", name="Ayesha Khan")

    [request] = posted.wait_for_posts(1)

    assert request.path == "/gateway/webhook"
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "facebookexternalua"
    key = WEBHOOK_SECRET.encode()
    assert headers["x-hub-signature-256"] == (
        "sha256=" + hmac.new(key, request.body, hashlib.sha256).hexdigest()
    )
    assert (
        headers["x-hub-signature"]
        == "sha1=" + hmac.new(key, request.body, hashlib.sha1).hexdigest()
    )
    # Meta's serialisation: compact, with "/" and non-ASCII escaped.
    assert b"\\/" in request.body and b"\\u00fc" in request.body and b": " not in request.body
    body = json.loads(request.body)
    assert body["object"] == "whatsapp_business_account"
    [entry] = body["entry"]
    assert entry["id"] == DEFAULT_WABA_ID
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {
        "display_phone_number": "923009876543",
        "phone_number_id": DEFAULT_PHONE_NUMBER_ID,
    }
    assert value["contacts"][0]["profile"] == {"name": "Ayesha Khan"}
    assert value["contacts"][0]["wa_id"] == NUMBER
    assert value["messages"] == [message]
    assert (message["from"], message["type"], message["text"]) == (
        NUMBER,
        "text",
        {"body": "Salaam ü/é"},
    )
    assert WAMID_SHAPE.match(message["id"]) and message["timestamp"].isdigit()
    assert standin.messages() == [message]
    standin.wait_for_webhooks()
    assert [p.status for p in standin.posted()] == [200]


def test_a_hidden_number_leaves_only_the_user_id(standin: FakeCloud, posted) -> None:
    message = standin.add_customer_message("x", sender="923004445556", hide_number=True)

    [request] = posted.wait_for_posts(1)

    assert "from" not in message and message["from_user_id"].startswith("PK.")
    [contact] = json.loads(request.body)["entry"][0]["changes"][0]["value"]["contacts"]
    assert contact == {"profile": {"name": "Ayesha Khan"}, "user_id": message["from_user_id"]}
    assert b"923004445556" not in request.body


def test_lost_webhooks_stay_in_the_store_only(standin: FakeCloud, posted: WebhookReceiver) -> None:
    standin.lose_webhooks = True

    message = standin.add_customer_message("never arrives")
    standin.wait_for_webhooks()

    assert posted.received == [] and standin.posted() == []
    assert standin.messages() == [message]


def test_stop_finishes_the_webhooks_still_to_be_posted(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    sent = [standin.add_customer_message(f"m{n}")["id"] for n in range(5)]

    standin.stop()

    values = [json.loads(r.body)["entry"][0]["changes"][0]["value"] for r in posted.posts()]
    assert sorted(v["messages"][0]["id"] for v in values) == sorted(sent)


def test_without_a_webhook_url_nothing_is_posted(standin: FakeCloud) -> None:
    standin.add_customer_message("nowhere to go")

    assert standin.posted() == [] and len(standin.messages()) == 1
    with pytest.raises(RuntimeError):
        standin.post_webhook({"object": "whatsapp_business_account", "entry": []})


def test_post_webhook_returns_the_answer_and_records_it(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    posted.status = 401

    assert standin.post_webhook({"object": "whatsapp_business_account", "entry": []}) == 401
    assert [p.status for p in standin.posted()] == [401]

    standin.webhook_url = "http://127.0.0.1:9/nothing-listens"
    assert standin.post_webhook({"object": "x"}) == 0
    assert standin.posted()[-1].error


@pytest.mark.parametrize("mode", ["ok", "error500", "drop"])
def test_our_send_is_echoed_as_a_sent_status_before_the_answer(
    standin: FakeCloud, http, posted: WebhookReceiver, mode: str
) -> None:
    standin.set_send_mode(mode)

    try:
        _send(http, standin, _text(biz_opaque_callback_data="reply_1"))
    except httpx.HTTPError:
        pass  # the drop: no answer at all
    # Posted inside the send: already here when the answer (or the hang-up) came.
    [request] = posted.posts()

    [status] = json.loads(request.body)["entry"][0]["changes"][0]["value"]["statuses"]
    assert (status["id"], status["status"], status["recipient_id"]) == (
        standin.sends[0].gateway_id,
        "sent",
        NUMBER,
    )
    assert status["biz_opaque_callback_data"] == "reply_1"


def test_an_echo_after_the_answer_or_never(
    standin: FakeCloud, http, posted: WebhookReceiver
) -> None:
    standin.echo_mode = "after_answer"
    _send(http, standin)
    assert len(posted.wait_for_posts(1)) == 1

    standin.echo_mode = "never"
    _send(http, standin)
    standin.wait_for_webhooks()
    assert len(posted.posts()) == 1


@pytest.mark.parametrize("mode", ["window_closed", "undeliverable", "token_expired"])
def test_a_refused_send_posts_no_echo(standin: FakeCloud, http, posted, mode: str) -> None:
    standin.set_send_mode(mode)

    _send(http, standin)
    standin.wait_for_webhooks()

    assert posted.posts() == []


def test_a_window_closed_later_posts_a_failed_status_and_no_sent(
    standin: FakeCloud, http, posted: WebhookReceiver
) -> None:
    standin.set_send_mode("window_closed_later")

    wamid = _send(http, standin, _text(biz_opaque_callback_data="reply_2")).json()["messages"][0][
        "id"
    ]

    [request] = posted.wait_for_posts(1)
    standin.wait_for_webhooks()
    assert len(posted.posts()) == 1
    [status] = json.loads(request.body)["entry"][0]["changes"][0]["value"]["statuses"]
    assert (status["id"], status["status"]) == (wamid, "failed")
    assert status["errors"][0]["code"] == 131047
    assert status["errors"][0]["title"] == "Re-engagement message"
    assert "biz_opaque_callback_data" not in status  # a failed status is matched by its wamid


def test_fail_delivery_posts_the_failed_status_for_that_message(
    standin: FakeCloud, http, posted: WebhookReceiver
) -> None:
    standin.echo_mode = "never"
    wamid = _send(http, standin, _text("923001112223")).json()["messages"][0]["id"]

    assert standin.fail_delivery(wamid, code=131047) == 200

    [status] = json.loads(posted.posts()[0].body)["entry"][0]["changes"][0]["value"]["statuses"]
    assert (status["id"], status["status"], status["recipient_id"]) == (
        wamid,
        "failed",
        "923001112223",
    )
    assert (status["errors"][0]["code"], status["errors"][0]["title"]) == (
        131047,
        "Re-engagement message",
    )


def test_an_answer_from_the_phone_is_an_smb_message_echo(
    standin: FakeCloud, posted: WebhookReceiver
) -> None:
    echo = standin.answer_from_phone("On my way", chat="923001112223@c.us")

    [request] = posted.wait_for_posts(1)

    change = json.loads(request.body)["entry"][0]["changes"][0]
    assert change["field"] == "smb_message_echoes"
    assert change["value"]["message_echoes"] == [echo]
    assert (echo["from"], echo["to"], echo["text"]) == (
        "923009876543",
        "923001112223",
        {"body": "On my way"},
    )


def test_verify_callback_does_metas_get(standin: FakeCloud, posted: WebhookReceiver) -> None:
    assert standin.verify_callback("1234") == (200, "1234")

    [request] = posted.received
    assert (request.method, request.query) == (
        "GET",
        {"hub.mode": "subscribe", "hub.challenge": "1234", "hub.verify_token": VERIFY_TOKEN},
    )
    posted.verify_token = "another"
    assert standin.verify_callback()[0] == 403


def test_sign_and_encode() -> None:
    raw = encode({"a": "b/ç"})

    assert raw == b'{"a":"b\\/\\u00e7"}'
    assert json.loads(raw) == {"a": "b/ç"}
    assert sign(raw, "s")["X-Hub-Signature-256"] == (
        "sha256=" + hmac.new(b"s", raw, hashlib.sha256).hexdigest()
    )
    assert "X-Hub-Signature-256" not in sign(raw, "")


def test_a_failed_status_never_carries_the_reply_id() -> None:
    # Meta returns biz_opaque_callback_data in sent, delivered and read only.
    assert "biz_opaque_callback_data" not in build_status("wamid.F", "failed", reply_id="r")
    assert build_status("wamid.F", "read", reply_id="r")["biz_opaque_callback_data"] == "r"


def test_builders_make_each_media_kind() -> None:
    voice = build_message(media="voice")
    assert (voice["type"], voice["audio"]["voice"]) == ("audio", True)
    image = build_message("caption", media="image")
    assert image["image"]["caption"] == "caption" and image["image"]["mime_type"] == "image/jpeg"
    assert build_message("Shop", media="location")["location"]["name"] == "Shop"
    assert new_wamid() != new_wamid()
    with pytest.raises(ValueError):
        build_message(media="hologram")


# -- the control page ---------------------------------------------------------------------


def _page(http: httpx.Client, standin: FakeCloud) -> str:
    response = http.get(standin.control_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def test_the_control_page_says_it_is_a_stand_in_and_shows_no_secret(
    standin: FakeCloud, http
) -> None:
    _send(http, standin, _text(body="Your invoice"))

    page = _page(http, standin)

    assert "STAND-IN Cloud API: nothing is sent to WhatsApp" in page
    assert "923001234567@c.us" in page and "Your invoice" in page
    for action in (
        "expire-token",
        "renew-token",
        "account",
        "send-mode",
        "echo-mode",
        "customer-message",
        "phone-answer",
        "lose-webhooks",
        "fail-delivery",
        "verify-callback",
    ):
        assert f'action="/_standin/{action}"' in page
    for secret in (API_KEY, WEBHOOK_SECRET, VERIFY_TOKEN):
        assert secret not in page
    assert standin.calls() == {"send": 1}  # the page is not a Graph call


def test_a_customer_message_from_the_page_is_posted_and_shown_escaped(
    standin: FakeCloud, http, posted: WebhookReceiver
) -> None:
    response = http.post(
        standin.control_url + "customer-message",
        data={
            "sender": "92 300 5555555",
            "name": "<i>Eve</i>",
            "text": "<script>alert(1)</script>",
        },
    )

    assert (response.status_code, response.headers["location"]) == (303, "/_standin/")
    [message] = standin.messages()
    assert (message["from"], message["text"]["body"]) == (
        "923005555555",
        "<script>alert(1)</script>",
    )
    assert len(posted.wait_for_posts(1)) == 1
    page = _page(http, standin)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_turns_the_knobs(standin: FakeCloud, http, posted: WebhookReceiver) -> None:
    base = standin.control_url
    assert http.post(base + "expire-token").status_code == 303 and standin.token_expired
    assert http.post(base + "renew-token").status_code == 303 and not standin.token_expired
    http.post(base + "account", data={"number": "+44 20 7946 0000", "name": "Shop <3"})
    assert standin.account["verified_name"] == "Shop <3"
    assert "Shop &lt;3" in _page(http, standin)
    assert http.post(base + "send-mode", data={"mode": "window_closed"}).status_code == 303
    assert _send(http, standin).status_code == 400
    assert http.post(base + "echo-mode", data={"mode": "never"}).status_code == 303
    assert standin.echo_mode == "never"
    http.post(base + "lose-webhooks", data={"lose": "on"})
    assert standin.lose_webhooks is True
    http.post(base + "lose-webhooks", data={})
    assert standin.lose_webhooks is False
    assert http.post(base + "phone-answer", data={"chat": NUMBER, "text": "hi"}).status_code == 303
    assert http.post(base + "fail-delivery", data={"gateway_id": "wamid.X"}).status_code == 303
    assert http.post(base + "verify-callback").status_code == 303
    # "down" would take the page down with it; nonsense is refused, escaped.
    assert http.post(base + "send-mode", data={"mode": "down"}).status_code == 400
    refused = http.post(base + "send-mode", data={"mode": "<b>"})
    assert refused.status_code == 400 and "&lt;b&gt;" in refused.text
    assert http.post(base + "nowhere").status_code == 404
    assert _health(http, standin).status_code == 200


def test_a_knob_is_never_turned_by_a_get(standin: FakeCloud, http) -> None:
    # A link followed or prefetched must not expire the token.
    assert http.get(standin.control_url + "expire-token").status_code == 404
    assert standin.token_expired is False


def test_verify_callback_without_a_url_is_refused_on_the_page(standin: FakeCloud, http) -> None:
    assert http.post(standin.control_url + "verify-callback").status_code == 400


# -- announcing and the command line ----------------------------------------------------------


def test_announce_labels_every_send_and_never_prints_a_secret(
    http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = CloudStandin(api_key="cli-secret-key", webhook_secret="cli-app-secret", announce=True)
    standin.start()
    try:
        standin.expire_token()
        standin.renew_token()
        wamid = _send(http, standin, headers=_auth("cli-secret-key")).json()["messages"][0]["id"]
    finally:
        standin.stop()
    out = capsys.readouterr().out
    assert f"STAND-IN Cloud API, nothing sent to WhatsApp: to {NUMBER}@c.us -> {wamid}" in out
    assert "STAND-IN Cloud API: the access token expired" in out
    assert "cli-secret-key" not in out and "cli-app-secret" not in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_line_starts_with_the_token_expired_under_show_qr(http: httpx.Client) -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "statecore.whatsapp.standin_cloud",
        "--port",
        str(port),
        "--api-key",
        "cli-key",
        "--webhook-secret",
        "cli-secret",
        "--phone-number-id",
        "123456789",
        "--show-qr",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
            url = f"http://127.0.0.1:{port}/{GRAPH_VERSION}"
            assert f"STAND-IN Cloud API on {url} (phone number id 123456789)" in lines[0]
            assert f"Control page: http://127.0.0.1:{port}/_standin/" in lines[1]
            response = http.get(f"{url}/123456789", headers=_auth("cli-key"))
            assert (response.status_code, response.json()["error"]["code"]) == (401, 190)
            assert http.get(f"{url}/123456789", headers=_auth("nope")).status_code == 401
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=5)
    assert "cli-key" not in "".join(lines) + out + err
    assert "cli-secret" not in "".join(lines) + out + err


def _environment(**gateway: str) -> dict[str, str]:
    """This process's environment without its GATEWAY_* variables, plus ``gateway``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, **gateway}


def test_the_command_line_takes_its_secrets_from_the_environment(http: httpx.Client) -> None:
    # Not on the command line, which `ps` shows to anyone on the machine.
    port = _free_port()
    receiver = WebhookReceiver(verify_token="env-verify")
    command = [sys.executable, "-m", "statecore.whatsapp.standin_cloud", "--port", str(port)]
    command += ["--webhook-url", receiver.url, "--phone-number-id", "123456789"]
    env = _environment(
        GATEWAY_API_KEY="env-key",
        GATEWAY_WEBHOOK_SECRET="env-secret",
        GATEWAY_VERIFY_TOKEN="env-verify",
    )
    try:
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
                url = f"http://127.0.0.1:{port}/{GRAPH_VERSION}/123456789"
                assert http.get(url, headers=_auth("env-key")).status_code == 200
                assert http.get(url, headers=_auth("cli-key")).status_code == 401
                control = f"http://127.0.0.1:{port}/_standin/"
                assert (
                    http.post(control + "customer-message", data={"text": "hi"}).status_code == 303
                )
                [posted] = receiver.wait_for_posts(1)
                assert http.post(control + "verify-callback").status_code == 303
            finally:
                proc.terminate()
                out, err = proc.communicate(timeout=5)
    finally:
        receiver.close()
    signature = hmac.new(b"env-secret", posted.body, hashlib.sha256).hexdigest()
    assert posted.headers["X-Hub-Signature-256"] == f"sha256={signature}"
    [verification] = [r for r in receiver.received if r.method == "GET"]
    assert verification.query["hub.verify_token"] == "env-verify"
    shown = "".join(lines) + out + err
    assert "env-key" not in shown and "env-secret" not in shown and "env-verify" not in shown


def test_the_command_line_wants_a_token_from_the_option_or_the_environment() -> None:
    command = [sys.executable, "-m", "statecore.whatsapp.standin_cloud"]
    done = subprocess.run(
        [*command, "--port", str(_free_port())],
        env=_environment(GATEWAY_WEBHOOK_SECRET="env-secret"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--api-key" in done.stderr and "GATEWAY_API_KEY" in done.stderr
