"""The ``fake_waha`` fixture: WAHA on 127.0.0.1, steered by tests, the settings pointed at it.

Registered in ``tests/conftest.py``'s ``pytest_plugins``. The server and all
its knobs are ``statecore.whatsapp.standin_waha.WahaStandin`` (the same
stand-in a person runs without a real WAHA), started WORKING with API key
``API_KEY`` and webhook secret ``WEBHOOK_SECRET``; the Django settings
(``GATEWAY_KIND``, ``GATEWAY_URL``, ``GATEWAY_SESSION``, ``GATEWAY_API_KEY``,
``GATEWAY_WEBHOOK_SECRET``) point at it for the test. A test reads like::

    def test_something(fake_waha, live_server):
        fake_waha.webhook_url = live_server.url + "/gateway/webhook"
        fake_waha.add_customer_message("Is the shop open?")
        ...

Knobs. Session: ``set_status(status, data=None)`` (STATUSES, posts
``session.status``), ``show_qr(text=None)``, ``scan()``, ``set_account(number,
name)``, ``pairing_code``, ``engine`` ("WEBJS", "NOWEB", "GOWS"),
``noweb_store``, ``wait_seconds``; read ``status``, ``qr``, ``me``,
``config``, ``pairing_requests()``. Sends: ``set_send_mode(mode)`` with
``mode`` in ``SEND_MODES`` ("ok", "not_working", "validation",
"unauthorized", "unprocessable", "error500", "hang", "drop", "down"),
``queue_send_modes(*modes)``, ``empty_201``, ``echo_mode``
("before_answer", "after_answer", "never"), ``hang_seconds``. Other routes:
``set_failure(route, mode)`` (FAILING_ROUTES x FAILURE_MODES). Webhooks:
``webhook_url``, ``webhook_secret``, ``webhook_events``, ``lose_webhooks``,
``post_webhook(body)``. WhatsApp: ``add_customer_message(text, sender=...,
name=..., media=..., phone=...)``, ``answer_from_phone(text, chat)``,
``ack(gateway_id, ack_name)``, ``fail_delivery(gateway_id)``. Records:
``sends`` (``SendCall``: chat_id, text, mode, gateway_id, delivered),
``delivered()``, ``calls()``, ``messages(chat)``, ``posts()``
(``WebhookPost``). Body builders and ``sign`` are module-level in the stand-in.

``waha_hook_receiver``: a plain HTTP server on 127.0.0.1 that records every
webhook posted to it (``received``: path, headers, raw body), answers
``status`` (200), and can ``hold`` requests until ``release()``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from statecore.whatsapp.standin_waha import (
    FAILURE_MODES,
    SEND_MODES,
    STATUSES,
    SendCall,
    WahaStandin,
    WebhookPost,
)

__all__ = [
    "API_KEY",
    "FAILURE_MODES",
    "SEND_MODES",
    "STATUSES",
    "WEBHOOK_SECRET",
    "FakeWaha",
    "SendCall",
    "WebhookPost",
    "HookReceiver",
    "Received",
    "fake_waha",
    "waha_hook_receiver",
]

API_KEY = "test-api-key"
WEBHOOK_SECRET = "test-webhook-secret"

# The name tests annotate with; the stand-in is the fake.
FakeWaha = WahaStandin


@pytest.fixture
def fake_waha(settings) -> Iterator[FakeWaha]:
    """A WORKING WAHA on a free loopback port, the settings pointed at it; stopped after."""
    waha = FakeWaha(0, api_key=API_KEY, webhook_secret=WEBHOOK_SECRET).start()
    settings.GATEWAY_KIND = "waha"
    settings.GATEWAY_URL = waha.url
    settings.GATEWAY_SESSION = "default"
    settings.GATEWAY_API_KEY = API_KEY
    settings.GATEWAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    try:
        yield waha
    finally:
        waha.stop()


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HookReceiver:
    """A webhook endpoint on a free loopback port that records what it is sent."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._open = threading.Event()
        self._open.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver._open.wait(10)
                with receiver._arrived:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    receiver._arrived.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/gateway/webhook"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received]

    def events(self) -> list[str]:
        return [body["event"] for body in self.bodies()]

    def hold(self) -> None:
        """Keep the next requests waiting (unanswered) until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """The first `count` requests, once that many arrived (AssertionError otherwise)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout)
            assert len(self.received) >= count, f"{len(self.received)} webhooks, not {count}"
            return list(self.received[:count])

    def close(self) -> None:
        self._open.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def waha_hook_receiver() -> Iterator[HookReceiver]:
    receiver = HookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
