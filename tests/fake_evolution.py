"""The ``fake_evolution`` fixture: the Evolution API on 127.0.0.1, steered by tests.

Registered in ``tests/conftest.py`` (``pytest_plugins``). The server and all its
knobs are ``statecore.whatsapp.standin_evolution.EvolutionStandin`` (the same
stand-in a person runs without a real Evolution), started linked and ``open``,
with the api key ``API_KEY``, the webhook secret ``WEBHOOK_SECRET`` and no
webhook URL (set ``fake_evolution.webhook_url`` to have its webhooks posted).
The Django settings point at it for the test: GATEWAY_KIND "evolution",
GATEWAY_URL, GATEWAY_SESSION "default", GATEWAY_API_KEY, GATEWAY_WEBHOOK_SECRET.
A test reads like::

    def test_something(fake_evolution):
        fake_evolution.queue_send_modes("closed_before_send", "ok")
        with whatsapp.gateway() as gateway:
            ...
        assert [call.delivered for call in fake_evolution.sends] == [False, True]

Knobs. Session: ``set_state("open"|"connecting"|"close", reason=401)``,
``show_qr(text=None)``, ``scan()``, ``set_qr_limit_reached()``,
``set_account(number, name)``; read ``state``, ``qr``, ``pairing_code``
(``GET /instance/connect/<i>?number=`` from ``close`` makes one). Failures of
other routes: ``set_failure(route, mode)`` (ROUTES; FAILURE_MODES "error500",
"garbage", "hang", "drop"; None answers again), ``hang_seconds``. Sends:
``set_send_mode(mode)`` with ``mode`` in ``SEND_MODES`` ("ok",
"not_on_whatsapp", "schema", "closed_after_send", "closed_before_send",
"unauthorized", "no_instance", "error500", "hang", "drop", "down"),
``queue_send_modes(*modes)``, ``echo_mode`` ("before_answer", "after_answer",
"never"). Inbound: ``add_customer_message(text, sender=..., name=..., media=...,
lid=..., group=..., id=..., timestamp=...)``, ``answer_from_phone(text, chat=...)``,
``react(gateway_id, emoji)``, ``fail_delivery(gateway_id)``,
``report_status(gateway_id, status)``, ``lose_webhooks``, ``post_webhook(body)``
(each posted webhook is answered before the knob returns); the webhook: ``webhook_url``,
``webhook_secret``, ``webhook``. Records: ``sends`` (``SendCall``: number, text,
chat, mode, gateway_id, delivered), ``delivered()``, ``calls()``,
``messages()``, ``webhooks`` (``WebhookPost``: event, url, status, lost). The
module's builders (``message_event``, ``send_message_event``, ``status_event``,
``session_event``, ``qrcode_event``, ``qr_limit_event``) and ``sign`` make exact
bodies and headers.

``evolution_receiver``: a loopback server set as the instance's webhook URL that
keeps every delivery (``received``: path, headers, raw body; ``wait_for(n)``,
``events()``), answers ``status`` (200), and can ``hold(event)`` its answer until
``release()``. Not our /gateway/webhook: for the stand-in's and the adapter's own tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from statecore.whatsapp.standin_evolution import (
    FAILURE_MODES,
    ROUTES,
    SEND_MODES,
    EvolutionStandin,
    SendCall,
    WebhookPost,
)

__all__ = [
    "API_KEY",
    "FAILURE_MODES",
    "ROUTES",
    "SEND_MODES",
    "WEBHOOK_SECRET",
    "FakeEvolution",
    "SendCall",
    "WebhookPost",
    "WebhookReceiver",
    "evolution_receiver",
    "fake_evolution",
]

API_KEY = "test-api-key"
WEBHOOK_SECRET = "test-webhook-secret"
INSTANCE = "default"

# The name tests annotate with; the stand-in is the fake.
FakeEvolution = EvolutionStandin


@pytest.fixture
def fake_evolution(settings) -> Iterator[FakeEvolution]:
    """A linked instance on a free loopback port, the settings pointing at it; stopped
    (hangs released) after the test."""
    standin = FakeEvolution(port=0, api_key=API_KEY, webhook_secret=WEBHOOK_SECRET).start()
    settings.GATEWAY_KIND = "evolution"
    settings.GATEWAY_URL = standin.url
    settings.GATEWAY_SESSION = INSTANCE
    settings.GATEWAY_API_KEY = API_KEY
    settings.GATEWAY_WEBHOOK_SECRET = WEBHOOK_SECRET
    try:
        yield standin
    finally:
        standin.stop()


@dataclass(frozen=True)
class Received:
    """One webhook delivery as it arrived: the path, the headers, the raw body."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    """A loopback HTTP server standing where our /gateway/webhook would be: it keeps
    every delivery and answers ``status`` (200). ``hold(event)`` keeps the answer to
    deliveries of that event until ``release()``, so a test can see what a sender does
    while its webhook is still being answered."""

    def __init__(self) -> None:
        self.status = 200
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._held: str | None = None
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                item = Received(self.path, dict(self.headers.items()), body)
                with receiver._arrived:
                    receiver._received.append(item)
                    receiver._arrived.notify_all()
                if receiver._held and receiver._held == _event_of(body):
                    receiver._release.wait(10)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/gateway/webhook"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def events(self) -> list[str]:
        return [_event_of(r.body) for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` deliveries arrived (an assert fails after `timeout`)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._received) >= count, timeout)
            return list(self._received)

    def hold(self, event: str) -> None:
        self._held = event

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def _event_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("event"))
    except (ValueError, AttributeError):
        return ""


@pytest.fixture
def evolution_receiver(fake_evolution: FakeEvolution) -> Iterator[WebhookReceiver]:
    """A receiver for the stand-in's webhooks, set as the instance's webhook URL."""
    receiver = WebhookReceiver()
    fake_evolution.webhook_url = receiver.url
    try:
        yield receiver
    finally:
        receiver.stop()
