"""The ``fake_cloud`` fixture: Meta's WhatsApp Cloud API on 127.0.0.1, steered by tests.

Registered in ``tests/conftest.py``'s ``pytest_plugins``. The server and all its
knobs are ``statecore.whatsapp.standin_cloud.CloudStandin`` (the same stand-in a
person runs instead of the real API), started with a valid token, and the Django
settings point at it for the test (GATEWAY_KIND "cloud", GATEWAY_URL,
GATEWAY_API_KEY, GATEWAY_PHONE_NUMBER_ID, GATEWAY_WEBHOOK_SECRET,
GATEWAY_VERIFY_TOKEN), so a test reads like::

    def test_something(fake_cloud, live_server):
        fake_cloud.webhook_url = live_server.url + "/gateway/webhook"
        fake_cloud.queue_send_modes("window_closed", "ok")
        ...
        assert [call.delivered for call in fake_cloud.sends] == [False, True]

Knobs. Token and account: ``expire_token()``, ``renew_token()``, read
``token_expired``; ``set_account(number, name, quality)``, read ``account``;
``set_webhook_override(level, url)``. Sends: ``set_send_mode(mode)`` with
``mode`` in ``SEND_MODES`` ("ok", "window_closed", "window_closed_later",
"undeliverable", "bad_parameter", "token_expired", "rate_limited", "error500",
"hang", "drop", "down"), ``queue_send_modes(*modes)``, ``rate_limit_code``
(130429 or 80007), ``hang_seconds``, ``echo_mode`` ("before_answer",
"after_answer", "never"). Webhooks (posted to ``webhook_url``, signed with the
app secret): ``add_customer_message(text, sender=..., name=..., media=...,
group_id=..., hide_number=...)``, ``answer_from_phone(text, chat=...)``,
``fail_delivery(gateway_id, code=...)``, ``post_webhook(body)``,
``verify_callback()``, ``lose_webhooks``, ``wait_for_webhooks()``; bodies from
the module's builders (``message_event``, ``status_event``,
``phone_echo_event``, ``session_event``, ``build_event``) signed by ``sign``.
Records: ``sends`` (``SendCall``: to, chat, text, mode, gateway_id, delivered,
reply_id), ``delivered()``, ``calls()``, ``messages()``, ``posted()``.

``cloud_receiver`` is a plain HTTP server on 127.0.0.1 standing where the
dashboard's webhook would be: it records each request exactly as it arrived
(headers, raw body), answers POSTs with ``status`` and Meta's GET verification
with the challenge when the verify token is right. Tests that check what the
stand-in posts, without the dashboard, point ``webhook_url`` at it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from statecore.whatsapp.standin_cloud import (
    ECHO_MODES,
    SEND_MODES,
    CloudStandin,
    PostedWebhook,
    SendCall,
)

__all__ = [
    "API_KEY",
    "ECHO_MODES",
    "SEND_MODES",
    "VERIFY_TOKEN",
    "WEBHOOK_SECRET",
    "CloudStandin",
    "FakeCloud",
    "PostedWebhook",
    "Received",
    "SendCall",
    "WebhookReceiver",
    "cloud_receiver",
    "fake_cloud",
]

API_KEY = "test-api-key"
WEBHOOK_SECRET = "test-webhook-secret"
VERIFY_TOKEN = "test-verify-token"

# The name tests annotate with; the stand-in is the fake.
FakeCloud = CloudStandin


@pytest.fixture
def fake_cloud(settings) -> Iterator[FakeCloud]:
    """The Cloud API on a free loopback port with the settings pointing at it; stopped
    (hangs released, webhooks in flight finished) after the test."""
    standin = FakeCloud(
        0, api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, verify_token=VERIFY_TOKEN
    ).start()
    settings.GATEWAY_KIND = "cloud"
    settings.GATEWAY_URL = standin.url
    settings.GATEWAY_API_KEY = API_KEY
    settings.GATEWAY_PHONE_NUMBER_ID = standin.phone_number_id
    settings.GATEWAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.GATEWAY_VERIFY_TOKEN = VERIFY_TOKEN
    try:
        yield standin
    finally:
        standin.stop()


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Records every request; POST answers ``status``, GET answers Meta's verification."""

    def __init__(self, *, verify_token: str = VERIFY_TOKEN) -> None:
        self.status = 200
        self.verify_token = verify_token
        self._received: list[Received] = []
        self._arrived = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ReceiverHandler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/gateway/webhook"

    @property
    def received(self) -> list[Received]:
        with self._arrived:
            return list(self._received)

    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def wait_for_posts(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The first ``count`` POSTs, once they have arrived (or what came by ``timeout``)."""
        with self._arrived:
            self._arrived.wait_for(
                lambda: sum(r.method == "POST" for r in self._received) >= count, timeout
            )
        return self.posts()[:count]

    def _record(self, request: Received) -> None:
        with self._arrived:
            self._received.append(request)
            self._arrived.notify_all()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _ReceiverHandler(BaseHTTPRequestHandler):
    def _take(self) -> Received:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Received(
            self.command,
            parts.path,
            {k: v[0] for k, v in parse_qs(parts.query).items()},
            dict(self.headers.items()),
            self.rfile.read(length) if length else b"",
        )
        self.server.receiver._record(request)  # type: ignore[attr-defined]
        return request

    def do_POST(self) -> None:
        self._take()
        self._answer(self.server.receiver.status, b"ok")  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        query = self._take().query
        receiver = self.server.receiver  # type: ignore[attr-defined]
        if query.get("hub.verify_token") == receiver.verify_token:
            self._answer(200, query.get("hub.challenge", "").encode())
        else:
            self._answer(403, b"forbidden")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cloud_receiver() -> Iterator[WebhookReceiver]:
    """Where the stand-in's webhooks land when a test checks them without the dashboard."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
