"""A stand-in for the scripts' whatsapp-web.js + Express service: it speaks its API, sends nothing.

Run it on a machine without the real service (``api_endpoint`` =
``http://127.0.0.1:3000/api/whatsapp``)::

    python -m statecore.whatsapp.standin_wwebjs --port 3000 --prefix /api/whatsapp [--show-qr]

Every route answers as GATEWAY.md section 1 says the real one does, status
codes and bodies included. Every /send is printed, labelled STAND-IN, and
nothing reaches WhatsApp. A person steers it from the control page at
``/_standin/`` (show a QR, "scan" it, lose the connection, add a customer's
message, make sends fail); tests steer the same class through its methods
(``tests/fake_gateway.py`` wraps it in a fixture), so the stand-in and the
tests cannot drift apart.

What a send mode means for ``SendCall.delivered`` (would a customer have got
it?): ``"ok"`` delivers when the session is ready and answers 400 "not ready"
otherwise; ``"not_ready"`` never delivers. ``"send_failed"``, ``"error500"``,
``"hang"``, ``"garbage"`` and ``"drop"`` force their answer whatever the
session, and are placed *after* the point of no return: the message reached
WhatsApp and the answer was lost or broken. That is the worst case, the one
``maybe_sent`` exists for, and the one a sender that retries blindly turns into
a duplicate. A failure that certainly sent nothing is ``"not_ready"`` or
``"down"`` (connection refused).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import secrets
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# What /send can be told to do. "down" is server-wide: the port stops listening.
SEND_MODES = ("ok", "not_ready", "send_failed", "error500", "hang", "garbage", "drop", "down")
# The modes that model a failure after whatsapp-web.js's sendMessage ran (see the docstring).
DELIVERING_FAILURES = ("send_failed", "error500", "hang", "garbage", "drop")
# How /status, /info and the /messages routes can be told to fail instead of answering.
FAILURE_MODES = ("error500", "hang", "garbage", "drop")

# The service keeps customers' messages in memory, only the last 100.
BUFFER_SIZE = 100
NOT_READY_ERROR = "WhatsApp client is not ready"
MISSING_FIELDS_ERROR = "Missing required fields: number and message"
# The best-known way whatsapp-web.js's sendMessage throws (2024): a real reason to reuse.
DEFAULT_SEND_FAILURE = "Evaluation failed: Error: Lid is missing in chat table"
DEFAULT_ACCOUNT = {"number": "923009876543", "name": "Stand-in shop", "platform": "android"}
CONTROL_PATH = "/_standin"


@dataclass(frozen=True)
class SendCall:
    """One /send that got past the body checks, whatever it answered.

    ``message_id`` is the id WhatsApp would hold for it: set when ``delivered``,
    even when the caller never saw it (a hang, a drop), None otherwise.
    """

    number: str
    message: str
    chat_id: str
    mode: str
    message_id: str | None
    delivered: bool


class WwebjsStandin:
    """An HTTP server on ``host:port`` answering like the scripts' service under ``prefix``.

    ``port=0`` picks a free port; ``url`` is the ``api_endpoint`` to use.
    ``logged_in=False`` starts logged out, showing a QR, as a fresh install does.
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
        logged_in: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.announce = announce
        self.hang_seconds = hang_seconds
        # Read by the handler at each "send_failed"; a str assignment is atomic.
        self.send_failure_reason = DEFAULT_SEND_FAILURE
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._down = False
        # Set when the server goes down or stops, so hanging handlers return at once.
        self._release = threading.Event()
        # Set by stop(), so serve_forever() returns.
        self._stopped = threading.Event()
        self._ready = logged_in
        self._qr: str | None = None
        self._account = dict(DEFAULT_ACCOUNT)
        self._failures: dict[str, str | None] = {"status": None, "info": None, "messages": None}
        self._send_mode = "ok"
        self._queued: deque[str] = deque()
        self._sends: list[SendCall] = []
        self._calls: Counter[str] = Counter()
        # The real buffer is an array trimmed to the last 100 on each push.
        self._buffer: deque[dict[str, Any]] = deque(maxlen=BUFFER_SIZE)
        if not logged_in:
            self._qr = new_qr_string()

    # -- life -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to use as ``api_endpoint``."""
        return f"http://{self.host}:{self.port}{self.prefix}"

    @property
    def control_url(self) -> str:
        """The control page for a person."""
        return f"http://{self.host}:{self.port}{CONTROL_PATH}/"

    def start(self) -> WwebjsStandin:
        """Start listening (in a background thread); returns self."""
        with self._lock:
            self._stopped.clear()
            if self._server is None and not self._down:
                self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and release any hanging request."""
        with self._lock:
            self._close()
            self._down = False
            self._stopped.set()

    def serve_forever(self) -> None:
        """Serve until stop() or Ctrl-C (the command-line use).

        The server runs in its background thread even here: "down" closes it
        and another mode reopens it, which must not end the process.
        """
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        finally:
            self.stop()

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
            name=f"standin-wwebjs-{self.port}",
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

    # -- the session --------------------------------------------------------

    @property
    def ready(self) -> bool:
        """What /status says as ``isReady``."""
        with self._lock:
            return self._ready

    @property
    def qr(self) -> str | None:
        """The QR string /status shows, or None."""
        with self._lock:
            return self._qr

    def show_qr(self, text: str | None = None) -> str:
        """Logged out, waiting for a scan: /status shows ``text`` (or a made-up QR). Returns it."""
        with self._lock:
            self._ready = False
            self._qr = text if text is not None else new_qr_string()
            qr = self._qr
        self._say(f"logged out, showing a QR: {qr[:24]}...")
        return qr

    def renew_qr(self) -> str:
        """A fresh QR, as whatsapp-web.js shows every ~20 s while waiting; returns it.

        When no QR was showing it starts showing one (like show_qr()).
        """
        with self._lock:
            self._ready = False
            self._qr = new_qr_string()
            qr = self._qr
        self._say(f"QR renewed: {qr[:24]}...")
        return qr

    def scan(self) -> None:
        """The phone scanned the QR: ready, and the QR is cleared (the 'ready' event)."""
        with self._lock:
            self._ready = True
            self._qr = None
        self._say("QR scanned: ready")

    def go_not_ready(self) -> None:
        """Not ready and no QR: the connection was lost (not a logout)."""
        with self._lock:
            self._ready = False
            self._qr = None
        self._say("not ready (connection lost), no QR")

    def set_account(
        self, number: str | None = None, name: str | None = None, platform: str | None = None
    ) -> None:
        """What /info answers while ready; a None keeps that field."""
        with self._lock:
            for key, value in (("number", number), ("name", name), ("platform", platform)):
                if value is not None:
                    self._account[key] = value
            account = dict(self._account)
        self._say(f"account is now {account}")

    # -- failures -------------------------------------------------------------

    def set_status_failure(self, mode: str | None) -> None:
        """/status fails as ``mode`` (in ``FAILURE_MODES``), or answers again with None."""
        self._set_failure("status", mode)

    def set_info_failure(self, mode: str | None) -> None:
        """/info fails as ``mode`` (in ``FAILURE_MODES``), or answers again with None."""
        self._set_failure("info", mode)

    def set_messages_failure(self, mode: str | None) -> None:
        """All three /messages routes (list, mark processed, clear) fail as ``mode``, or None."""
        self._set_failure("messages", mode)

    def _set_failure(self, route: str, mode: str | None) -> None:
        if mode is not None:
            _check(mode, FAILURE_MODES)
        with self._lock:
            self._failures[route] = mode
        self._say(f"/{route} {'fails: ' + mode if mode else 'answers normally'}")

    # -- sends -------------------------------------------------------------------

    def set_send_mode(self, mode: str) -> None:
        """Make every later /send behave as ``mode`` (one of ``SEND_MODES``).

        ``"down"`` closes the listening socket, so every call (/status too)
        meets "connection refused"; any other mode brings it back on the same port.
        """
        _check(mode, SEND_MODES)
        with self._lock:
            self._send_mode = mode
            if mode == "down" and not self._down:
                self._close()
                self._down = True
            elif mode != "down" and self._down:
                self._down = False
                self._listen()
        self._say(f"/send mode is now {mode}")

    def queue_send_modes(self, *modes: str) -> None:
        """Answer the next /send calls with these modes, one per call, then the set mode."""
        for mode in modes:
            # "down" cannot be one call's answer: a refused connection never reaches a handler.
            _check(mode, tuple(m for m in SEND_MODES if m != "down"))
        with self._lock:
            self._queued.extend(modes)
        self._say(f"next /send calls: {', '.join(modes)}")

    @property
    def sends(self) -> list[SendCall]:
        """Every /send that got past the body checks, oldest first (a copy)."""
        with self._lock:
            return list(self._sends)

    def delivered(self) -> list[SendCall]:
        """Only the sends a customer would have received, oldest first."""
        with self._lock:
            return [call for call in self._sends if call.delivered]

    def calls(self) -> Counter[str]:
        """Requests per route: "status", "info", "send", "messages", "processed", "clear"."""
        with self._lock:
            return Counter(self._calls)

    # -- inbound ---------------------------------------------------------------

    def add_customer_message(
        self,
        body: str = "Hello",
        *,
        sender: str = "923001234567@c.us",
        name: str = "Customer",
        is_group: bool | None = None,
        chat_name: str | None = None,
        type: str = "chat",  # the service's own field names, builtins shadowed on purpose
        has_media: bool = False,
        id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """A customer's message arrives; returns it as the service stores it (a copy).

        ``is_group`` defaults to whether ``sender`` is a ``@g.us`` chat;
        ``chat_name`` to the sender's name (a group's subject for a group).
        The buffer keeps the last 100: the oldest falls off, processed or not.
        """
        group = sender.endswith("@g.us") if is_group is None else is_group
        if chat_name is None:
            chat_name = "Stand-in group" if group else name
        now = time.time()
        message = {
            "id": id if id is not None else new_inbound_id(),
            "from": sender,
            "fromName": name,
            "body": body,
            "timestamp": int(now) if timestamp is None else timestamp,
            "isGroup": group,
            "chatName": chat_name,
            "type": type,
            "hasMedia": has_media,
            "processed": False,
            "receivedAt": _iso_z(now),
        }
        with self._lock:
            self._buffer.append(message)
        self._say(f"customer message {message['id']} from {sender}: {body[:60]!r}")
        return dict(message)

    def messages(self) -> list[dict[str, Any]]:
        """The buffer as the service holds it, oldest first (copies)."""
        with self._lock:
            return [dict(message) for message in self._buffer]

    def processed_ids(self) -> list[str]:
        """The ids of buffered messages marked processed, oldest first."""
        with self._lock:
            return [message["id"] for message in self._buffer if message["processed"]]

    # -- used by the handler ---------------------------------------------------

    def _count(self, route: str) -> str | None:
        """Count a call; return the failure it must meet, if any."""
        with self._lock:
            self._calls[route] += 1
            group = "messages" if route in ("messages", "processed", "clear") else route
            return self._failures.get(group)

    def _status_body(self) -> dict[str, Any]:
        with self._lock:
            return {"isReady": self._ready, "hasQR": self._qr is not None, "qrCode": self._qr}

    def _info_body(self) -> dict[str, Any] | None:
        with self._lock:
            return dict(self._account) if self._ready else None

    def _send(self, number: str, message: str) -> SendCall:
        """Decide and record one send that passed the body checks."""
        chat_id = re.sub(r"\D", "", number) + "@c.us"
        with self._lock:
            mode = self._queued.popleft() if self._queued else self._send_mode
            delivered = (mode == "ok" and self._ready) or mode in DELIVERING_FAILURES
            call = SendCall(
                number, message, chat_id, mode, new_sent_id() if delivered else None, delivered
            )
            self._sends.append(call)
        if delivered and self.announce:
            print(
                f"STAND-IN gateway, nothing sent to WhatsApp: to {chat_id} -> {call.message_id}"
                f" (answered as {mode})\n    {message!r}",
                flush=True,
            )
        return call

    def _list(self, unprocessed_only: bool) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self._buffer if not (unprocessed_only and m["processed"])]

    def _mark_processed(self, message_id: str) -> bool:
        with self._lock:
            for message in self._buffer:
                # The service marks the first match, as Array.find does.
                if message["id"] == message_id:
                    message["processed"] = True
                    return True
            return False

    def _clear_processed(self) -> int:
        with self._lock:
            kept = [m for m in self._buffer if not m["processed"]]
            self._buffer = deque(kept, maxlen=BUFFER_SIZE)
            return len(kept)

    def _state_for_page(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ready": self._ready,
                "qr": self._qr,
                "account": dict(self._account),
                "send_mode": self._send_mode,
                "queued": list(self._queued),
                "failures": dict(self._failures),
                "sends": list(self._sends[-20:]),
                "messages": [dict(m) for m in list(self._buffer)[-20:]],
                "calls": Counter(self._calls),
            }

    def _say(self, text: str) -> None:
        if self.announce:
            print(f"STAND-IN gateway: {text}", flush=True)


# -- ids and QRs that look like whatsapp-web.js's -----------------------------


def new_sent_id() -> str:
    """A sent message's short id as whatsapp-web.js's web client makes them (3EB0 + hex)."""
    return "3EB0" + secrets.token_hex(8).upper()


def new_inbound_id() -> str:
    """A customer's message id as phones make them (an iPhone's 3A + hex)."""
    return "3A" + secrets.token_hex(9).upper()


def new_qr_string() -> str:
    """A made-up QR payload shaped like WhatsApp Web's: ref, noise key, identity key, secret."""
    ref = base64.b64encode(os.urandom(63)).decode()
    keys = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    return "2@" + ref + "," + ",".join(keys)


