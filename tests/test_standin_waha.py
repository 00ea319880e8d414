"""The stand-in answers and posts exactly like WAHA (GATEWAY.md section 2).

Plain HTTP calls to a real server on 127.0.0.1, and a real HTTP endpoint
receiving its webhooks: the status codes, bodies and headers pinned here are
the wire format the waha adapter is written against.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from statecore.whatsapp.standin_waha import (
    DEFAULT_ACCOUNT,
    DEFAULT_PAIRING_CODE,
    NOT_EXPECTED,
    UNAUTHORIZED,
    SendCall,
    WahaStandin,
    ack_event,
    message_event,
    new_event_id,
    serialize,
    session_event,
    sign,
)
from tests.fake_waha import API_KEY, WEBHOOK_SECRET, HookReceiver

QR_SHAPE = re.compile(r"^2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}$")
SENT_ID_SHAPE = re.compile(r"^3EB0[0-9A-F]{16}$")
EVENT_ID_SHAPE = re.compile(r"^evt_[0-9a-hjkmnp-tv-z]{26}$")
NUMBER = "923001234567"
CHAT = f"{NUMBER}@c.us"


@pytest.fixture
def standin(fake_waha: WahaStandin) -> WahaStandin:
    return fake_waha


@pytest.fixture
def http(standin: WahaStandin) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not stand between us and loopback.
    with httpx.Client(
        base_url=standin.url, headers={"X-Api-Key": API_KEY}, timeout=5, trust_env=False
    ) as client:
        yield client


@pytest.fixture
def hooks(standin: WahaStandin, waha_hook_receiver: HookReceiver) -> HookReceiver:
    standin.webhook_url = waha_hook_receiver.url
    return waha_hook_receiver


def _send(
    http: httpx.Client, text: str = "Your order is ready", **fields: object
) -> httpx.Response:
    return http.post(
        "/api/sendText", json={"session": "default", "chatId": CHAT, "text": text, **fields}
    )


# -- the API key -------------------------------------------------------------------------

ROUTES = [
    ("GET", "/api/sessions/default", None),
    ("PUT", "/api/sessions/default", {"config": None}),
    ("GET", "/api/sessions/default/me", None),
    ("POST", "/api/sessions/default/restart", None),
    ("POST", "/api/sessions/default/logout", None),
    ("GET", "/api/default/auth/qr?format=raw", None),
    ("POST", "/api/default/auth/request-code", {"phoneNumber": NUMBER}),
    ("POST", "/api/sendText", {"session": "default", "chatId": CHAT, "text": "hi"}),
    ("GET", f"/api/default/chats/{CHAT}/messages?limit=5", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("key", [None, "wrong-key", API_KEY.upper()])
def test_every_route_refuses_a_missing_or_wrong_key_with_wahas_401(
    standin: WahaStandin, method: str, path: str, body: object, key: str | None
) -> None:
    headers = {"X-Api-Key": key} if key else {}
    with httpx.Client(base_url=standin.url, timeout=5, trust_env=False) as bare:
        response = bare.request(method, path, json=body, headers=headers)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert standin.sends == [] and standin.status == "WORKING" and standin.config is None


def test_the_key_may_come_as_a_query_parameter(standin: WahaStandin) -> None:
    with httpx.Client(timeout=5, trust_env=False) as bare:
        response = bare.get(f"{standin.url}/api/sessions/default", params={"x-api-key": API_KEY})
    assert response.status_code == 200


def test_a_standin_without_a_key_is_open_like_waha_without_one() -> None:
    standin = WahaStandin(api_key="").start()
    try:
        with httpx.Client(timeout=5, trust_env=False) as bare:
            assert bare.get(f"{standin.url}/api/sessions/default").status_code == 200
    finally:
        standin.stop()


# -- the session -----------------------------------------------------------------------------


def test_a_working_session_as_waha_describes_it(http: httpx.Client) -> None:
    response = http.get("/api/sessions/default")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    data = response.json()
    assert list(data) == [
        "name",
        "status",
        "config",
        "me",
        "assignedWorker",
        "presence",
        "timestamps",
        "engine",
    ]
    assert (data["name"], data["status"], data["config"], data["me"]) == (
        "default",
        "WORKING",
        None,
        DEFAULT_ACCOUNT,
    )
    assert data["engine"]["engine"] == "WEBJS"


@pytest.mark.parametrize("status", ["STOPPED", "STARTING", "SCAN_QR_CODE", "WORKING", "FAILED"])
def test_set_status_is_what_the_session_route_says(
    standin: WahaStandin, http: httpx.Client, status: str
) -> None:
    standin.set_status(status)
    data = http.get("/api/sessions/default").json()
    assert data["status"] == status
    # Only a WORKING session has an account; a QR only while SCAN_QR_CODE.
    assert (data["me"] is not None) is (status != "SCAN_QR_CODE")
    assert (standin.qr is not None) is (status == "SCAN_QR_CODE")


def test_unknown_statuses_are_refused(standin: WahaStandin) -> None:
    with pytest.raises(ValueError):
        standin.set_status("READY")


def test_another_session_is_not_found(http: httpx.Client) -> None:
    response = http.get("/api/sessions/other")
    assert (response.status_code, response.json()) == (
        404,
        {"statusCode": 404, "message": "Session not found", "error": "Not Found"},
    )
    response = http.get("/api/other/auth/qr", params={"format": "raw"})
    assert response.status_code == 404
    assert response.json()["message"].startswith("We didn't find a session with name 'other'")


def test_me_is_the_account_or_nests_empty_null(standin: WahaStandin, http: httpx.Client) -> None:
    standin.set_account(number="923111111111", name="Shop ✓")
    assert http.get("/api/sessions/default/me").json() == {
        "id": "923111111111@c.us",
        "pushName": "Shop ✓",
    }
    standin.show_qr()
    response = http.get("/api/sessions/default/me")
    assert (response.status_code, response.content) == (200, b"")


def test_the_qr_only_while_scan_qr_code(standin: WahaStandin, http: httpx.Client) -> None:
    response = http.get("/api/default/auth/qr", params={"format": "raw"})
    assert (response.status_code, response.json()) == (
        422,
        {
            "error": NOT_EXPECTED,
            "session": "default",
            "status": "WORKING",
            "expected": ["SCAN_QR_CODE"],
        },
    )
    qr = standin.show_qr()
    assert QR_SHAPE.match(qr)
    response = http.get("/api/default/auth/qr", params={"format": "raw"})
    assert (response.status_code, response.json()) == (200, {"value": qr})


def test_the_qr_as_an_image(standin: WahaStandin, http: httpx.Client) -> None:
    standin.show_qr("2@abc,def,ghi,jkl")
    png = http.get("/api/default/auth/qr", headers={"Accept": "image/png"})
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    as_json = http.get("/api/default/auth/qr", headers={"Accept": "application/json"}).json()
    assert as_json["mimetype"] == "image/png"
    assert base64.b64decode(as_json["data"]) == png.content


def test_a_pairing_code_while_waiting_for_a_link(standin: WahaStandin, http: httpx.Client) -> None:
    refused = http.post("/api/default/auth/request-code", json={"phoneNumber": NUMBER})
    assert refused.status_code == 422
    assert "The current status is WORKING" in refused.json()["message"]
    standin.show_qr()
    response = http.post("/api/default/auth/request-code", json={"phoneNumber": NUMBER})
    assert (response.status_code, response.json()) == (201, {"code": DEFAULT_PAIRING_CODE})
    assert standin.pairing_requests() == [NUMBER, NUMBER]
    assert http.post("/api/default/auth/request-code", json={}).status_code == 400


# -- sending -----------------------------------------------------------------------------------


def test_a_webjs_send_answers_whatsapp_web_js_message(
    standin: WahaStandin, http: httpx.Client
) -> None:
    response = _send(http, "Salaam ✓")
    assert response.status_code == 201
    data = response.json()
    [call] = standin.sends
    assert call == SendCall(CHAT, "Salaam ✓", "ok", call.gateway_id, True)
    assert SENT_ID_SHAPE.match(call.gateway_id)
    assert data["id"] == {
        "fromMe": True,
        "remote": CHAT,
        "id": call.gateway_id,
        "_serialized": f"true_{CHAT}_{call.gateway_id}",
    }
    assert (data["body"], data["to"], data["fromMe"], data["ack"]) == ("Salaam ✓", CHAT, True, 0)
    # NestJS answers with JSON.stringify: compact, non-ASCII as it is.
    assert '"body":"Salaam ✓"' in response.content.decode()


@pytest.mark.parametrize(
    ("engine", "content", "stamp"),
    [
        ("NOWEB", {"extendedTextMessage": {"text": "hi"}}, str),
        ("GOWS", {"conversation": "hi"}, int),
    ],
)
def test_a_noweb_or_gows_send_answers_a_key_and_pending(
    standin: WahaStandin, http: httpx.Client, engine: str, content: dict, stamp: type
) -> None:
    standin.engine = engine
    data = _send(http, "hi").json()
    [call] = standin.sends
    assert data["key"] == {
        "remoteJid": f"{NUMBER}@s.whatsapp.net",
        "fromMe": True,
        "id": call.gateway_id,
    }
    assert (data["status"], data["message"]) == ("PENDING", content)
    assert isinstance(data["messageTimestamp"], stamp)


def test_some_versions_answer_an_empty_201(standin: WahaStandin, http: httpx.Client) -> None:
    standin.empty_201 = True
    response = _send(http)
    assert (response.status_code, response.content) == (201, b"")
    assert [c.delivered for c in standin.sends] == [True]


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({"session": "default", "text": "hi"}, ["chatId must be a string"]),
        ({"session": "default", "chatId": CHAT}, ["text must be a string"]),
        ({"session": 5, "chatId": CHAT, "text": "hi"}, ["session must be a string"]),
        ({}, ["chatId must be a string", "text must be a string"]),
    ],
)
def test_a_send_without_its_fields_is_nests_400(
    standin: WahaStandin, http: httpx.Client, body: dict, problems: list[str]
) -> None:
    response = http.post("/api/sendText", json=body)
    assert (response.status_code, response.json()) == (
        400,
        {"message": problems, "error": "Bad Request", "statusCode": 400},
    )
    assert standin.sends == []


def test_a_broken_json_body_is_a_400(standin: WahaStandin, http: httpx.Client) -> None:
    response = http.post(
        "/api/sendText", content=b'{"chatId": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"] == "Bad Request"
    assert standin.sends == []


def test_a_send_to_another_session_is_not_found(standin: WahaStandin, http: httpx.Client) -> None:
    response = _send(http, session="other")
    assert response.status_code == 404
    assert standin.sends == []


@pytest.mark.parametrize("status", ["STOPPED", "STARTING", "SCAN_QR_CODE", "FAILED"])
def test_a_send_while_the_session_is_not_working_is_the_422_with_expected(
    standin: WahaStandin, http: httpx.Client, status: str
) -> None:
    standin.set_status(status)
    response = _send(http)
    assert (response.status_code, response.json()) == (
        422,
        {"error": NOT_EXPECTED, "session": "default", "status": status, "expected": ["WORKING"]},
    )
    assert [(c.mode, c.delivered, c.gateway_id) for c in standin.sends] == [("ok", False, "")]


@pytest.mark.parametrize(
    ("mode", "status", "body", "delivered"),
    [
        (
            "not_working",
            422,
            {
                "error": NOT_EXPECTED,
                "session": "default",
                "status": "STOPPED",
                "expected": ["WORKING"],
            },
            False,
        ),
        ("unauthorized", 401, UNAUTHORIZED, False),
        ("validation", 400, None, False),
        ("unprocessable", 422, None, False),
        ("error500", 500, None, True),
    ],
)
def test_send_modes_answer_as_waha_does(
    standin: WahaStandin,
    http: httpx.Client,
    mode: str,
    status: int,
    body: dict | None,
    delivered: bool,
) -> None:
    standin.set_send_mode(mode)
    response = _send(http)
    assert response.status_code == status
    data = response.json()
    if body is not None:
        assert data == body
    if mode == "validation":
        assert data["error"] == "Bad Request" and isinstance(data["message"], list)
    if mode == "unprocessable":
        assert "expected" not in data and data["statusCode"] == 422
    if mode == "error500":
        assert data["statusCode"] == 500 and data["exception"]["message"] == "stand-in error"
    [call] = standin.sends
    assert (call.mode, call.delivered, bool(call.gateway_id)) == (mode, delivered, delivered)


def test_drop_hangs_up_after_the_message_went(standin: WahaStandin, http: httpx.Client) -> None:
    standin.set_send_mode("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        _send(http)
    assert [c.delivered for c in standin.sends] == [True]


def test_hang_outlasts_the_client_after_the_message_went(standin: WahaStandin) -> None:
    standin.set_send_mode("hang")
    with httpx.Client(timeout=0.3, trust_env=False, headers={"X-Api-Key": API_KEY}) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.post(
                f"{standin.url}/api/sendText",
                json={"session": "default", "chatId": CHAT, "text": "x"},
            )
    assert [c.delivered for c in standin.sends] == [True]


def test_down_refuses_connections_and_comes_back_on_the_same_port(
    standin: WahaStandin, http: httpx.Client
) -> None:
    port = standin.port
    standin.set_send_mode("down")
    with pytest.raises(httpx.ConnectError):
        _send(http)
    standin.set_send_mode("ok")
    assert standin.port == port
    assert _send(http).status_code == 201
    assert [c.delivered for c in standin.sends] == [True]


def test_queued_modes_come_first_then_the_set_mode(
    standin: WahaStandin, http: httpx.Client
) -> None:
    standin.set_send_mode("not_working")
    standin.queue_send_modes("ok", "error500")
    assert [_send(http).status_code for _ in range(3)] == [201, 500, 422]
    assert [c.delivered for c in standin.sends] == [True, True, False]
    with pytest.raises(ValueError):
        standin.queue_send_modes("down")
    with pytest.raises(ValueError):
        standin.set_send_mode("refuse")


def test_concurrent_sends_are_all_recorded(standin: WahaStandin, http: httpx.Client) -> None:
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda i: _send(http, f"m{i}").status_code, range(30))) == {201}
    assert len({c.gateway_id for c in standin.sends}) == 30
    assert standin.calls()["send"] == 30


# -- webhooks ----------------------------------------------------------------------------------


def _signature(received, secret: str = WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), received.body, hashlib.sha512).hexdigest()


def test_a_customer_message_is_posted_signed_as_waha_posts_it(
    standin: WahaStandin, hooks: HookReceiver
) -> None:
    before = int(time.time() * 1000)
    payload = standin.add_customer_message("Is the shop open?", name="Farah")
    [received] = hooks.wait_for(1)
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert headers["x-webhook-hmac"] == _signature(received)
    assert headers["x-webhook-hmac-algorithm"] == "sha512"
    assert headers["content-type"] == "application/json"
    assert headers["x-webhook-request-id"] and before <= int(headers["x-webhook-timestamp"])
    body = received.json()
    assert list(body) == [
        "id",
        "timestamp",
        "event",
        "session",
        "me",
        "payload",
        "engine",
        "environment",
    ]
    assert EVENT_ID_SHAPE.match(body["id"])
    assert (body["event"], body["session"], body["engine"]) == ("message.any", "default", "WEBJS")
    assert before <= body["timestamp"] <= time.time() * 1000
    assert body["payload"] == payload
    assert payload["id"].startswith(f"false_{CHAT}_3A")
    assert (payload["from"], payload["fromMe"], payload["body"]) == (
        CHAT,
        False,
        "Is the shop open?",
    )
    assert payload["_data"]["notifyName"] == "Farah"
    # The body is JavaScript's compact JSON.
    assert received.body == serialize(body)


def test_both_message_events_when_both_are_subscribed(
    standin: WahaStandin, hooks: HookReceiver
) -> None:
    standin.webhook_events = ("message", "message.any")
    standin.add_customer_message("hi")
    first, second = hooks.bodies()
    assert (first["event"], second["event"]) == ("message", "message.any")
    assert first["payload"] == second["payload"] and first["id"] != second["id"]


def test_no_secret_means_unsigned_webhooks(standin: WahaStandin, hooks: HookReceiver) -> None:
    standin.webhook_secret = ""
    standin.add_customer_message("hi")
    [received] = hooks.wait_for(1)
    assert not any(k.lower().startswith("x-webhook-hmac") for k in received.headers)


@pytest.mark.parametrize("engine", ["NOWEB", "GOWS"])
def test_a_hidden_contact_with_a_number_on_noweb_and_gows(
    standin: WahaStandin, hooks: HookReceiver, engine: str
) -> None:
    standin.engine = engine
    payload = standin.add_customer_message("hi", sender="24816190603455@lid", phone=NUMBER)
    assert payload["from"] == "24816190603455@lid"
    if engine == "NOWEB":
        assert payload["_data"]["key"]["remoteJidAlt"] == f"{NUMBER}@s.whatsapp.net"
        assert payload["_data"]["message"] == {"conversation": "hi"}
    else:
        assert payload["_data"]["Info"]["SenderAlt"] == f"{NUMBER}@s.whatsapp.net"
        assert payload["_data"]["Message"] == {"conversation": "hi"}
    assert hooks.bodies()[0]["engine"] == engine


def test_a_group_message_names_its_participant(standin: WahaStandin, hooks: HookReceiver) -> None:
    group = "120363025246125888@g.us"
    payload = standin.add_customer_message("hi all", sender=group, participant="923009990000@c.us")
    assert payload["id"].startswith(f"false_{group}_") and payload["id"].endswith(
        "_923009990000@c.us"
    )
    assert (payload["from"], payload["participant"]) == (group, "923009990000@c.us")


def test_lost_webhooks_keep_the_message_in_the_chat(
    standin: WahaStandin, hooks: HookReceiver, http
) -> None:
    standin.lose_webhooks = True
    payload = standin.add_customer_message("lost")
    assert hooks.received == []
    [listed] = http.get(f"/api/default/chats/{CHAT}/messages", params={"limit": 10}).json()
    assert listed == payload


def test_echo_before_answer_has_arrived_when_the_send_answers(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    assert standin.echo_mode == "before_answer"
    response = _send(http, "hello")
    [echo] = hooks.bodies()  # already there: posted and answered before the send's answer
    assert echo["event"] == "message.any"
    assert (echo["payload"]["fromMe"], echo["payload"]["source"]) == (True, "api")
    assert echo["payload"]["id"] == response.json()["id"]["_serialized"]


def test_echo_after_answer_comes_after_the_send_answered(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    standin.echo_mode = "after_answer"
    hooks.hold()  # the echo cannot be answered yet: the send answers all the same
    assert _send(http, "hello").status_code == 201
    hooks.release()
    [echo] = hooks.wait_for(1)
    assert echo.json()["payload"]["source"] == "api"


def test_echo_never(standin: WahaStandin, hooks: HookReceiver, http: httpx.Client) -> None:
    standin.echo_mode = "never"
    _send(http)
    standin.post_webhook(session_event("WORKING"))  # the same poster: after any echo
    assert hooks.events() == ["session.status"]
    with pytest.raises(ValueError):
        standin.echo_mode = "sometimes"


def test_a_failure_after_the_point_of_no_return_is_echoed(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    standin.set_send_mode("error500")
    _send(http)
    [call] = standin.sends
    [echo] = hooks.bodies()
    assert echo["payload"]["id"] == f"true_{CHAT}_{call.gateway_id}"


def test_an_answer_from_the_phone_is_message_any_from_the_app(
    standin: WahaStandin, hooks: HookReceiver
) -> None:
    payload = standin.answer_from_phone("On my way", CHAT)
    [body] = hooks.bodies()
    assert body["payload"] == payload
    assert (payload["fromMe"], payload["source"], payload["to"]) == (True, "app", CHAT)


def test_fail_delivery_posts_the_error_ack(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    standin.echo_mode = "never"
    _send(http)
    [call] = standin.sends
    [post] = standin.fail_delivery(call.gateway_id)
    assert post.status == 200
    [body] = hooks.bodies()
    assert body["event"] == "message.ack"
    assert body["payload"] == {
        "id": f"true_{CHAT}_{call.gateway_id}",
        "from": DEFAULT_ACCOUNT["id"],
        "to": CHAT,
        "participant": None,
        "fromMe": True,
        "ack": -1,
        "ackName": "ERROR",
    }


def test_post_webhook_returns_the_answer(standin: WahaStandin, hooks: HookReceiver) -> None:
    hooks.status = 500
    assert standin.post_webhook(session_event("FAILED")) == 500
    standin.webhook_url = None
    with pytest.raises(ValueError):
        standin.post_webhook(session_event("FAILED"))


def test_a_webhook_nobody_answers_is_recorded_not_raised(standin: WahaStandin) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    standin.webhook_url = f"http://127.0.0.1:{port}/gateway/webhook"
    standin.add_customer_message("hi")
    [post] = standin.posts()
    assert (post.event, post.status) == ("message.any", 0) and "ConnectError" in post.error


def test_set_status_posts_session_status(standin: WahaStandin, hooks: HookReceiver) -> None:
    standin.set_status("FAILED")
    [body] = hooks.bodies()
    assert body["event"] == "session.status"
    assert body["payload"]["status"] == "FAILED" and body["payload"]["data"] is None
    assert [p["status"] for p in body["payload"]["statuses"]] == ["WORKING", "FAILED"]


def test_restart_goes_through_stopped_and_starting(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    response = http.post("/api/sessions/default/restart")
    assert (response.status_code, response.json()["status"]) == (201, "STARTING")
    assert [b["payload"]["status"] for b in hooks.bodies()] == ["STOPPED", "STARTING", "WORKING"]
    assert standin.status == "WORKING" and standin.me == DEFAULT_ACCOUNT


def test_logout_forgets_the_login_and_shows_a_qr(standin: WahaStandin, http: httpx.Client) -> None:
    response = http.post("/api/sessions/default/logout")
    assert response.status_code == 201
    assert (standin.status, standin.me) == ("SCAN_QR_CODE", None)
    assert QR_SHAPE.match(standin.qr or "")


def test_stop_and_start(standin: WahaStandin, http: httpx.Client) -> None:
    assert http.post("/api/sessions/default/stop").json()["status"] == "STOPPED"
    assert http.post("/api/sessions/default/start").status_code == 201
    assert standin.status == "WORKING"


def test_put_replaces_the_config_restarts_and_posts_to_its_webhooks(
    standin: WahaStandin, hooks: HookReceiver, http: httpx.Client
) -> None:
    standin.webhook_url = None  # only the session's own webhook from now on
    config = {
        "metadata": {"shop": "1"},
        "webhooks": [{"url": hooks.url, "events": ["message.any"], "hmac": {"key": "their-key"}}],
    }
    response = http.put("/api/sessions/default", json={"name": "default", "config": config})
    assert (response.status_code, response.json()) == (
        200,
        {"name": "default", "status": "WORKING", "config": config},
    )
    assert standin.config == config
    assert http.get("/api/sessions/default").json()["config"] == config
    standin.add_customer_message("hi")
    [received] = hooks.wait_for(1)
    assert received.json()["event"] == "message.any"
    assert received.headers["X-Webhook-Hmac"] == _signature(received, "their-key")


@pytest.mark.parametrize(
    "config",
    [
        5,
        {"webhooks": "x"},
        {"webhooks": [{"events": []}]},
        {"webhooks": [{"url": "u", "events": "all"}]},
    ],
)
def test_put_refuses_a_malformed_config(standin: WahaStandin, http: httpx.Client, config) -> None:
    response = http.put("/api/sessions/default", json={"config": config})
    assert response.status_code == 400 and response.json()["error"] == "Bad Request"
    assert standin.config is None


# -- a chat's messages ------------------------------------------------------------------------------


def test_chat_messages_are_filtered_newest_first(standin: WahaStandin, http: httpx.Client) -> None:
    old = standin.add_customer_message("old", timestamp=1_700_000_000)
    new = standin.add_customer_message("new", timestamp=1_700_000_100)
    _send(http, "ours")
    other = standin.add_customer_message("elsewhere", sender="923009999999")
    path = f"/api/default/chats/{CHAT}/messages"

    everything = http.get(path, params={"limit": 10}).json()
    assert [m["body"] for m in everything] == ["ours", "new", "old"]
    assert "source" not in everything[0]  # only in events
    theirs = http.get(path, params={"limit": 10, "filter.fromMe": "false"}).json()
    assert [m["id"] for m in theirs] == [new["id"], old["id"]]
    ours = http.get(path, params={"limit": 10, "filter.fromMe": "true"}).json()
    assert [m["body"] for m in ours] == ["ours"]
    since = http.get(path, params={"limit": 10, "filter.timestamp.gte": 1_700_000_100}).json()
    assert [m["body"] for m in since] == ["ours", "new"]
    assert len(http.get(path, params={"limit": 1}).json()) == 1
    assert [m["id"] for m in http.get(f"/api/default/chats/{other['from']}/messages").json()] == [
        other["id"]
    ]


def test_chat_messages_need_a_working_session(standin: WahaStandin, http: httpx.Client) -> None:
    standin.set_status("STARTING")
    response = http.get(f"/api/default/chats/{CHAT}/messages")
    assert response.status_code == 422 and response.json()["expected"] == ["WORKING"]


def test_noweb_lists_nothing_without_its_store(standin: WahaStandin, http: httpx.Client) -> None:
    standin.engine = "NOWEB"
    response = http.get(f"/api/default/chats/{CHAT}/messages")
    assert (
        response.status_code == 400 and "config.noweb.store.enabled" in response.json()["message"]
    )
    standin.noweb_store = True
    assert http.get(f"/api/default/chats/{CHAT}/messages").json() == []


def test_a_hidden_contacts_messages_are_found_by_the_number_too(
    standin: WahaStandin, http: httpx.Client
) -> None:
    standin.engine = "GOWS"
    payload = standin.add_customer_message("hi", sender="24816190603455@lid", phone=NUMBER)
    by_number = http.get(f"/api/default/chats/{CHAT}/messages").json()
    by_lid = http.get("/api/default/chats/24816190603455@lid/messages").json()
    assert [m["id"] for m in by_number] == [m["id"] for m in by_lid] == [payload["id"]]


# -- other routes ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["error500", "garbage", "drop"])
def test_failure_knobs(standin: WahaStandin, http: httpx.Client, mode: str) -> None:
    standin.set_failure("session", mode)
    if mode == "drop":
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/api/sessions/default")
    else:
        response = http.get("/api/sessions/default")
        assert response.status_code == (500 if mode == "error500" else 200)
        if mode == "garbage":
            assert response.headers["content-type"].startswith("text/html")
    standin.set_failure("session", None)
    assert http.get("/api/sessions/default").status_code == 200
    assert standin.calls()["session"] == 2
    with pytest.raises(ValueError):
        standin.set_failure("send", "error500")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/nowhere"), ("GET", "/api/sendText/x"), ("DELETE", "/api/sessions/default/me")],
)
def test_unknown_routes_answer_nests_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert (response.status_code, response.json()) == (
        404,
        {"message": f"Cannot {method} {path}", "error": "Not Found", "statusCode": 404},
    )


def test_calls_are_counted_per_route(standin: WahaStandin, http: httpx.Client) -> None:
    http.get("/api/sessions/default")
    http.get("/api/sessions/default/me")
    _send(http)
    http.get(f"/api/default/chats/{CHAT}/messages")
    http.get("/api/nowhere")
    assert standin.calls() == {"session": 1, "me": 1, "send": 1, "chat_messages": 1}


# -- the body builders ----------------------------------------------------------------------------


def test_sign_is_the_hmac_sha512_of_the_raw_body() -> None:
    body = serialize({"event": "message", "session": "default", "engine": "WEBJS"})
    headers = sign(body, "my-secret-key")
    assert headers["X-Webhook-Hmac"] == hmac.new(b"my-secret-key", body, hashlib.sha512).hexdigest()
    assert headers["X-Webhook-Hmac-Algorithm"] == "sha512"
    assert set(sign(body, "")) == {"X-Webhook-Request-Id", "X-Webhook-Timestamp"}


def test_the_builders_make_wahas_bodies() -> None:
    message = message_event("hi", event="message.any", engine="NOWEB", short_id="3AX")
    assert message["payload"]["id"] == f"false_{CHAT}_3AX"
    assert message["payload"]["_data"]["key"] == {
        "remoteJid": f"{NUMBER}@s.whatsapp.net",
        "fromMe": False,
        "id": "3AX",
    }
    status = session_event("SCAN_QR_CODE")
    assert status["payload"]["status"] == "SCAN_QR_CODE" and "me" not in status
    ack = ack_event("3EB0X", ack_name="READ")
    assert (ack["payload"]["ack"], ack["payload"]["ackName"]) == (3, "READ")
    assert EVENT_ID_SHAPE.match(new_event_id()) and new_event_id() != new_event_id()
    with pytest.raises(ValueError):
        message_event("hi", media="hologram")


@pytest.mark.parametrize(
    ("media", "webjs_type", "content_key", "has_media"),
    [
        ("image", "image", "imageMessage", True),
        ("ptt", "ptt", "audioMessage", True),
        ("document", "document", "documentMessage", True),
        ("location", "location", "locationMessage", False),
    ],
)
def test_media_in_each_engines_own_words(
    media: str, webjs_type: str, content_key: str, has_media: bool
) -> None:
    webjs = message_event("", media=media)["payload"]
    assert (webjs["_data"]["type"], webjs["hasMedia"]) == (webjs_type, has_media)
    noweb = message_event("", media=media, engine="NOWEB")["payload"]
    assert list(noweb["_data"]["message"]) == [content_key]
    gows = message_event("", media=media, engine="GOWS")["payload"]
    assert gows["_data"]["Info"]["MediaType"] == media
    if media == "ptt":
        assert noweb["_data"]["message"]["audioMessage"]["ptt"] is True


# -- the control page -----------------------------------------------------------------------------


def test_the_control_page_says_it_is_a_stand_in_and_shows_no_secret(
    standin: WahaStandin, http: httpx.Client
) -> None:
    standin.webhook_url = "http://127.0.0.1:9/gateway/webhook"
    http.put(
        "/api/sessions/default",
        json={
            "config": {
                "webhooks": [
                    {"url": "http://x.test/h", "events": ["message"], "hmac": {"key": "their-key"}}
                ]
            }
        },
    )
    _send(http, "Your invoice")
    with httpx.Client(timeout=5, trust_env=False) as bare:
        response = bare.get(standin.control_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "STAND-IN WAHA: nothing is sent to WhatsApp" in page
    assert CHAT in page and "Your invoice" in page and "http://x.test/h" in page
    for secret in (API_KEY, WEBHOOK_SECRET, "their-key"):
        assert secret not in page
    for action in (
        "status",
        "show-qr",
        "scan",
        "engine",
        "send-mode",
        "echo-mode",
        "empty-201",
        "lose-webhooks",
        "customer-message",
        "phone-answer",
        "fail-delivery",
        "account",
        "webhook-url",
    ):
        assert f'action="/_standin/{action}"' in page


def test_the_page_turns_the_knobs(standin: WahaStandin) -> None:
    base = standin.control_url.rstrip("/")
    with httpx.Client(timeout=5, trust_env=False) as page:
        assert page.post(f"{base}/status", data={"status": "FAILED"}).status_code == 303
        assert standin.status == "FAILED"
        assert page.post(f"{base}/show-qr").status_code == 303
        assert standin.status == "SCAN_QR_CODE" and QR_SHAPE.match(standin.qr or "")
        assert page.post(f"{base}/scan").status_code == 303
        assert standin.status == "WORKING"
        page.post(f"{base}/engine", data={"engine": "GOWS"})
        page.post(f"{base}/send-mode", data={"mode": "error500"})
        page.post(f"{base}/echo-mode", data={"mode": "never"})
        page.post(f"{base}/empty-201", data={"value": "on"})
        page.post(f"{base}/lose-webhooks", data={"value": "on"})
        page.post(f"{base}/account", data={"number": "923111111111", "name": "Shop"})
        page.post(f"{base}/webhook-url", data={"url": "http://127.0.0.1:9/h"})
        assert (standin.engine, standin.echo_mode, standin.empty_201, standin.lose_webhooks) == (
            "GOWS",
            "never",
            True,
            True,
        )
        assert standin.me == {"id": "923111111111@c.us", "pushName": "Shop"}
        assert standin.webhook_url == "http://127.0.0.1:9/h"
        assert page.post(f"{base}/send-mode", data={"mode": "down"}).status_code == 400
        assert page.post(f"{base}/engine", data={"engine": "WPP"}).status_code == 400
        assert page.post(f"{base}/nothing").status_code == 404
        assert (
            page.post(f"{base}/phone-answer", data={"chat": CHAT, "text": "ok"}).status_code == 303
        )
        assert page.post(f"{base}/fail-delivery", data={}).status_code == 400
    assert [m["body"] for m in standin.messages(CHAT)] == ["ok"]


def test_a_customer_message_from_the_page_is_kept_and_shown_escaped(standin: WahaStandin) -> None:
    with httpx.Client(timeout=5, trust_env=False) as page:
        response = page.post(
            standin.control_url + "customer-message",
            data={
                "sender": "923005555555",
                "name": "<b>Eve</b>",
                "text": "<script>alert(1)</script>",
                "media": "",
            },
        )
        assert (response.status_code, response.headers["location"]) == (303, "/_standin/")
        [message] = standin.messages()
        assert (message["from"], message["body"]) == (
            "923005555555@c.us",
            "<script>alert(1)</script>",
        )
        shown = page.get(standin.control_url).text
    assert "<script>alert(1)</script>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


def test_a_knob_is_never_turned_by_a_get(standin: WahaStandin) -> None:
    # A link followed or prefetched must not log the session out.
    with httpx.Client(timeout=5, trust_env=False) as page:
        response = page.get(standin.control_url + "show-qr")
    assert (response.status_code, response.text) == (405, "use POST")
    assert standin.status == "WORKING"


def test_the_page_escapes_the_account_in_its_fields(standin: WahaStandin) -> None:
    standin.set_account(name='<b>"Shop"</b>')
    with httpx.Client(timeout=5, trust_env=False) as page:
        shown = page.get(standin.control_url).text
    assert '<b>"Shop"</b>' not in shown
    assert 'value="&lt;b&gt;&quot;Shop&quot;&lt;/b&gt;"' in shown


@pytest.mark.parametrize(
    ("knob", "action"), [("empty_201", "empty-201"), ("lose_webhooks", "lose-webhooks")]
)
def test_a_toggle_on_the_page_turns_its_knob_on_and_off(
    standin: WahaStandin, knob: str, action: str
) -> None:
    def click() -> None:
        # What a browser posts: the hidden fields of the toggle's own form.
        with httpx.Client(timeout=5, trust_env=False) as page:
            shown = page.get(standin.control_url).text
            found = re.search(
                rf'<form method="post" action="/_standin/{action}"[^>]*>(.*?)</form>', shown
            )
            assert found is not None
            fields = dict(
                re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', found[1])
            )
            assert page.post(standin.control_url + action, data=fields).status_code == 303

    click()
    assert getattr(standin, knob) is True
    click()
    assert getattr(standin, knob) is False


# -- announcing and the command line ----------------------------------------------------------------


def test_announce_labels_every_send(capsys: pytest.CaptureFixture[str]) -> None:
    standin = WahaStandin(api_key=API_KEY, announce=True).start()
    try:
        with httpx.Client(timeout=5, trust_env=False, headers={"X-Api-Key": API_KEY}) as client:
            client.post(
                f"{standin.url}/api/sendText",
                json={"session": "default", "chatId": CHAT, "text": "hi"},
            )
        standin.show_qr()
    finally:
        standin.stop()
    out = capsys.readouterr().out
    [call] = standin.sends
    assert f"STAND-IN WAHA, nothing sent to WhatsApp: to {CHAT} -> {call.gateway_id}" in out
    assert "STAND-IN WAHA: session is now SCAN_QR_CODE" in out
    assert API_KEY not in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_line_starts_logged_out_with_show_qr() -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "statecore.whatsapp.standin_waha",
        "--port",
        str(port),
        "--api-key",
        "cli-key",
        "--show-qr",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
            assert f"STAND-IN WAHA on http://127.0.0.1:{port}" in lines[0]
            assert f"Control page: http://127.0.0.1:{port}/_standin/" in lines[1]
            with httpx.Client(timeout=5, trust_env=False) as client:
                url = f"http://127.0.0.1:{port}/api/sessions/default"
                assert client.get(url).status_code == 401
                data = client.get(url, headers={"X-Api-Key": "cli-key"}).json()
            assert (data["status"], data["me"]) == ("SCAN_QR_CODE", None)
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _environment(**gateway: str) -> dict[str, str]:
    """This process's environment without its GATEWAY_* variables, plus ``gateway``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, **gateway}


