"""The stand-in answers exactly like the Evolution API (GATEWAY.md section 3).

Plain HTTP calls to a real server on 127.0.0.1: the status codes, bodies and
webhooks pinned here are the wire format the evolution adapter is written
against (read in Evolution's own source: its routers, guards, controllers and
error handler; its WebhookController for what it posts).
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
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from statecore.whatsapp.standin_evolution import (
    DEFAULT_EVENTS,
    EVENTS,
    SEND_MODES,
    EvolutionStandin,
    SendCall,
    get_device,
    jwt_token,
    message_event,
    new_pairing_code,
    sign,
)
from tests.fake_evolution import API_KEY, WEBHOOK_SECRET, WebhookReceiver

if TYPE_CHECKING:
    from tests.fake_evolution import FakeEvolution

NUMBER = "923001234567"
JID = f"{NUMBER}@s.whatsapp.net"
QR_SHAPE = re.compile(r"^2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}$")
SENT_ID = re.compile(r"^3EB0[0-9A-F]{18}$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNAUTHORIZED = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
ENVELOPE_KEYS = [
    "event",
    "instance",
    "data",
    "destination",
    "date_time",
    "sender",
    "server_url",
    "apikey",
]


@pytest.fixture
def standin(fake_evolution: FakeEvolution) -> FakeEvolution:
    return fake_evolution


@pytest.fixture
def http(standin: FakeEvolution) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy from the environment must not stand between us and loopback.
    with httpx.Client(
        base_url=standin.url, headers={"apikey": API_KEY}, timeout=5, trust_env=False
    ) as client:
        yield client


@pytest.fixture
def receiver(standin: FakeEvolution) -> Iterator[WebhookReceiver]:
    webhooks = WebhookReceiver()
    standin.webhook_url = webhooks.url
    try:
        yield webhooks
    finally:
        webhooks.stop()


def _send(
    http: httpx.Client, number: str = NUMBER, text: str = "hi", **more: object
) -> httpx.Response:
    return http.post("/message/sendText/default", json={"number": number, "text": text, **more})


def _error(status: int, error: str, message: object) -> dict:
    return {"status": status, "error": error, "response": {"message": message}}


def _claims(authorization: str) -> tuple[dict, dict]:
    header, claims, _ = authorization.removeprefix("Bearer ").split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(claims)


# -- the guards: the instance first, then the key ------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/instance/connectionState/default"),
        ("GET", "/instance/connect/default"),
        ("POST", "/instance/restart/default"),
        ("DELETE", "/instance/logout/default"),
        ("POST", "/message/sendText/default"),
        ("POST", "/chat/findMessages/default"),
        ("POST", "/webhook/set/default"),
        ("GET", "/webhook/find/default"),
        ("GET", "/instance/fetchInstances"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_every_route_wants_the_api_key(
    standin: FakeEvolution, method: str, path: str, key: str | None
) -> None:
    headers = {"apikey": key} if key else {}
    with httpx.Client(base_url=standin.url, trust_env=False) as bare:
        response = bare.request(method, path, headers=headers, json={})

    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert standin.sends == [] and standin.state == "open"


def test_an_unknown_instance_is_404_before_the_key_is_looked_at(standin: FakeEvolution) -> None:
    with httpx.Client(base_url=standin.url, trust_env=False) as bare:
        response = bare.get("/instance/connectionState/shop", headers={"apikey": "wrong"})

    assert (response.status_code, response.json()) == (
        404,
        _error(404, "Not Found", ['The "shop" instance does not exist']),
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/instance/connectionState"),
        ("GET", "/message/sendText/default"),
        ("POST", "/instance/connectionState/default"),
        ("GET", "/nowhere?x=1"),
        ("PUT", "/instance/restart/default"),
    ],
)
def test_unknown_routes_answer_evolutions_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)

    assert (response.status_code, response.json()) == (
        404,
        _error(404, "Not Found", [f"Cannot {method} {path}"]),
    )


def test_routes_match_like_express(http: httpx.Client) -> None:
    assert http.get("/INSTANCE/connectionstate/default/").status_code == 200


def test_the_welcome_needs_no_key(standin: FakeEvolution) -> None:
    with httpx.Client(base_url=standin.url, trust_env=False) as bare:
        data = bare.get("/").json()

    assert (data["status"], data["message"]) == (
        200,
        "Welcome to the Evolution API, it is working!",
    )


# -- the session --------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["open", "connecting", "close"])
def test_connection_state(standin: FakeEvolution, http: httpx.Client, state: str) -> None:
    standin.set_state(state)

    response = http.get("/instance/connectionState/default")

    assert response.status_code == 200
    assert response.json() == {"instance": {"instanceName": "default", "state": state}}


def test_connect_while_open_answers_the_state(standin: FakeEvolution, http: httpx.Client) -> None:
    assert http.get("/instance/connect/default").json() == {
        "instance": {"instanceName": "default", "state": "open"}
    }
    assert standin.state == "open"


def test_connect_from_close_starts_linking_with_a_qr(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_state("close")

    data = http.get("/instance/connect/default").json()

    assert list(data) == ["pairingCode", "code", "base64", "count"]
    assert data["pairingCode"] is None and data["count"] == 1
    assert QR_SHAPE.match(data["code"]) and data["code"] == standin.qr
    assert data["base64"].startswith("data:image/png;base64,")
    assert standin.state == "connecting"


def test_connect_with_a_number_from_close_gives_a_pairing_code(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_state("close")

    data = http.get("/instance/connect/default", params={"number": NUMBER}).json()

    assert re.fullmatch(r"[1-9A-HJ-NP-TV-Z]{8}", data["pairingCode"])
    assert data["pairingCode"] == standin.pairing_code


def test_connect_while_connecting_shows_the_same_qr_and_ignores_a_number(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    qr = standin.show_qr()

    data = http.get("/instance/connect/default", params={"number": NUMBER}).json()

    assert (data["code"], data["pairingCode"]) == (qr, None)
    assert standin.qr == qr


def test_a_fresh_connecting_instance_answers_only_its_count(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_state("connecting")  # reconnecting, no QR ever shown

    assert http.get("/instance/connect/default").json() == {"count": 0}


def test_evolution_keeps_its_last_qr_after_a_link(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    qr = standin.show_qr()
    standin.scan()
    standin.set_state("connecting")

    assert http.get("/instance/connect/default").json()["code"] == qr


def test_a_fresh_install_starts_waiting_for_a_scan() -> None:
    standin = EvolutionStandin(api_key=API_KEY, logged_in=False).start()
    try:
        with httpx.Client(
            base_url=standin.url, headers={"apikey": API_KEY}, trust_env=False
        ) as http:
            assert (
                http.get("/instance/connectionState/default").json()["instance"]["state"]
                == "connecting"
            )
            assert QR_SHAPE.match(http.get("/instance/connect/default").json()["code"])
            [record] = http.get("/instance/fetchInstances").json()
            assert record["connectionStatus"] == "connecting"
    finally:
        standin.stop()


def test_restart_when_open(standin: FakeEvolution, http: httpx.Client) -> None:
    response = http.post("/instance/restart/default")

    assert (response.status_code, response.json()) == (
        200,
        {"instance": {"instanceName": "default", "state": "open"}},
    )
    assert standin.calls()["restart"] == 1


def test_restart_when_closed_is_its_flattened_refusal(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_state("close")

    response = http.post("/instance/restart/default")

    assert (response.status_code, response.json()) == (
        200,
        {"error": True, "message": "[object Object]"},
    )


def test_logout(standin: FakeEvolution, http: httpx.Client) -> None:
    response = http.delete("/instance/logout/default")

    assert (response.status_code, response.json()) == (
        200,
        {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}},
    )
    assert standin.state == "close"
    [record] = http.get("/instance/fetchInstances").json()
    assert (record["connectionStatus"], record["disconnectionReasonCode"]) == ("close", 401)

    again = http.delete("/instance/logout/default")
    assert (again.status_code, again.json()) == (
        400,
        _error(400, "Bad Request", ['The "default" instance is not connected']),
    )


def test_fetch_instances(standin: FakeEvolution, http: httpx.Client) -> None:
    standin.set_account(number="923009998877", name="Shop ✓")

    response = http.get("/instance/fetchInstances", params={"instanceName": "default"})

    [record] = response.json()
    assert response.status_code == 200
    assert (
        record["name"],
        record["connectionStatus"],
        record["ownerJid"],
        record["profileName"],
    ) == (
        "default",
        "open",
        "923009998877@s.whatsapp.net",
        "Shop ✓",
    )
    # Evolution lists the instance token: the adapter must keep it to itself.
    assert record["token"] == API_KEY
    assert {"disconnectionReasonCode", "disconnectionAt", "_count", "Setting"} <= set(record)


def test_fetch_instances_of_another_name_is_404(http: httpx.Client) -> None:
    response = http.get("/instance/fetchInstances", params={"instanceName": "shop"})

    assert (response.status_code, response.json()) == (
        404,
        _error(404, "Not Found", ['Instance "shop" not found']),
    )


def test_the_qr_limit(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    standin.show_qr()

    standin.set_qr_limit_reached()

    bodies = [r.json() for r in receiver.wait_for(4)]
    assert [b["event"] for b in bodies] == [
        "connection.update",
        "qrcode.updated",
        "qrcode.updated",
        "connection.update",
    ]
    assert bodies[2]["data"] == {
        "message": "QR code limit reached, please login again",
        "statusCode": 500,
    }
    assert (bodies[3]["data"]["state"], bodies[3]["data"]["statusReason"]) == ("refused", 428)
    assert http.get("/instance/connect/default").json()["count"] == 1  # linking again from close


# -- sendText -------------------------------------------------------------------------------


def test_send_answers_201_with_the_message(standin: FakeEvolution, http: httpx.Client) -> None:
    before = int(time.time())

    response = _send(http, "+92 300-1234567", "Your order shipped ✓")

    assert response.status_code == 201
    data = response.json()
    assert list(data) == [
        "key",
        "pushName",
        "status",
        "message",
        "contextInfo",
        "messageType",
        "messageTimestamp",
        "instanceId",
        "source",
    ]
    assert data["key"]["remoteJid"] == JID and data["key"]["fromMe"] is True
    assert SENT_ID.match(data["key"]["id"])
    assert (data["status"], data["message"], data["messageType"], data["source"]) == (
        "PENDING",
        {"conversation": "Your order shipped ✓"},
        "conversation",
        "web",
    )
    assert before <= data["messageTimestamp"] <= time.time()
    assert standin.sends == [
        SendCall("+92 300-1234567", "Your order shipped ✓", JID, "ok", data["key"]["id"], True)
    ]
    # Express answers with JSON.stringify: compact, non-ASCII as it is.
    assert '"conversation":"Your order shipped ✓"' in response.content.decode()


@pytest.mark.parametrize(
    ("number", "chat"),
    [
        ("120363025246125888@g.us", "120363025246125888@g.us"),
        ("24816190603455@lid", "24816190603455@lid"),
        (f"{NUMBER}@c.us", JID),
    ],
)
def test_send_takes_a_group_and_a_hidden_contact(
    standin: FakeEvolution, http: httpx.Client, number: str, chat: str
) -> None:
    assert _send(http, number).status_code == 201
    assert standin.sends[0].chat == chat


@pytest.mark.parametrize(
    ("mode", "status", "body", "delivered"),
    [
        (
            "not_on_whatsapp",
            400,
            _error(400, "Bad Request", [{"jid": JID, "exists": False, "number": NUMBER}]),
            False,
        ),
        ("schema", 400, _error(400, "Bad Request", [['instance requires property "text"']]), False),
        ("closed_after_send", 400, _error(400, "Bad Request", ["Error: Connection Closed"]), True),
        (
            "closed_before_send",
            400,
            _error(400, "Bad Request", ["Error: Connection Closed"]),
            False,
        ),
        ("unauthorized", 401, UNAUTHORIZED, False),
        (
            "no_instance",
            404,
            _error(404, "Not Found", ['The "default" instance does not exist']),
            False,
        ),
        ("error500", 500, _error(500, "Internal Server Error", "Connection Closed"), False),
    ],
)
def test_send_modes_answer_as_evolution_does(
    standin: FakeEvolution, http: httpx.Client, mode: str, status: int, body: dict, delivered: bool
) -> None:
    standin.set_send_mode(mode)

    response = _send(http)

    assert (response.status_code, response.json()) == (status, body)
    [call] = standin.sends
    assert (call.mode, call.delivered, bool(call.gateway_id)) == (mode, delivered, delivered)


def test_ok_while_the_session_is_closed_is_its_500(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_state("close")

    response = _send(http)

    assert (response.status_code, response.json()) == (
        500,
        _error(500, "Internal Server Error", "Connection Closed"),
    )
    assert [c.delivered for c in standin.sends] == [False]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, [['instance requires property "number"', 'instance requires property "text"']]),
        ({"number": NUMBER}, [['instance requires property "text"']]),
        ({"number": 923001234567, "text": "hi"}, [["Invalid format"]]),
        ({"number": NUMBER, "text": 5}, [["text is not of a type(s) string"]]),
        ({"number": NUMBER, "text": "hi", "delay": "1s"}, [["Enter a value in milliseconds"]]),
        ({"number": NUMBER, "text": ""}, ["Text is required"]),
        ({"number": NUMBER, "text": "  "}, ["Text is required"]),
        ({"number": "", "text": "hi"}, [{"jid": "@s.whatsapp.net", "exists": False, "number": ""}]),
    ],
)
def test_send_checks_its_body_before_any_send(
    standin: FakeEvolution, http: httpx.Client, body: dict, message: object
) -> None:
    response = http.post("/message/sendText/default", json=body)

    assert (response.status_code, response.json()) == (400, _error(400, "Bad Request", message))
    assert standin.sends == []


def test_a_malformed_json_body_is_400(standin: FakeEvolution, http: httpx.Client) -> None:
    response = http.post(
        "/message/sendText/default",
        content=b'{"number": "92',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert standin.sends == []


def test_drop_hangs_up_after_delivering(standin: FakeEvolution, http: httpx.Client) -> None:
    standin.set_send_mode("drop")

    with pytest.raises(httpx.RemoteProtocolError):
        _send(http)

    assert [c.delivered for c in standin.sends] == [True]


def test_hang_outlasts_the_client_and_stop_releases_it(standin: FakeEvolution) -> None:
    standin.set_send_mode("hang")
    with httpx.Client(timeout=0.3, trust_env=False, headers={"apikey": API_KEY}) as short:
        with pytest.raises(httpx.ReadTimeout):
            short.post(
                f"{standin.url}/message/sendText/default", json={"number": NUMBER, "text": "hi"}
            )
    assert [c.delivered for c in standin.sends] == [True]

    standin.stop()  # returns: the hanging handler was released


def test_queued_modes_come_first_then_the_set_mode(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.set_send_mode("closed_before_send")
    standin.queue_send_modes("ok", "not_on_whatsapp")

    codes = [_send(http).status_code for _ in range(3)]

    assert codes == [201, 400, 400]
    assert [c.mode for c in standin.sends] == ["ok", "not_on_whatsapp", "closed_before_send"]
    assert len(standin.delivered()) == 1


def test_down_refuses_every_connection_and_comes_back_on_the_same_port(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    port = standin.port
    standin.set_send_mode("down")
    with pytest.raises(httpx.ConnectError):
        http.get("/instance/connectionState/default")
    standin.set_send_mode("ok")

    assert standin.port == port
    assert http.get("/instance/connectionState/default").status_code == 200


def test_unknown_modes_are_refused(standin: FakeEvolution) -> None:
    with pytest.raises(ValueError):
        standin.set_send_mode("refuse")
    with pytest.raises(ValueError):
        standin.queue_send_modes("ok", "down")
    with pytest.raises(ValueError):
        standin.set_failure("send_text", "down")
    with pytest.raises(ValueError):
        standin.echo_mode = "sometimes"
    assert "down" in SEND_MODES


@pytest.mark.parametrize("mode", ["error500", "garbage", "drop"])
def test_another_route_can_fail(standin: FakeEvolution, http: httpx.Client, mode: str) -> None:
    standin.set_failure("connection_state", mode)

    if mode == "drop":
        with pytest.raises(httpx.RemoteProtocolError):
            http.get("/instance/connectionState/default")
    else:
        response = http.get("/instance/connectionState/default")
        assert response.status_code == (500 if mode == "error500" else 200)
        assert ("json" in response.headers["content-type"]) is (mode == "error500")
    standin.set_failure("connection_state", None)
    assert http.get("/instance/connectionState/default").status_code == 200
    assert standin.calls()["connection_state"] == 2


# -- the echo of a send ----------------------------------------------------------------------------


def test_the_echo_is_answered_before_the_send_is(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    data = _send(http).json()

    # Already there when the send answered: it was posted (and answered) first.
    [echo] = [r.json() for r in receiver.received if r.json()["event"] == "send.message"]
    assert echo["data"] == data


def test_an_echo_after_the_answer(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    standin.echo_mode = "after_answer"
    receiver.hold("send.message")  # our webhook is slow to answer the echo

    response = _send(http)

    assert response.status_code == 201  # the send answered without waiting for it
    receiver.release()
    [echo] = receiver.wait_for(1)
    assert echo.json()["data"]["key"]["id"] == response.json()["key"]["id"]


@pytest.mark.parametrize(
    ("mode", "echoed"),
    [("closed_after_send", False), ("drop", True), ("closed_before_send", False)],
)
def test_which_failures_are_echoed(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client, mode: str, echoed: bool
) -> None:
    standin.set_send_mode(mode)

    try:
        _send(http)
    except httpx.RemoteProtocolError:
        pass

    assert [p.event for p in standin.webhooks] == (["send.message"] if echoed else [])


def test_no_echo_when_never(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    standin.echo_mode = "never"

    assert _send(http).status_code == 201
    assert standin.webhooks == []


# -- findMessages --------------------------------------------------------------------------------


def _find(http: httpx.Client, **query: object) -> dict:
    response = http.post("/chat/findMessages/default", json=query)
    assert response.status_code == 200
    return response.json()["messages"]


def test_find_messages_records_and_their_filters(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    theirs = standin.add_customer_message("hello", timestamp=1764061200)
    other = standin.add_customer_message("other chat", sender="923009999999", timestamp=1764061260)
    ours = _send(http, text="our answer").json()

    everything = _find(http)
    assert everything["total"] == 3 and everything["pages"] == 1 and everything["currentPage"] == 1
    record = next(r for r in everything["records"] if r["key"]["id"] == theirs["key"]["id"])
    assert list(record) == [
        "id",
        "key",
        "pushName",
        "messageType",
        "message",
        "messageTimestamp",
        "instanceId",
        "source",
        "contextInfo",
        "MessageUpdate",
    ]
    # Newest first.
    assert [r["key"]["id"] for r in everything["records"]] == [
        ours["key"]["id"],
        other["key"]["id"],
        theirs["key"]["id"],
    ]

    in_chat = _find(http, where={"key": {"remoteJid": JID}})["records"]
    assert {r["key"]["id"] for r in in_chat} == {theirs["key"]["id"], ours["key"]["id"]}
    assert [r["key"]["id"] for r in _find(http, where={"key": {"fromMe": True}})["records"]] == [
        ours["key"]["id"]
    ]
    # Evolution's quirks: fromMe false is no filter; remoteJidAlt alone matches everything.
    assert _find(http, where={"key": {"fromMe": False}})["total"] == 3
    assert _find(http, where={"key": {"remoteJidAlt": JID}})["total"] == 3


def test_find_messages_time_range_needs_both_ends(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.add_customer_message("old", timestamp=1764061200)  # 2025-11-25T09:00:00Z
    standin.add_customer_message("new", timestamp=1764064800)  # 10:00

    both = {"gte": "2025-11-25T09:30:00.000Z", "lte": "2025-11-25T11:00:00.000Z"}
    assert [
        r["message"]["conversation"]
        for r in _find(http, where={"messageTimestamp": both})["records"]
    ] == ["new"]
    assert _find(http, where={"messageTimestamp": {"gte": both["gte"]}})["total"] == 2
    in_ms = {"gte": 1764063000000, "lte": 1764068400000}
    assert _find(http, where={"messageTimestamp": in_ms})["total"] == 1


def test_find_messages_pages(standin: FakeEvolution, http: httpx.Client) -> None:
    ids = [
        standin.add_customer_message(f"m{n}", timestamp=1764061200 + n)["key"]["id"]
        for n in range(7)
    ]

    first = _find(http, offset=3, page=1)
    third = _find(http, offset=3, page=3)

    assert (first["total"], first["pages"]) == (7, 3)
    assert [r["key"]["id"] for r in first["records"]] == ids[::-1][:3]
    assert [r["key"]["id"] for r in third["records"]] == ids[:1]


def test_a_later_status_shows_in_find_messages(standin: FakeEvolution, http: httpx.Client) -> None:
    sent = _send(http).json()
    standin.report_status(sent["key"]["id"], "DELIVERY_ACK")

    [record] = _find(http, where={"key": {"id": sent["key"]["id"]}})["records"]
    assert record["MessageUpdate"] == [{"status": "DELIVERY_ACK"}]


# -- the webhook's configuration --------------------------------------------------------------------


def test_webhook_find_is_null_until_one_is_set(http: httpx.Client) -> None:
    response = http.get("/webhook/find/default")

    assert (response.status_code, response.text) == (200, "null")


def test_webhook_set_answers_the_record_and_find_shows_it(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    given = {
        "enabled": True,
        "url": "https://dash.example/gateway/webhook",
        "events": ["MESSAGES_UPSERT"],
        "headers": {"jwt_key": "s3"},
        "byEvents": False,
        "base64": False,
    }

    response = http.post("/webhook/set/default", json={"webhook": given})

    assert response.status_code == 201
    record = response.json()
    assert list(record) == [
        "id",
        "url",
        "headers",
        "enabled",
        "events",
        "webhookByEvents",
        "webhookBase64",
        "createdAt",
        "updatedAt",
        "instanceId",
    ]
    assert (record["url"], record["headers"], record["events"], record["webhookByEvents"]) == (
        given["url"],
        {"jwt_key": "s3"},
        ["MESSAGES_UPSERT"],
        False,
    )
    assert ISO_Z.match(record["createdAt"])
    assert http.get("/webhook/find/default").json() == record
    assert standin.webhook_secret == "s3"


def test_webhook_set_keeps_what_it_is_not_given(standin: FakeEvolution, http: httpx.Client) -> None:
    standin.webhook_url = "https://dash.example/gateway/webhook"

    http.post(
        "/webhook/set/default",
        json={"webhook": {"enabled": True, "url": "https://new.example/hook"}},
    )

    record = http.get("/webhook/find/default").json()
    assert record["headers"] == {"jwt_key": WEBHOOK_SECRET}
    # Enabled with no events given: Evolution turns on all of them.
    assert record["events"] == list(EVENTS)


def test_a_disabled_webhook_has_no_events(http: httpx.Client) -> None:
    http.post(
        "/webhook/set/default",
        json={"webhook": {"enabled": False, "url": "https://x.example", "events": ["CALL"]}},
    )

    assert http.get("/webhook/find/default").json()["events"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, ['instance requires property "webhook"']),
        ({"webhook": {"url": "https://x"}}, ['webhook requires property "enabled"']),
        (
            {"webhook": {"enabled": "yes", "url": "https://x"}},
            ["webhook.enabled is not of a type(s) boolean"],
        ),
        ({"webhook": {"enabled": True, "url": ""}}, ['The "url" cannot be empty']),
        (
            {"webhook": {"enabled": True, "url": "https://x", "events": ["NOPE"]}},
            [f"webhook.events[0] is not one of enum values: {','.join(EVENTS)}"],
        ),
    ],
)
def test_webhook_set_checks_its_schema(http: httpx.Client, body: dict, message: list) -> None:
    response = http.post("/webhook/set/default", json=body)

    assert (response.status_code, response.json()) == (400, _error(400, "Bad Request", [message]))


# -- the webhooks it posts ---------------------------------------------------------------------------


def test_a_webhook_as_evolution_posts_it(standin: FakeEvolution, receiver: WebhookReceiver) -> None:
    before = int(time.time())
    data = standin.add_customer_message("Is the shop open?")

    [delivery] = receiver.wait_for(1)

    body = delivery.json()
    assert list(body) == ENVELOPE_KEYS
    assert (body["event"], body["instance"], body["data"], body["destination"]) == (
        "messages.upsert",
        "default",
        data,
        receiver.url,
    )
    assert (body["sender"], body["server_url"], body["apikey"]) == (
        "923009876543@s.whatsapp.net",
        standin.url,
        API_KEY,
    )
    assert ISO_Z.match(body["date_time"])
    # axios's headers, and the JWT in place of the jwt_key header.
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["User-Agent"].startswith("axios/")
    assert "jwt_key" not in {k.lower() for k in delivery.headers}
    header, claims = _claims(delivery.headers["Authorization"])
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert list(claims) == ["iat", "exp", "app", "action"]
    assert before <= claims["iat"] <= time.time() and claims["exp"] == claims["iat"] + 600
    assert (claims["app"], claims["action"]) == ("evolution", "webhook")
    # JSON.stringify: compact, non-ASCII as it is.
    assert b'"event":"messages.upsert"' in delivery.body


def test_the_webhooks_own_headers_are_sent(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    http.post(
        "/webhook/set/default",
        json={
            "webhook": {
                "enabled": True,
                "url": receiver.url,
                "headers": {"X-Team": "ops"},
                "events": ["MESSAGES_UPSERT"],
            }
        },
    )

    standin.add_customer_message("hi")

    [delivery] = receiver.wait_for(1)
    assert delivery.headers["X-Team"] == "ops"
    assert "Authorization" not in delivery.headers  # no jwt_key: no token


def test_only_the_enabled_events_are_posted(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    http.post(
        "/webhook/set/default",
        json={"webhook": {"enabled": True, "url": receiver.url, "events": ["CONNECTION_UPDATE"]}},
    )

    standin.add_customer_message("not posted")
    standin.set_state("connecting")

    assert [r.json()["event"] for r in receiver.wait_for(1)] == ["connection.update"]
    assert [p.event for p in standin.webhooks] == ["connection.update"]


def test_by_events_appends_the_event_to_the_url(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    http.post(
        "/webhook/set/default",
        json={
            "webhook": {
                "enabled": True,
                "url": receiver.url,
                "byEvents": True,
                "events": ["MESSAGES_UPSERT"],
            }
        },
    )

    standin.add_customer_message("hi")

    assert receiver.wait_for(1)[0].path == "/gateway/webhook/messages-upsert"


def test_a_lost_webhook_is_only_in_the_store(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    standin.lose_webhooks = True

    data = standin.add_customer_message("lost")

    assert receiver.received == []
    assert [(p.event, p.lost) for p in standin.webhooks] == [("messages.upsert", True)]
    assert [r["key"]["id"] for r in _find(http)["records"]] == [data["key"]["id"]]


def test_the_receivers_answer_is_recorded(
    standin: FakeEvolution, receiver: WebhookReceiver
) -> None:
    receiver.status = 401
    standin.add_customer_message("refused")
    standin.webhook_url = "http://127.0.0.1:9/nothing-listens"
    standin.add_customer_message("unreachable")

    assert [p.status for p in standin.webhooks] == [401, None]


def test_post_webhook_posts_any_body_signed(
    standin: FakeEvolution, receiver: WebhookReceiver
) -> None:
    body = message_event("built by a test", apikey="token")

    assert standin.post_webhook(body) == 200

    [delivery] = receiver.wait_for(1)
    assert delivery.json() == body
    assert delivery.headers["Authorization"].startswith("Bearer ")


def test_post_webhook_needs_a_url(standin: FakeEvolution) -> None:
    with pytest.raises(RuntimeError):
        standin.post_webhook(message_event())


def test_sign_is_the_headers_evolution_sends() -> None:
    headers = sign(b"{}", "k", now=1764061200)

    assert headers["Authorization"] == f"Bearer {jwt_token('k', now=1764061200)}"
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in sign(b"{}", "")


def test_a_message_as_baileys_7_addresses_it(standin: FakeEvolution) -> None:
    by_lid = standin.add_customer_message("hi", lid="24816190603455")
    in_group = standin.add_customer_message(
        "hi all", group="120363025246125888@g.us", lid="24816190603455"
    )
    photo = standin.add_customer_message("look", media="image")
    voice = standin.add_customer_message("", media="ptt")

    assert by_lid["key"] == {
        "remoteJid": "24816190603455@lid",
        "remoteJidAlt": JID,
        "fromMe": False,
        "id": by_lid["key"]["id"],
        "addressingMode": "lid",
    }
    assert (in_group["key"]["participant"], in_group["key"]["participantAlt"]) == (
        "24816190603455@lid",
        JID,
    )
    assert (photo["messageType"], photo["message"]["imageMessage"]["caption"]) == (
        "imageMessage",
        "look",
    )
    assert (voice["messageType"], voice["message"]["audioMessage"]["ptt"]) == ("audioMessage", True)
    assert (by_lid["status"], by_lid["source"]) == ("DELIVERY_ACK", "ios")


def test_a_reaction_as_evolution_upserts_it(standin: FakeEvolution, http: httpx.Client) -> None:
    sent = _send(http).json()

    data = standin.react(sent["key"]["id"], "❤️")

    assert data["messageType"] == "reactionMessage"
    assert data["message"]["reactionMessage"]["key"] == sent["key"]
    assert data["message"]["reactionMessage"]["text"] == "❤️"
    assert data["key"]["fromMe"] is False
    assert len(_find(http)["records"]) == 2  # Evolution keeps it with the messages


def test_a_phone_answer_and_a_failed_delivery(
    standin: FakeEvolution, receiver: WebhookReceiver, http: httpx.Client
) -> None:
    phone = standin.answer_from_phone("on my way")
    sent = _send(http).json()
    standin.fail_delivery(sent["key"]["id"])

    bodies = [r.json() for r in receiver.wait_for(3)]
    assert phone["key"]["fromMe"] is True and phone["pushName"] == "Stand-in shop"
    failure = bodies[-1]
    assert failure["event"] == "messages.update"
    assert {k: failure["data"][k] for k in ("keyId", "remoteJid", "fromMe", "status")} == {
        "keyId": sent["key"]["id"],
        "remoteJid": JID,
        "fromMe": True,
        "status": "ERROR",
    }


@pytest.mark.parametrize(
    ("message_id", "device"),
    [
        ("3A" + "F" * 18, "ios"),
        ("3EB0" + "A" * 18, "web"),
        ("A" * 32, "android"),
        ("3F" + "1" * 10, "desktop"),
        ("x", "unknown"),
    ],
)
def test_the_source_of_a_message_id(message_id: str, device: str) -> None:
    assert get_device(message_id) == device


def test_pairing_codes_use_baileys_alphabet() -> None:
    assert all(re.fullmatch(r"[1-9A-HJ-NP-TV-Z]{8}", new_pairing_code()) for _ in range(50))


def test_default_events_are_what_the_dashboard_needs() -> None:
    from statecore.whatsapp.evolution import WEBHOOK_EVENTS

    assert set(DEFAULT_EVENTS) == set(WEBHOOK_EVENTS) and set(DEFAULT_EVENTS) <= set(EVENTS)


# -- the control page ----------------------------------------------------------------------------


def _page(standin: FakeEvolution) -> str:
    with httpx.Client(trust_env=False) as client:
        response = client.get(standin.control_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def _post(standin: FakeEvolution, action: str, **form: str) -> httpx.Response:
    with httpx.Client(trust_env=False) as client:
        return client.post(f"{standin.url}/_standin/{action}", data=form)


def test_the_control_page_says_it_is_a_stand_in_and_shows_no_secret(
    standin: FakeEvolution, http: httpx.Client
) -> None:
    standin.webhook_url = "https://dash.example/gateway/webhook"
    _send(http, text="Your invoice")

    page = _page(standin)

    assert "STAND-IN Evolution API: nothing is sent to WhatsApp" in page
    assert JID in page and "Your invoice" in page
    assert "signed with a JWT" in page
    assert API_KEY not in page and WEBHOOK_SECRET not in page
    for action in (
        "state",
        "show-qr",
        "scan",
        "qr-limit",
        "account",
        "send-mode",
        "echo-mode",
        "lose-webhooks",
        "customer-message",
        "phone-answer",
        "fail-delivery",
    ):
        assert f'action="/_standin/{action}"' in page


def test_text_on_the_control_page_is_escaped(standin: FakeEvolution) -> None:
    response = _post(
        standin,
        "customer-message",
        sender=NUMBER,
        name="<b>Eve</b>",
        text="<script>alert(1)</script>",
    )

    assert (response.status_code, response.headers["location"]) == (303, "/_standin/")
    [stored] = standin.messages()
    assert (stored["pushName"], stored["message"]["conversation"]) == (
        "<b>Eve</b>",
        "<script>alert(1)</script>",
    )
    page = _page(standin)
    assert "<script>alert(1)</script>" not in page and "<b>Eve</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_turns_the_knobs(standin: FakeEvolution, http: httpx.Client) -> None:
    assert _post(standin, "show-qr").status_code == 303
    assert standin.state == "connecting" and QR_SHAPE.match(standin.qr or "")
    assert standin.qr in _page(standin)
    assert _post(standin, "scan").status_code == 303
    assert standin.state == "open"
    assert _post(standin, "state", state="close", reason="403").status_code == 303
    assert http.get("/instance/fetchInstances").json()[0]["disconnectionReasonCode"] == 403
    assert _post(standin, "state", state="open").status_code == 303
    assert _post(standin, "account", number="923001112223", name="Shop 2").status_code == 303
    assert http.get("/instance/fetchInstances").json()[0]["profileName"] == "Shop 2"
    assert _post(standin, "send-mode", mode="closed_after_send").status_code == 303
    assert _send(http).status_code == 400
    assert _post(standin, "echo-mode", mode="never").status_code == 303
    assert standin.echo_mode == "never"
    assert _post(standin, "lose-webhooks", lose="on").status_code == 303
    assert standin.lose_webhooks is True
    assert _post(standin, "phone-answer", chat=NUMBER, text="from the phone").status_code == 303
    assert (
        _post(standin, "fail-delivery", gateway_id=standin.sends[0].gateway_id).status_code == 303
    )
    assert _post(standin, "qr-limit").status_code == 303
    assert standin.state == "close"


def test_a_knob_is_never_turned_by_a_get(standin: FakeEvolution) -> None:
    # A link followed or prefetched must not log the instance out.
    with httpx.Client(trust_env=False) as client:
        response = client.get(f"{standin.url}/_standin/qr-limit")
    assert response.status_code == 404
    assert standin.state == "open"


@pytest.mark.parametrize(
    ("action", "form"),
    [
        ("send-mode", {"mode": "down"}),
        ("send-mode", {"mode": "bogus"}),
        ("state", {"state": "gone"}),
        ("fail-delivery", {"gateway_id": ""}),
        ("customer-message", {"media": "<hologram>"}),
    ],
)
def test_the_page_refuses_a_bad_knob_in_escaped_words(
    standin: FakeEvolution, action: str, form: dict
) -> None:
    response = _post(standin, action, **form)

    assert response.status_code == 400
    assert "<hologram>" not in response.text
    assert standin.calls() == {}


# -- announcing and the command line ---------------------------------------------------------------


def test_announce_labels_every_send_and_knob(capsys: pytest.CaptureFixture[str]) -> None:
    standin = EvolutionStandin(api_key=API_KEY, announce=True).start()
    try:
        standin.show_qr("2@a,b,c,d")
        standin.scan()
        with httpx.Client(
            base_url=standin.url, headers={"apikey": API_KEY}, trust_env=False
        ) as http:
            message_id = _send(http).json()["key"]["id"]
    finally:
        standin.stop()

    out = capsys.readouterr().out
    assert f"STAND-IN Evolution, nothing sent to WhatsApp: to {JID} -> {message_id}" in out
    assert "STAND-IN Evolution: waiting for a scan" in out
    assert "STAND-IN Evolution: linked: open" in out
    assert API_KEY not in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_line_starts_waiting_for_a_scan_with_show_qr() -> None:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "statecore.whatsapp.standin_evolution",
        "--port",
        str(port),
        "--api-key",
        "cli-key",
        "--webhook-secret",
        "cli-secret",
        "--show-qr",
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
            assert (
                f"STAND-IN Evolution API on http://127.0.0.1:{port} (instance default)" in lines[0]
            )
            assert f"Control page: http://127.0.0.1:{port}/_standin/" in lines[1]
            assert "cli-key" not in "".join(lines) and "cli-secret" not in "".join(lines)
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"apikey": "cli-key"}, trust_env=False
            ) as http:
                assert (
                    http.get("/instance/connectionState/default").json()["instance"]["state"]
                    == "connecting"
                )
                assert QR_SHAPE.match(http.get("/instance/connect/default").json()["code"])
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def _environment(**gateway: str) -> dict[str, str]:
    """This process's environment without its GATEWAY_* variables, plus ``gateway``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return {**env, **gateway}