def _iso_z(at: float) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, a Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _js_string(value: Any) -> str:
    """JavaScript's String(value) for what JSON can carry: the service uses fields as given."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else _js_string(v) for v in value)
    return str(value)


def _js_truthy(value: Any) -> bool:
    # `!number || !message`: "", 0, null, false and a missing key are all missing.
    return value not in (None, False, 0, "") or isinstance(value, dict | list)


def _json_syntax_message(text: str, error: json.JSONDecodeError | None) -> str:
    """A V8-like SyntaxError message, as Express's error handler would pass on.

    Only the 500 and its "error" are pinned; this text is an approximation.
    """
    position = error.pos if error is not None else 0
    if position >= len(text):
        return "Unexpected end of JSON input"
    snippet = text if len(text) <= 30 else text[:30] + "..."
    return f"Unexpected token '{text[position]}', \"{snippet}\" is not valid JSON"


# -- the HTTP side ---------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops bursts of connections (a 1 s SYN
    # retry each); Node listens with 511.
    request_queue_size = 511

    def __init__(self, address: tuple[str, int], handler: type, standin: WwebjsStandin) -> None:
        self.standin = standin
        self.release = standin._release
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Express sends no Server header; ours says plainly what answered.
    server_version = "StandinWwebjs/1"

    # -- dispatch ---------------------------------------------------------

    def do_GET(self) -> None:
        route = self._route()
        if route == ["status"]:
            self._answer("status", lambda: self._json(200, self.standin._status_body()))
        elif route == ["info"]:
            self._answer("info", self._info)
        elif route == ["messages"]:
            self._answer("messages", self._list)
        elif self._control_path() in ("", "/"):
            self._control_page()
        else:
            self._not_found()

    def do_POST(self) -> None:
        route = self._route()
        if route == ["send"]:
            self._answer("send", self._send)
        elif (
            route is not None
            and len(route) == 3
            and route[0] == "messages"
            and route[2] == "processed"
        ):
            message_id = unquote(self._raw_route()[1])
            self._answer("processed", lambda: self._processed(message_id))
        elif (control := self._control_path()) is not None:
            self._control_post(control.strip("/"))
        else:
            self._not_found()

    def do_DELETE(self) -> None:
        if self._route() == ["messages", "processed"]:
            self._answer("clear", self._clear)
        else:
            self._not_found()

    def do_PUT(self) -> None:
        self._not_found()

    def do_PATCH(self) -> None:
        self._not_found()

    @property
    def standin(self) -> WwebjsStandin:
        return self.server.standin

    def _answer(self, route: str, normal: Callable[[], None]) -> None:
        failure = self.standin._count(route)
        if failure is None:
            normal()
        else:
            self._fail(failure)

    # -- the service's routes ------------------------------------------------

    def _info(self) -> None:
        account = self.standin._info_body()
        if account is None:
            self._json(400, {"error": NOT_READY_ERROR})
        else:
            self._json(200, account)

    def _send(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self._parse_json_body(raw)
        if body is None:
            return
        fields = body if isinstance(body, dict) else {}
        number, message = fields.get("number"), fields.get("message")
        # The service checks the fields, then readiness, then sends.
        if not (_js_truthy(number) and _js_truthy(message)):
            self._json(400, {"error": MISSING_FIELDS_ERROR})
            return
        call = self.standin._send(_js_string(number), _js_string(message))
        if call.mode == "ok" and call.delivered:
            self._json(
                200, {"success": True, "messageId": call.message_id, "timestamp": int(time.time())}
            )
        elif call.mode in ("ok", "not_ready"):
            self._json(400, {"error": NOT_READY_ERROR})
        elif call.mode == "send_failed":
            self._json(
                400, {"error": f"Failed to send message: {self.standin.send_failure_reason}"}
            )
        else:
            self._fail(call.mode)

    def _parse_json_body(self, raw: bytes) -> Any:
        """What express.json() makes of a body, or None after answering its error.

        Like body-parser: a body without a JSON Content-Type is ignored (``{}``),
        an empty one is ``{}``, and in strict mode only an object or array parses;
        its SyntaxError reaches the service's error handler as a 500.
        """
        if "json" not in (self.headers.get("Content-Type") or "").lower():
            return {}
        text = raw.decode("utf-8", errors="replace")
        stripped = text.lstrip(" \t\n\r")
        if not stripped:
            return {}
        error: json.JSONDecodeError | None = None
        if stripped[0] in "{[":
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                error = exc
        self._json(
            500,
            {"error": "Internal server error", "message": _json_syntax_message(stripped, error)},
        )
        return None

    def _list(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        # The service compares the query value to the string 'true'.
        unprocessed_only = query.get("unprocessed", [""])[0] == "true"
        messages = self.standin._list(unprocessed_only)
        self._json(200, {"count": len(messages), "messages": messages})

    def _processed(self, message_id: str) -> None:
        if self.standin._mark_processed(message_id):
            self._json(200, {"success": True, "messageId": message_id})
        else:
            self._json(404, {"error": "Message not found"})

    def _clear(self) -> None:
        self._json(200, {"success": True, "remainingMessages": self.standin._clear_processed()})

    def _fail(self, mode: str) -> None:
        if mode == "error500":
            # Express's error handler in the service.
            self._json(500, {"error": "Internal server error", "message": "stand-in error"})
        elif mode == "garbage":
            self._reply(200, b"<html><body>Gateway says hi</body></html>", "text/html")
        elif mode == "drop":
            self.close_connection = True  # hang up without a word
        elif mode == "hang":
            # Wait past any client timeout, but stop at once on shutdown or "down".
            self.server.release.wait(self.standin.hang_seconds)
            self.close_connection = True

    # -- routing like Express ---------------------------------------------------

    def _raw_route(self) -> list[str]:
        path = urlsplit(self.path).path
        return path[len(self.standin.prefix) :].strip("/").split("/")

    def _route(self) -> list[str] | None:
        """The path's segments under the prefix, lowercased, or None outside it.

        Express matches case-insensitively and allows one trailing slash.
        """
        path = urlsplit(self.path).path
        prefix = self.standin.prefix.lower()
        lowered = path.lower()
        if not lowered.startswith(prefix + "/"):
            return None
        rest = lowered[len(prefix) + 1 :]
        rest = rest[:-1] if rest.endswith("/") else rest
        return rest.split("/") if rest and "//" not in rest else None

    def _control_path(self) -> str | None:
        path = urlsplit(self.path).path
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            return path[len(CONTROL_PATH) :]
        return None

    def _not_found(self) -> None:
        # finalhandler's 404: an HTML page naming the method and the path (no query).
        # escape-html's entities: &#39; where html.escape writes &#x27;.
        path = html.escape(urlsplit(self.path).path).replace("&#x27;", "&#39;")
        page = (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            "<title>Error</title>\n</head>\n<body>\n"
            f"<pre>Cannot {self.command} {path}</pre>\n</body>\n</html>\n"
        )
        self._reply(
            404,
            page.encode(),
            "text/html; charset=utf-8",
            {"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"},
        )

    # -- the control page ---------------------------------------------------------

    def _control_page(self) -> None:
        self._reply(200, _render_page(self.standin).encode(), "text/html; charset=utf-8")

    def _control_post(self, action: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", errors="replace")).items()}
        standin = self.standin
        try:
            if action == "show-qr":
                standin.show_qr()
            elif action == "renew-qr":
                standin.renew_qr()
            elif action == "scan":
                standin.scan()
            elif action == "not-ready":
                standin.go_not_ready()
            elif action == "customer-message":
                standin.add_customer_message(
                    form.get("body", ""),
                    sender=form.get("sender") or "923001234567@c.us",
                    name=form.get("name") or "Customer",
                )
            elif action == "send-mode":
                if form.get("mode") == "down":
                    # It would take this page down with it, with no way back but a restart.
                    raise ValueError("'down' is not offered here: this page would go down too")
                standin.set_send_mode(form.get("mode", ""))
            else:
                self._not_found()
                return
        except ValueError as exc:
            self._reply(400, html.escape(str(exc)).encode(), "text/plain; charset=utf-8")
            return
        self._reply(303, b"", "text/plain", {"Location": CONTROL_PATH + "/"})

    # -- writing ---------------------------------------------------------------------

    def _json(self, code: int, data: object) -> None:
        self._reply(code, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _reply(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The dashboard polls /status and /messages every few seconds: logging
        # each would bury the STAND-IN lines a person is looking for.
        pass


def _render_page(standin: WwebjsStandin) -> str:
    """The control page: every value escaped, every control a plain form (no JavaScript)."""
    state = standin._state_for_page()
    e = html.escape
    if state["ready"]:
        session = "ready (logged in)"
    elif state["qr"]:
        session = "logged out, showing a QR"
    else:
        session = "not ready, no QR (connection lost)"
    failures = ", ".join(f"/{k}: {v}" for k, v in state["failures"].items() if v) or "none"
    calls = ", ".join(f"{k}: {v}" for k, v in sorted(state["calls"].items())) or "none yet"
    sends = "".join(
        f"<tr><td>{e(c.chat_id)}</td><td>{e(c.message)}</td><td>{e(c.mode)}</td>"
        f"<td>{e(c.message_id or '')}</td><td>{'yes' if c.delivered else 'no'}</td></tr>"
        for c in reversed(state["sends"])
    )
    inbound = "".join(
        f"<tr><td>{e(m['id'])}</td><td>{e(m['from'])}</td><td>{e(m['fromName'])}</td>"
        f"<td>{e(m['body'])}</td><td>{'yes' if m['processed'] else 'no'}</td></tr>"
        for m in reversed(state["messages"])
    )
    options = "".join(
        f'<option value="{e(m)}"{" selected" if m == state["send_mode"] else ""}>{e(m)}</option>'
        for m in SEND_MODES
        if m != "down"
    )

    def button(action: str, label: str) -> str:
        return (
            f'<form method="post" action="{CONTROL_PATH}/{action}" style="display:inline">'
            f'<button type="submit">{e(label)}</button></form>'
        )

    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>STAND-IN WhatsApp gateway</title></head>
<body style="font-family:sans-serif;max-width:60em;margin:1em auto">
<h1 style="background:#b00;color:#fff;padding:.5em">STAND-IN gateway: nothing is sent to WhatsApp</h1>
<p>API: <code>{e(standin.url)}</code></p>
<h2>State</h2>
<ul>
<li>Session: <strong>{e(session)}</strong></li>
<li>QR: <code>{e(state["qr"] or "none")}</code></li>
<li>Account: {e(state["account"]["number"])} ({e(state["account"]["name"])}, {e(state["account"]["platform"])})</li>
<li>/send mode: <strong>{e(state["send_mode"])}</strong>; queued: {e(", ".join(state["queued"]) or "none")}</li>
<li>Failing routes: {e(failures)}</li>
<li>Calls: {e(calls)}</li>
</ul>
<h2>Session</h2>
<p>{button("show-qr", "Log out: show a QR")} {button("renew-qr", "Renew the QR")}
{button("scan", "Scan the QR: ready")} {button("not-ready", "Lose the connection")}</p>
<h2>/send answers</h2>
<form method="post" action="{CONTROL_PATH}/send-mode">
<label>Mode <select name="mode">{options}</select></label> <button type="submit">Set</button>
</form>
<h2>A customer writes</h2>
<form method="post" action="{CONTROL_PATH}/customer-message">
<label>From <input name="sender" value="923001234567@c.us"></label>
<label>Name <input name="name" value="Customer"></label>
<label>Text <input name="body" size="40"></label>
<button type="submit">Add</button>
</form>
<h2>Last sends (newest first)</h2>
<table border="1" cellpadding="4"><tr><th>To</th><th>Message</th><th>Mode</th><th>Message id</th><th>Would be delivered</th></tr>
{sends}</table>
<h2>Customers' messages (newest first)</h2>
<table border="1" cellpadding="4"><tr><th>Id</th><th>From</th><th>Name</th><th>Text</th><th>Processed</th></tr>
{inbound}</table>
</body>
</html>
"""


def _check(mode: str, allowed: tuple[str, ...]) -> None:
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(allowed)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Stand-in for the whatsapp-web.js service: speaks its API, sends NOTHING to WhatsApp."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--prefix", default="/api/whatsapp")
    parser.add_argument(
        "--show-qr", action="store_true", help="start logged out, showing a QR (a fresh install)"
    )
    args = parser.parse_args(argv)
    standin = WwebjsStandin(
        args.host, args.port, args.prefix, announce=True, logged_in=not args.show_qr
    )
    standin.start()
    print(
        f"STAND-IN WhatsApp gateway on {standin.url} - messages are printed here, never sent "
        f"to WhatsApp.\nControl page: {standin.control_url}\nCtrl-C stops it.",
        flush=True,
    )
    try:
        standin.serve_forever()
    except KeyboardInterrupt:
        print("STAND-IN gateway stopped.", file=sys.stderr)


if __name__ == "__main__":
    main()