def test_the_command_line_takes_the_key_and_the_secret_from_the_environment(
    waha_hook_receiver: HookReceiver,
) -> None:
    # Not on the command line, which `ps` shows to anyone on the machine.
    port = _free_port()
    command = [sys.executable, "-m", "statecore.whatsapp.standin_waha", "--port", str(port)]
    command += ["--webhook-url", waha_hook_receiver.url]
    env = _environment(GATEWAY_API_KEY="env-key", GATEWAY_WEBHOOK_SECRET="env-secret")
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
            assert f"STAND-IN WAHA on http://127.0.0.1:{port}" in lines[0]
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False
            ) as client:
                session = "/api/sessions/default"
                assert client.get(session, headers={"X-Api-Key": "env-key"}).status_code == 200
                assert client.get(session, headers={"X-Api-Key": "cli-key"}).status_code == 401
                assert (
                    client.post("/_standin/customer-message", data={"text": "hi"}).status_code
                    == 303
                )
            [posted] = waha_hook_receiver.wait_for(1)
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=5)
    signature = hmac.new(b"env-secret", posted.body, hashlib.sha512).hexdigest()
    assert posted.headers["X-Webhook-Hmac"] == signature
    assert "env-key" not in "".join(lines) + out + err
    assert "env-secret" not in "".join(lines) + out + err


def test_the_key_on_the_command_line_wins_over_the_environment() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "statecore.whatsapp.standin_waha", "--port", str(port)]
    env = _environment(GATEWAY_API_KEY="env-key")
    with subprocess.Popen(
        [*command, "--api-key", "cli-key"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and "STAND-IN WAHA on" in proc.stdout.readline()
            with httpx.Client(timeout=5, trust_env=False) as client:
                url = f"http://127.0.0.1:{port}/api/sessions/default"
                assert client.get(url, headers={"X-Api-Key": "cli-key"}).status_code == 200
                assert client.get(url, headers={"X-Api-Key": "env-key"}).status_code == 401
        finally:
            proc.terminate()
            proc.wait(timeout=5)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_the_command_line_wants_a_key_from_somewhere(blank: str | None) -> None:
    env = _environment() if blank is None else _environment(GATEWAY_API_KEY=blank)
    done = subprocess.run(
        [sys.executable, "-m", "statecore.whatsapp.standin_waha", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--api-key" in done.stderr and "GATEWAY_API_KEY" in done.stderr
