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
tests cannot drift apart. The server itself (its life, send modes, records,
control page plumbing) is ``standin_server``'s, shared by every stand-in.

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

import html
import json
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .standin_server import (
    Standin,
    StandinHandler,
    add_show_qr,
    bullets,
    button,
    command_line,
    counted,
    iso_z,
    knob,
    new_inbound_id,
    new_qr_string,
    new_sent_id,
    page,
    send_mode_form,
    serve,
    table,
    text_field,
    yes_no,
)

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


class WwebjsStandin(Standin):
    """An HTTP server on ``host:port`` answering like the scripts' service under ``prefix``.

    ``port=0`` picks a free port; ``url`` is the ``api_endpoint`` to use.
    ``logged_in=False`` starts logged out, showing a QR, as a fresh install does.
    Thread-safe: knobs can be turned and records read while requests run.
    """

    kind = "wwebjs"
    label = "STAND-IN gateway"
    send_modes = SEND_MODES
    send_words = ("/send mode", "/send calls")
    failure_modes = FAILURE_MODES
    # One knob for the three /messages routes (list, mark processed, clear).
    failure_groups = {"processed": "messages", "clear": "messages"}

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
        super().__init__(host, port, handler=_Handler, announce=announce, hang_seconds=hang_seconds)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        # Read by the handler at each "send_failed"; a str assignment is atomic.
        self.send_failure_reason = DEFAULT_SEND_FAILURE
        self._ready = logged_in
        self._qr: str | None = None if logged_in else new_qr_string()
        self._account = dict(DEFAULT_ACCOUNT)
        # The real buffer is an array trimmed to the last 100 on each push.
        self._buffer: deque[dict[str, Any]] = deque(maxlen=BUFFER_SIZE)

    @property
    def url(self) -> str:
        """The base URL to use as ``api_endpoint``."""
        return f"{self.origin}{self.prefix}"

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
        self._set_failure("status", mode, shown="/status")

    def set_info_failure(self, mode: str | None) -> None:
        """/info fails as ``mode`` (in ``FAILURE_MODES``), or answers again with None."""
        self._set_failure("info", mode, shown="/info")

    def set_messages_failure(self, mode: str | None) -> None:
        """All three /messages routes (list, mark processed, clear) fail as ``mode``, or None."""
        self._set_failure("messages", mode, shown="/messages")

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
            "receivedAt": iso_z(now),
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
            mode = self._next_send_mode()
            delivered = (mode == "ok" and self._ready) or mode in DELIVERING_FAILURES
            call = SendCall(
                number, message, chat_id, mode, new_sent_id() if delivered else None, delivered
            )
            self._sends.append(call)
        if delivered:
            self._announce_send(chat_id, call.message_id, mode, message)
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
                **self._shared_page_state(),
                "ready": self._ready,
                "qr": self._qr,
                "account": dict(self._account),
                "messages": [dict(m) for m in list(self._buffer)[-20:]],
            }


# -- what the service does with what it is given -----------------------------------------


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


# -- the control page -----------------------------------------------------------------------


def _act_customer_message(standin: WwebjsStandin, form: dict[str, str]) -> None:
    standin.add_customer_message(
        form.get("body", ""),
        sender=form.get("sender") or "923001234567@c.us",
        name=form.get("name") or "Customer",
    )


_ACTIONS = {
    "show-qr": lambda standin, form: standin.show_qr(),
    "renew-qr": lambda standin, form: standin.renew_qr(),
    "scan": lambda standin, form: standin.scan(),
    "not-ready": lambda standin, form: standin.go_not_ready(),
    "customer-message": _act_customer_message,
    "send-mode": lambda standin, form: standin.set_send_mode_from_page(form.get("mode", "")),
}


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
    account = state["account"]
    failures = ", ".join(f"/{k}: {v}" for k, v in state["failures"].items()) or "none"
    sends = [
        (c.chat_id, c.message, c.mode, c.message_id or "", yes_no(c.delivered))
        for c in reversed(state["sends"])
    ]
    inbound = [
        (m["id"], m["from"], m["fromName"], m["body"], yes_no(m["processed"]))
        for m in reversed(state["messages"])
    ]
    shown = bullets(
        f"Session: <strong>{e(session)}</strong>",
        f"QR: <code>{e(state['qr'] or 'none')}</code>",
        f"Account: {e(account['number'])} ({e(account['name'])}, {e(account['platform'])})",
        f"/send mode: <strong>{e(state['send_mode'])}</strong>; "
        f"queued: {e(', '.join(state['queued']) or 'none')}",
        f"Failing routes: {e(failures)}",
        f"Calls: {e(counted(state['calls']))}",
    )
    customer = knob(
        "customer-message",
        "Add",
        text_field("sender", "923001234567@c.us", label="From"),
        text_field("name", "Customer", label="Name"),
        text_field("body", label="Text", size=40),
    )
    sent = table(("To", "Message", "Mode", "Message id", "Would be delivered"), sends)
    received = table(("Id", "From", "Name", "Text", "Processed"), inbound)
    body = f"""<p>API: <code>{e(standin.url)}</code></p>
<h2>State</h2>
{shown}
<h2>Session</h2>
<p>{button("show-qr", "Log out: show a QR")} {button("renew-qr", "Renew the QR")}
{button("scan", "Scan the QR: ready")} {button("not-ready", "Lose the connection")}</p>
<h2>/send answers</h2>
{send_mode_form(SEND_MODES, state["send_mode"])}
<h2>A customer writes</h2>
{customer}
<h2>Last sends (newest first)</h2>
{sent}
<h2>Customers' messages (newest first)</h2>
{received}
"""
    return page("STAND-IN WhatsApp gateway", "STAND-IN gateway: nothing is sent to WhatsApp", body)


# -- the HTTP side ---------------------------------------------------------------


class _Handler(StandinHandler):
    # Express sends no Server header; ours says plainly what answered.
    server_version = "StandinWwebjs/1"
    render = _render_page
    actions = _ACTIONS

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

    # -- the service's routes ------------------------------------------------

    def _info(self) -> None:
        account = self.standin._info_body()
        if account is None:
            self._json(400, {"error": NOT_READY_ERROR})
        else:
            self._json(200, account)

    def _send(self) -> None:
        body = self._parse_json_body(self._read_body())
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

    def _error500(self) -> None:
        # Express's error handler in the service.
        self._json(500, {"error": "Internal server error", "message": "stand-in error"})

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

    def _no_such_control(self) -> None:
        self._not_found()

    def _dump(self, data: object) -> bytes:
        return json.dumps(data).encode()


def main(argv: list[str] | None = None) -> None:
    parser = command_line(
        "Stand-in for the whatsapp-web.js service: speaks its API, sends NOTHING to WhatsApp.",
        port=3000,
    )
    parser.add_argument("--prefix", default="/api/whatsapp")
    add_show_qr(parser, "start logged out, showing a QR (a fresh install)")
    args = parser.parse_args(argv)
    standin = WwebjsStandin(
        args.host, args.port, args.prefix, announce=True, logged_in=not args.show_qr
    )
    serve(standin, "STAND-IN WhatsApp gateway", stopped="STAND-IN gateway")


if __name__ == "__main__":
    main()
