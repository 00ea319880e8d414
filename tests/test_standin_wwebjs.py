"""The stand-in answers exactly like the scripts' whatsapp-web.js service (GATEWAY.md section 1).

Plain HTTP calls to a real server on 127.0.0.1: the status codes and bodies
pinned here are the wire format the wwebjs adapter is written against.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from statecore.whatsapp.standin_wwebjs import (
    BUFFER_SIZE,
    DEFAULT_ACCOUNT,
    DEFAULT_SEND_FAILURE,
    FAILURE_MODES,
    SendCall,
    WwebjsStandin,
)

QR_SHAPE = re.compile(r"^2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}$")
SENT_ID_SHAPE = re.compile(r"^[0-9A-F]{12,20}$")
ISO_Z_SHAPE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOT_READY = {"error": "WhatsApp client is not ready"}
MISSING = {"error": "Missing required fields: number and message"}
MESSAGE_KEYS = [
    "id",
    "from",
    "fromName",
    "body",
    "timestamp",
    "isGroup",
    "chatName",
    "type",
    "hasMedia",
    "processed",
    "receivedAt",
]


@pytest.fixture
def standin(fake_gateway: WwebjsStandin) -> WwebjsStandin:
    return fake_gateway


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not stand between us and loopback.
    with httpx.Client(timeout=5, trust_env=False) as client:
        yield client


def _send(http: httpx.Client, standin: WwebjsStandin, **body: object) -> httpx.Response:
    return http.post(f"{standin.url}/send", json=body)


# -- /status and the session ---------------------------------------------------


def test_status_of_a_ready_session(standin: WwebjsStandin, http: httpx.Client) -> None:
    response = http.get(f"{standin.url}/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["x-powered-by"] == "Express"  # the service is an Express app
    assert response.json() == {"isReady": True, "hasQR": False, "qrCode": None}


def test_show_qr_logs_out_and_shows_the_given_qr(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    assert standin.show_qr("2@abc,def,ghi,jkl") == "2@abc,def,ghi,jkl"
    assert http.get(f"{standin.url}/status").json() == {
        "isReady": False,
        "hasQR": True,
        "qrCode": "2@abc,def,ghi,jkl",
    }
    assert (standin.ready, standin.qr) == (False, "2@abc,def,ghi,jkl")


def test_a_made_up_qr_looks_like_whatsapp_webs_and_renews(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    first = standin.show_qr()
    assert QR_SHAPE.match(first)
    second = standin.renew_qr()
    assert QR_SHAPE.match(second) and second != first
    assert http.get(f"{standin.url}/status").json()["qrCode"] == second


def test_scan_makes_it_ready_and_clears_the_qr(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.show_qr()
    standin.scan()
    assert http.get(f"{standin.url}/status").json() == {
        "isReady": True,
        "hasQR": False,
        "qrCode": None,
    }
    assert (standin.ready, standin.qr) == (True, None)


def test_go_not_ready_is_not_ready_without_a_qr(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.show_qr()
    standin.go_not_ready()
    assert http.get(f"{standin.url}/status").json() == {
        "isReady": False,
        "hasQR": False,
        "qrCode": None,
    }


def test_a_fresh_install_starts_logged_out_showing_a_qr(http: httpx.Client) -> None:
    standin = WwebjsStandin(logged_in=False).start()
    try:
        data = http.get(f"{standin.url}/status").json()
        assert data["isReady"] is False and data["hasQR"] is True
        assert QR_SHAPE.match(data["qrCode"])
    finally:
        standin.stop()


# -- /info -----------------------------------------------------------------------


def test_info_when_ready(standin: WwebjsStandin, http: httpx.Client) -> None:
    response = http.get(f"{standin.url}/info")
    assert response.status_code == 200
    assert response.json() == DEFAULT_ACCOUNT
    assert set(DEFAULT_ACCOUNT) == {"number", "name", "platform"}


def test_info_answers_400_when_not_ready(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.show_qr()
    response = http.get(f"{standin.url}/info")
    assert (response.status_code, response.json()) == (400, NOT_READY)


def test_set_account_changes_info(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_account(number="923111111111", platform="iphone")
    assert http.get(f"{standin.url}/info").json() == {
        "number": "923111111111",
        "name": DEFAULT_ACCOUNT["name"],
        "platform": "iphone",
    }


# -- /send ---------------------------------------------------------------------------


def test_send_answers_a_short_id_and_records_the_chat_id(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    before = int(time.time())
    response = _send(http, standin, number="+92 300-1234567", message="Your order shipped")
    assert response.status_code == 200
    data = response.json()
    assert list(data) == ["success", "messageId", "timestamp"]
    assert data["success"] is True
    assert SENT_ID_SHAPE.match(data["messageId"])
    assert isinstance(data["timestamp"], int) and before <= data["timestamp"] <= time.time()
    assert standin.sends == [
        SendCall(
            number="+92 300-1234567",
            message="Your order shipped",
            chat_id="923001234567@c.us",
            mode="ok",
            message_id=data["messageId"],
            delivered=True,
        )
    ]
    assert standin.delivered() == standin.sends


def test_each_send_gets_a_fresh_id(standin: WwebjsStandin, http: httpx.Client) -> None:
    ids = {
        _send(http, standin, number="923001234567", message="hi").json()["messageId"]
        for _ in range(5)
    }
    assert len(ids) == 5


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"number": "923001234567"},
        {"message": "hi"},
        {"number": "", "message": "hi"},
        {"number": "923001234567", "message": ""},
        {"number": None, "message": "hi"},
        {"number": 0, "message": "hi"},
        [],
    ],
)
def test_send_refuses_missing_fields(
    standin: WwebjsStandin, http: httpx.Client, body: object
) -> None:
    response = http.post(f"{standin.url}/send", json=body)
    assert (response.status_code, response.json()) == (400, MISSING)
    assert standin.sends == []
    assert standin.calls()["send"] == 1


def test_a_body_that_is_not_json_typed_is_ignored_like_express_json(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    # express.json() parses only a JSON Content-Type; the body is then {}.
    response = http.post(
        f"{standin.url}/send",
        content=b'{"number": "923001234567", "message": "hi"}',
        headers={"Content-Type": "text/plain"},
    )
    assert (response.status_code, response.json()) == (400, MISSING)


@pytest.mark.parametrize("raw", [b'{"number": "9230', b"{nope}", b'"just a string"', b"null"])
def test_malformed_json_reaches_the_error_handler_as_500(
    standin: WwebjsStandin, http: httpx.Client, raw: bytes
) -> None:
    response = http.post(
        f"{standin.url}/send", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 500
    data = response.json()
    assert list(data) == ["error", "message"]
    assert data["error"] == "Internal server error"
    assert isinstance(data["message"], str) and data["message"]
    assert standin.sends == []


@pytest.mark.parametrize("session", ["show_qr", "go_not_ready"])
def test_send_checks_readiness_before_any_send(
    standin: WwebjsStandin, http: httpx.Client, session: str
) -> None:
    getattr(standin, session)()
    response = _send(http, standin, number="923001234567", message="hi")
    assert (response.status_code, response.json()) == (400, NOT_READY)
    [call] = standin.sends
    assert (call.mode, call.delivered, call.message_id) == ("ok", False, None)
    assert standin.delivered() == []


def test_missing_fields_are_refused_before_readiness(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    standin.go_not_ready()
    response = _send(http, standin, number="923001234567")
    assert (response.status_code, response.json()) == (400, MISSING)


def test_not_ready_mode_refuses_even_a_ready_session(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    standin.set_send_mode("not_ready")
    response = _send(http, standin, number="923001234567", message="hi")
    assert (response.status_code, response.json()) == (400, NOT_READY)
    assert [c.delivered for c in standin.sends] == [False]


def test_send_failed_may_have_reached_whatsapp(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_send_mode("send_failed")
    response = _send(http, standin, number="923001234567", message="hi")
    assert response.status_code == 400
    assert response.json() == {"error": f"Failed to send message: {DEFAULT_SEND_FAILURE}"}
    [call] = standin.sends
    assert call.delivered is True and SENT_ID_SHAPE.match(call.message_id or "")


def test_send_failure_reason_is_a_knob(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.send_failure_reason = "Evaluation failed: t: t"
    standin.set_send_mode("send_failed")
    response = _send(http, standin, number="923001234567", message="hi")
    assert response.json() == {"error": "Failed to send message: Evaluation failed: t: t"}


def test_error500_mode(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_send_mode("error500")
    response = _send(http, standin, number="923001234567", message="hi")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "message": "stand-in error"}
    assert [c.delivered for c in standin.sends] == [True]


def test_garbage_mode(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_send_mode("garbage")
    response = _send(http, standin, number="923001234567", message="hi")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    assert [c.delivered for c in standin.sends] == [True]


def test_drop_mode_hangs_up_without_an_answer(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_send_mode("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        _send(http, standin, number="923001234567", message="hi")
    assert [c.delivered for c in standin.sends] == [True]


def test_hang_mode_outlasts_the_client_and_stop_releases_it(standin: WwebjsStandin) -> None:
    standin.set_send_mode("hang")
    with httpx.Client(timeout=0.3, trust_env=False) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.post(f"{standin.url}/send", json={"number": "923001234567", "message": "hi"})
    assert [c.delivered for c in standin.sends] == [True]
    started = time.monotonic()
    standin.stop()
    assert time.monotonic() - started < 5


def test_hang_ends_after_hang_seconds(http: httpx.Client) -> None:
    standin = WwebjsStandin(hang_seconds=0.2).start()
    try:
        standin.set_status_failure("hang")
        with pytest.raises(httpx.RemoteProtocolError):
            http.get(f"{standin.url}/status")
    finally:
        standin.stop()


def test_queued_modes_come_first_then_the_set_mode(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    standin.set_send_mode("not_ready")
    standin.queue_send_modes("ok", "send_failed")
    codes = [
        _send(http, standin, number="923001234567", message="hi").status_code for _ in range(3)
    ]
    assert codes == [200, 400, 400]
    assert [c.mode for c in standin.sends] == ["ok", "send_failed", "not_ready"]
    assert [c.delivered for c in standin.sends] == [True, True, False]
    assert len(standin.delivered()) == 2


def test_down_refuses_every_connection_and_comes_back_on_the_same_port(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    port = standin.port
    standin.set_send_mode("down")
    for route in ("status", "send"):
        with pytest.raises(httpx.ConnectError):
            http.get(f"{standin.url}/{route}")
    standin.set_send_mode("ok")
    assert standin.port == port
    assert http.get(f"{standin.url}/status").status_code == 200


def test_start_while_down_stays_down(standin: WwebjsStandin, http: httpx.Client) -> None:
    standin.set_send_mode("down")
    standin.start()  # serve_forever() starts it again: "down" must hold
    with pytest.raises(httpx.ConnectError):
        http.get(f"{standin.url}/status")


def test_serve_forever_outlives_down_and_returns_on_stop(http: httpx.Client) -> None:
    # The command line serves this way: "down" must not end the process, Ctrl-C must.
    standin = WwebjsStandin().start()
    serving = threading.Thread(target=standin.serve_forever, daemon=True)
    serving.start()
    try:
        standin.set_send_mode("down")
        standin.set_send_mode("ok")
        assert http.get(f"{standin.url}/status").status_code == 200
        assert serving.is_alive()
    finally:
        standin.stop()
    serving.join(timeout=5)
    assert not serving.is_alive()


def test_unknown_modes_and_a_queued_down_are_refused(standin: WwebjsStandin) -> None:
    with pytest.raises(ValueError):
        standin.set_send_mode("refuse")
    with pytest.raises(ValueError):
        standin.queue_send_modes("ok", "down")
    with pytest.raises(ValueError):
        standin.set_status_failure("down")


def test_concurrent_sends_are_all_recorded(standin: WwebjsStandin, http: httpx.Client) -> None:
    def one(i: int) -> int:
        body = {"number": f"92300{i:07d}", "message": f"m{i}"}
        return http.post(f"{standin.url}/send", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(40))) == {200}
    assert len({c.message_id for c in standin.sends}) == 40
    assert standin.calls()["send"] == 40


# -- failure knobs of the other routes ------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "method", "path", "route"),
    [
        ("set_status_failure", "GET", "/status", "status"),
        ("set_info_failure", "GET", "/info", "info"),
        ("set_messages_failure", "GET", "/messages?unprocessed=true", "messages"),
        ("set_messages_failure", "POST", "/messages/X/processed", "processed"),
        ("set_messages_failure", "DELETE", "/messages/processed", "clear"),
    ],
)
@pytest.mark.parametrize("mode", ["error500", "garbage", "drop"])
def test_failure_knobs(
    standin: WwebjsStandin,
    http: httpx.Client,
    knob: str,
    method: str,
    path: str,
    route: str,
    mode: str,
) -> None:
    getattr(standin, knob)(mode)
    if mode == "drop":
        with pytest.raises(httpx.RemoteProtocolError):
            http.request(method, standin.url + path)
    else:
        response = http.request(method, standin.url + path)
        if mode == "error500":
            assert response.status_code == 500
            assert response.json() == {
                "error": "Internal server error",
                "message": "stand-in error",
            }
        else:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
    assert standin.calls()[route] == 1
    getattr(standin, knob)(None)
    assert http.request(method, standin.url + path).status_code in (200, 404)


def test_failure_modes_are_the_documented_four() -> None:
    assert FAILURE_MODES == ("error500", "hang", "garbage", "drop")


# -- /messages ---------------------------------------------------------------------------


def test_a_customer_message_as_the_service_stores_it(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    stored = standin.add_customer_message("Is the shop open?", name="Farah")
    assert list(stored) == MESSAGE_KEYS
    assert re.match(r"^[0-9A-F]{12,32}$", stored["id"])
    assert stored["from"] == "923001234567@c.us"
    assert (stored["fromName"], stored["chatName"]) == ("Farah", "Farah")
    assert (stored["body"], stored["type"], stored["hasMedia"]) == (
        "Is the shop open?",
        "chat",
        False,
    )
    assert stored["isGroup"] is False and stored["processed"] is False
    assert isinstance(stored["timestamp"], int)
    assert ISO_Z_SHAPE.match(stored["receivedAt"])
    response = http.get(f"{standin.url}/messages", params={"unprocessed": "true"})
    assert response.status_code == 200
    assert response.json() == {"count": 1, "messages": [stored]}


def test_message_fields_can_be_chosen(standin: WwebjsStandin) -> None:
    group = standin.add_customer_message(
        "hi all", sender="120363025246125486@g.us", id="3AFFB2355CA3FC5E89F7", timestamp=1700000000
    )
    assert group["isGroup"] is True and group["chatName"] == "Stand-in group"
    assert (group["id"], group["timestamp"]) == ("3AFFB2355CA3FC5E89F7", 1700000000)
    media = standin.add_customer_message(
        "", sender="201234567890123@lid", type="ptt", has_media=True, chat_name="Dana"
    )
    assert (media["isGroup"], media["type"], media["hasMedia"], media["chatName"]) == (
        False,
        "ptt",
        True,
        "Dana",
    )
    status = standin.add_customer_message("my status", sender="status@broadcast")
    assert status["isGroup"] is False
    assert [m["id"] for m in standin.messages()] == [group["id"], media["id"], status["id"]]


def test_the_buffer_keeps_only_the_last_100(standin: WwebjsStandin, http: httpx.Client) -> None:
    ids = [standin.add_customer_message(f"m{i}")["id"] for i in range(BUFFER_SIZE + 5)]
    data = http.get(f"{standin.url}/messages", params={"unprocessed": "true"}).json()
    assert BUFFER_SIZE == 100
    assert data["count"] == 100
    assert [m["id"] for m in data["messages"]] == ids[5:]


def test_processed_flow(standin: WwebjsStandin, http: httpx.Client) -> None:
    first = standin.add_customer_message("one")
    second = standin.add_customer_message("two")

    response = http.post(f"{standin.url}/messages/{first['id']}/processed")
    assert (response.status_code, response.json()) == (
        200,
        {"success": True, "messageId": first["id"]},
    )
    assert standin.processed_ids() == [first["id"]]

    unprocessed = http.get(f"{standin.url}/messages", params={"unprocessed": "true"}).json()
    assert unprocessed == {"count": 1, "messages": [second]}
    everything = http.get(f"{standin.url}/messages").json()
    assert everything["count"] == 2
    assert [m["processed"] for m in everything["messages"]] == [True, False]
    # Only the string 'true' filters, as the service compares it.
    assert http.get(f"{standin.url}/messages", params={"unprocessed": "1"}).json()["count"] == 2

    response = http.delete(f"{standin.url}/messages/processed")
    assert (response.status_code, response.json()) == (
        200,
        {"success": True, "remainingMessages": 1},
    )
    assert [m["id"] for m in standin.messages()] == [second["id"]]
    assert standin.processed_ids() == []


def test_marking_an_unknown_message_is_404(standin: WwebjsStandin, http: httpx.Client) -> None:
    response = http.post(f"{standin.url}/messages/NOPE/processed")
    assert (response.status_code, response.json()) == (404, {"error": "Message not found"})


def test_messages_are_copies(standin: WwebjsStandin) -> None:
    stored = standin.add_customer_message("one")
    stored["body"] = "changed"
    standin.messages()[0]["body"] = "changed too"
    assert standin.messages()[0]["body"] == "one"


# -- routing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/whatsapp/nowhere"),
        ("GET", "/api/whatsapp/send"),
        ("POST", "/api/whatsapp/status"),
        ("GET", "/api/whatsapp/messages/processed"),
        ("GET", "/elsewhere"),
        ("PUT", "/api/whatsapp/send"),
    ],
)
def test_unknown_routes_answer_expresss_404(
    standin: WwebjsStandin, http: httpx.Client, method: str, path: str
) -> None:
    base = standin.url.removesuffix("/api/whatsapp")
    response = http.request(method, base + path + "?x=1")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert f"<pre>Cannot {method} {path}</pre>" in response.text


def test_routes_match_like_express(standin: WwebjsStandin, http: httpx.Client) -> None:
    # Express routes ignore case and one trailing slash by default.
    assert http.get(f"{standin.url}/status/").status_code == 200
    assert http.get(standin.url.replace("whatsapp", "WhatsApp") + "/STATUS").status_code == 200


def test_the_prefix_is_a_parameter(http: httpx.Client) -> None:
    standin = WwebjsStandin(prefix="gw/").start()
    try:
        assert standin.url.endswith("/gw")
        assert http.get(f"{standin.url}/status").status_code == 200
        assert http.get(standin.url.removesuffix("/gw") + "/api/whatsapp/status").status_code == 404
    finally:
        standin.stop()


def test_calls_are_counted_per_route(standin: WwebjsStandin, http: httpx.Client) -> None:
    message = standin.add_customer_message()
    http.get(f"{standin.url}/status")
    http.get(f"{standin.url}/status")
    http.get(f"{standin.url}/info")
    _send(http, standin, number="923001234567", message="hi")
    http.get(f"{standin.url}/messages")
    http.post(f"{standin.url}/messages/{message['id']}/processed")
    http.delete(f"{standin.url}/messages/processed")
    http.get(f"{standin.url}/nowhere")
    assert standin.calls() == {
        "status": 2,
        "info": 1,
        "send": 1,
        "messages": 1,
        "processed": 1,
        "clear": 1,
    }


# -- the control page -------------------------------------------------------------------


def _control(standin: WwebjsStandin) -> str:
    return standin.url.removesuffix("/api/whatsapp") + "/_standin"


def test_the_control_page_says_it_is_a_stand_in(standin: WwebjsStandin, http: httpx.Client) -> None:
    _send(http, standin, number="923001234567", message="Your invoice")
    response = http.get(_control(standin) + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "STAND-IN gateway: nothing is sent to WhatsApp" in page
    assert "923001234567@c.us" in page and "Your invoice" in page
    for action in ("show-qr", "scan", "not-ready", "customer-message", "send-mode"):
        assert f'action="/_standin/{action}"' in page
    assert standin.calls() == {"send": 1}


def test_a_customer_message_from_the_page_is_added_and_escaped(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    response = http.post(
        _control(standin) + "/customer-message",
        data={"sender": "923005555555@c.us", "name": "Eve", "body": "<script>alert(1)</script>"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/_standin/"
    [message] = standin.messages()
    assert (message["from"], message["fromName"], message["body"]) == (
        "923005555555@c.us",
        "Eve",
        "<script>alert(1)</script>",
    )
    page = http.get(_control(standin) + "/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_knob_is_never_turned_by_a_get(standin: WwebjsStandin, http: httpx.Client) -> None:
    # A link followed or prefetched must not log the session out.
    assert http.get(_control(standin) + "/show-qr").status_code == 404
    assert (standin.ready, standin.qr) == (True, None)


def test_the_page_turns_the_session_and_send_knobs(
    standin: WwebjsStandin, http: httpx.Client
) -> None:
    base = _control(standin)
    assert http.post(base + "/show-qr").status_code == 303
    assert standin.ready is False and QR_SHAPE.match(standin.qr or "")
    assert http.post(base + "/scan").status_code == 303
    assert (standin.ready, standin.qr) == (True, None)
    assert http.post(base + "/not-ready").status_code == 303
    assert (standin.ready, standin.qr) == (False, None)
    assert http.post(base + "/send-mode", data={"mode": "send_failed"}).status_code == 303
    standin.scan()
    assert _send(http, standin, number="923001234567", message="hi").status_code == 400
    assert [c.mode for c in standin.sends] == ["send_failed"]
    # "down" would take the page down with it.
    assert http.post(base + "/send-mode", data={"mode": "down"}).status_code == 400
    assert http.post(base + "/send-mode", data={"mode": "bogus"}).status_code == 400
    assert http.get(f"{standin.url}/status").status_code == 200


# -- announcing and the command line --------------------------------------------------------


def test_announce_labels_every_send_and_knob(
    http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = WwebjsStandin(announce=True).start()
    try:
        standin.show_qr("2@a,b,c,d")
        standin.scan()
        message_id = _send(http, standin, number="923001234567", message="hi").json()["messageId"]
    finally:
        standin.stop()
    out = capsys.readouterr().out
    assert (
        f"STAND-IN gateway, nothing sent to WhatsApp: to 923001234567@c.us -> {message_id}" in out
    )
    assert "STAND-IN gateway: logged out, showing a QR" in out
    assert "STAND-IN gateway: QR scanned: ready" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_line_starts_logged_out_with_show_qr(http: httpx.Client) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "statecore.whatsapp.standin_wwebjs", "--port", str(port)]
    with subprocess.Popen(
        [*command, "--show-qr"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
            assert f"http://127.0.0.1:{port}/api/whatsapp" in lines[0]
            assert f"Control page: http://127.0.0.1:{port}/_standin/" in lines[1]
            data = http.get(f"http://127.0.0.1:{port}/api/whatsapp/status").json()
            assert data["isReady"] is False and QR_SHAPE.match(data["qrCode"])
        finally:
            proc.terminate()
            proc.wait(timeout=5)