def test_the_command_line_takes_the_key_and_the_secret_from_the_environment() -> None:
    # Not on the command line, which `ps` shows to anyone on the machine.
    port = _free_port()
    receiver = WebhookReceiver()
    command = [sys.executable, "-m", "statecore.whatsapp.standin_evolution", "--port", str(port)]
    command += ["--webhook-url", receiver.url]
    env = _environment(GATEWAY_API_KEY="env-key", GATEWAY_WEBHOOK_SECRET="env-secret")
    try:
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                lines = [proc.stdout.readline() for _ in range(2)] if proc.stdout else []
                assert f"STAND-IN Evolution API on http://127.0.0.1:{port}" in lines[0]
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False
                ) as http:
                    state = "/instance/connectionState/default"
                    assert http.get(state, headers={"apikey": "env-key"}).status_code == 200
                    assert http.get(state, headers={"apikey": "cli-key"}).status_code == 401
                    customer = http.post("/_standin/customer-message", data={"text": "hi"})
                    assert customer.status_code == 303
                [posted] = receiver.wait_for(1)
            finally:
                proc.terminate()
                out, err = proc.communicate(timeout=5)
    finally:
        receiver.stop()
    # The JWT in place of the webhook's jwt_key is signed with the secret from the environment.
    signing_input, _, signature = (
        posted.headers["Authorization"].removeprefix("Bearer ").rpartition(".")
    )
    expected = hmac.new(b"env-secret", signing_input.encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert "env-key" not in "".join(lines) + out + err
    assert "env-secret" not in "".join(lines) + out + err


def test_the_command_line_wants_a_key_from_the_option_or_the_environment() -> None:
    command = [sys.executable, "-m", "statecore.whatsapp.standin_evolution"]
    done = subprocess.run(
        [*command, "--port", str(_free_port())],
        env=_environment(GATEWAY_WEBHOOK_SECRET="env-secret"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--api-key" in done.stderr and "GATEWAY_API_KEY" in done.stderr
