"""A stand-in for the Node.js WhatsApp gateway: it speaks the protocol, sends nothing.

Run it for ``make run`` on a machine without the real gateway::

    python -m statecore.standin_gateway --port 3000 --prefix /api/whatsapp

Every /send is printed, labelled STAND-IN, and answered with a fresh messageId
as whatsapp-web.js would; nothing reaches WhatsApp. Tests use the same class
(``tests/fake_gateway.py`` wraps it in a fixture) and its knobs to make the
gateway refuse, fail, hang, answer garbage or go down. All the knobs live here
so that the stand-in and the tests cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What /send can be told to do. "down" is server-wide: the port stops listening.
SEND_MODES = ("ok", "refuse", "error500", "hang", "garbage", "drop", "down")
# Failure modes that /status and /info accept besides a normal answer.
FAILURE_MODES = ("error500", "hang", "garbage", "drop")

DEFAULT_INFO = {"number": "923001234567", "name": "Stand-in gateway", "platform": "stand-in"}
DEFAULT_REFUSE_ERROR = "WhatsApp client is not ready"


@dataclass(frozen=True)
class SendCall:
    """One /send the stand-in received, whatever it answered."""

    number: str
    message: str
    idempotency_key: str | None
    mode: str


class StandinGateway:
    """An HTTP server on ``host:port`` speaking the gateway protocol under ``prefix``.

    ``port=0`` picks a free port; ``url`` is the ``api_endpoint`` to use.
    Thread-safe: knobs can be turned and records read while requests run.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/api/whatsapp",
        *,
        announce: bool = False,
        hang_seconds: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.announce = announce
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._down = False
        # Set when the server goes down or stops, so hanging handlers return at once.
        self._release = threading.Event()
        self.reset()

    # -- life -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to use as ``api_endpoint``."""
        return f"http://{self.host}:{self.port}{self.prefix}"

    def start(self) -> StandinGateway:
        """Start listening (in a background thread); returns self."""
        with self._lock:
            if self._server is None:
                self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and release any hanging request."""
        with self._lock:
            self._close()
            self._down = False

    def serve_forever(self) -> None:
        """Listen in the calling thread until interrupted (the command-line use)."""
        with self._lock:
            self._server = _Server((self.host, self.port), _Handler, self)
            self.port = self._server.server_address[1]
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def _listen(self) -> None:
        self._release = threading.Event()
        # Binding the same port again after "down" relies on SO_REUSEADDR,
        # which HTTPServer sets.
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits up to one poll interval; tests stop servers often.
            kwargs={"poll_interval": 0.05},
            name=f"standin-gateway-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- knobs --------------------------------------------------------------

    def reset(self) -> None:
        """Back to a healthy gateway with no records, listening again if it was down."""
        with self._lock:
            if self._down:
                self._listen()
                self._down = False
            self._send_mode = "ok"
            self._queued: deque[str] = deque()
            self.refuse_error = DEFAULT_REFUSE_ERROR
            self._status: bool | str = True
            self._info: dict[str, Any] | str = dict(DEFAULT_INFO)
            self._sends: list[SendCall] = []
            self._calls: Counter[str] = Counter()

    def set_send_mode(self, mode: str) -> None:
        """Make every later /send behave as ``mode`` (one of ``SEND_MODES``).

        ``"down"`` closes the listening socket, so every call (/status too)
        meets "connection refused"; any other mode brings it back on the same port.
        """
        _check(mode, SEND_MODES)
        with self._lock:
            self._send_mode = mode
            if mode == "down" and self._server is not None:
                self._close()
                self._down = True
            elif mode != "down" and self._down:
                self._listen()
                self._down = False

    def queue_send_modes(self, *modes: str) -> None:
        """Answer the next /send calls with these modes, one per call, then the set mode."""
        for mode in modes:
            _check(mode, tuple(m for m in SEND_MODES if m != "down"))
        with self._lock:
            self._queued.extend(modes)

    def set_status(self, answer: bool | str) -> None:
        """/status answers ``{"isReady": answer}``, or fails as a mode in ``FAILURE_MODES``."""
        if not isinstance(answer, bool):
            _check(answer, FAILURE_MODES)
        with self._lock:
            self._status = answer

    def set_info(self, answer: dict[str, Any] | str) -> None:
        """/info answers this JSON object, or fails as a mode in ``FAILURE_MODES``."""
        if not isinstance(answer, dict):
            _check(answer, FAILURE_MODES)
        with self._lock:
            self._info = answer

    # -- records ------------------------------------------------------------

    @property
    def sends(self) -> list[SendCall]:
        """Every /send received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._sends)

    def calls(self) -> Counter[str]:
        """How many requests arrived per route ("status", "info", "send")."""
        with self._lock:
            return Counter(self._calls)

    def send_counts(self) -> Counter[str | None]:
        """How many /send calls arrived per Idempotency-Key (None: no header)."""
        with self._lock:
            return Counter(call.idempotency_key for call in self._sends)

    # -- used by the handler ---------------------------------------------------

    def _next_send_mode(self, call: SendCall) -> str:
        with self._lock:
            mode = self._queued.popleft() if self._queued else self._send_mode
            self._calls["send"] += 1
            self._sends.append(SendCall(call.number, call.message, call.idempotency_key, mode))
            return mode

    def _answer_for(self, route: str) -> bool | str | dict[str, Any]:
        with self._lock:
            self._calls[route] += 1
            return self._status if route == "status" else self._info


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, gateway: StandinGateway) -> None:
        self.gateway = gateway
        self.release = gateway._release
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "StandinGateway/1"

    def do_GET(self) -> None:
        route = self._route()
        if route not in ("status", "info"):
            self._not_found()
            return
        answer = self.server.gateway._answer_for(route)
        if isinstance(answer, str):
            self._fail(answer)
        elif route == "status":
            self._json(200, {"isReady": answer})
        else:
            self._json(200, answer)

    def do_POST(self) -> None:
        if self._route() != "send":
            self._not_found()
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            number, message = body["number"], body["message"]
            if not isinstance(number, str) or not isinstance(message, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            # What an Express gateway does with a malformed request: refuse it.
            self._json(400, {"success": False, "error": "number and message are required"})
            return
        gateway = self.server.gateway
        call = SendCall(number, message, self.headers.get("Idempotency-Key"), "")
        mode = gateway._next_send_mode(call)
        if mode == "ok":
            # whatsapp-web.js gives every sendMessage a fresh id; so do we.
            message_id = f"true_{number}@c.us_{uuid.uuid4().hex[:20].upper()}"
            if gateway.announce:
                print(
                    f"STAND-IN gateway, nothing sent to WhatsApp: to {number} "
                    f"(Idempotency-Key {call.idempotency_key}) -> {message_id}\n"
                    f"    {message!r}",
                    flush=True,
                )
            self._json(200, {"success": True, "messageId": message_id})
        elif mode == "refuse":
            self._json(200, {"success": False, "error": gateway.refuse_error})
        else:
            self._fail(mode)

    def _fail(self, mode: str) -> None:
        if mode == "error500":
            # The shape of an Express catch-all: JSON success:false, but a 5xx.
            self._json(500, {"success": False, "error": "Evaluation failed: stand-in error"})
        elif mode == "garbage":
            self._send(200, b"<html><body>Gateway says hi</body></html>", "text/html")
        elif mode == "drop":
            self.close_connection = True  # hang up without a word
        elif mode == "hang":
            # Wait past any client timeout, but stop at once on shutdown.
            self.server.release.wait(self.server.gateway.hang_seconds)
            self.close_connection = True

    def _route(self) -> str:
        path = self.path.split("?", 1)[0]
        prefix = self.server.gateway.prefix
        return path[len(prefix) + 1 :] if path.startswith(prefix + "/") else ""

    def _not_found(self) -> None:
        self._send(404, f"Cannot {self.command} {self.path}".encode(), "text/plain")

    def _json(self, code: int, data: object) -> None:
        self._send(code, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.gateway.announce:
            super().log_message(format, *args)


def _check(mode: str, allowed: tuple[str, ...]) -> None:
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(allowed)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Stand-in WhatsApp gateway: speaks the protocol, sends NOTHING to WhatsApp."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--prefix", default="/api/whatsapp")
    args = parser.parse_args(argv)
    gateway = StandinGateway(args.host, args.port, args.prefix, announce=True)
    print(
        f"STAND-IN WhatsApp gateway on http://{args.host}:{args.port}{gateway.prefix} "
        "- messages are printed here, never sent to WhatsApp. Ctrl-C stops it.",
        flush=True,
    )
    try:
        gateway.serve_forever()
    except KeyboardInterrupt:
        print("STAND-IN gateway stopped.", file=sys.stderr)


if __name__ == "__main__":
    main()
