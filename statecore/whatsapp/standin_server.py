"""What the four gateway stand-ins share: a real HTTP server on loopback, steered by a person or a test.

Each stand-in (``standin_wwebjs``, ``standin_waha``, ``standin_evolution``,
``standin_cloud``) keeps its gateway's routes, bodies, knobs and wording in its
own module. What they do alike is written once here:

- ``Standin``: the server's life (``start``, ``stop``, ``serve_forever``; the
  ``"down"`` send mode closes the port and any other mode reopens it on the
  same port; ``stop`` and ``"down"`` release hanging requests at once), the send
  modes (set, or queued one per call), the records (``sends``, ``delivered()``,
  ``calls()``), failure knobs per route, and the ``STAND-IN`` lines it prints
  when ``announce`` is on. ``WebhookStandin`` adds what the three gateways that
  push have: a ``Poster``, ``echo_mode`` and ``lose_webhooks``.
- ``StandinHandler``: the reply helpers (bytes, JSON), the failure answers
  (``garbage``, ``drop``, ``hang``) and the control page's plumbing (its path,
  a form posted to a knob, the 303 back, a refused knob answered as escaped text).
- ``Poster``: webhooks posted with httpx from a thread of the stand-in, one at a
  time and in order, as a gateway posts them from its own process.
- the control page's HTML (``page``, ``knob``, ``select``, ``text_field``, ``table``...):
  every value escaped, every control a plain form, no JavaScript.
- the command line (``command_line``, ``add_secret``, ``serve``): the common
  options, secrets that may come from the environment instead of a command line
  (visible in ``ps``), and the announcement a person sees.
- what WhatsApp and JavaScript make, shaped alike everywhere (``new_qr_string``,
  ``new_sent_id``, ``new_inbound_id``, ``iso_z``, ``js_json``).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import secrets
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

CONTROL_PATH = "/_standin"
# What a gateway that pushes can be told about the echo of our own send.
ECHO_MODES = ("before_answer", "after_answer", "never")
# How long a receiver may take to answer one webhook before the post counts as failed.
RECEIVER_TIMEOUT = 10.0

T = TypeVar("T")


def check(value: str, allowed: tuple[str, ...], what: str = "mode") -> None:
    """ValueError unless ``value`` is one of ``allowed``; ``what`` names it in the message."""
    if value not in allowed:
        named = " ".join(part for part in ("unknown", what, repr(value)) if part)
        raise ValueError(f"{named}; expected one of {', '.join(allowed)}")


# -- the stand-in ----------------------------------------------------------------------------


class Standin:
    """An HTTP server on ``host:port`` answering like one gateway (the subclass says which).

    ``port=0`` picks a free port, kept from then on: "down" and back come up on it again.
    Thread-safe: knobs can be turned and records read while requests run. A subclass sets
    the class attributes below and passes its request handler to ``__init__``.
    """

    kind: ClassVar[str] = "gateway"  # in thread names
    label: ClassVar[str] = "STAND-IN gateway"  # the start of every line it prints
    send_modes: ClassVar[tuple[str, ...]] = ("ok", "down")
    # How the send-mode lines name the send route: "<0> is now <mode>", "next <1>: ...".
    send_words: ClassVar[tuple[str, str]] = ("send mode", "sends")
    failing_routes: ClassVar[tuple[str, ...]] = ()
    failure_modes: ClassVar[tuple[str, ...]] = ("error500", "hang", "garbage", "drop")
    # Routes that share one failure knob: route -> the knob's name.
    failure_groups: ClassVar[Mapping[str, str]] = {}
    # How a refused knob value is named in its ValueError ("unknown mode 'x'; ...").
    check_word: ClassVar[str] = "mode"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        handler: type[StandinHandler],
        announce: bool = False,
        hang_seconds: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.announce = announce
        self.hang_seconds = hang_seconds
        self._handler = handler
        self._lock = threading.RLock()
        self._server: StandinHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._down = False
        # Set when the server goes down or stops, so hanging handlers return at once.
        self._release = threading.Event()
        # Set by stop(), so serve_forever() returns.
        self._stopped = threading.Event()
        self._send_mode = "ok"
        self._queued: deque[str] = deque()
        self._sends: list[Any] = []
        self._calls: Counter[str] = Counter()
        self._failures: dict[str, str] = {}

    # -- life -------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``http://host:port``, where the gateway's own paths start."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL the dashboard is given (a subclass adds the gateway's prefix)."""
        return self.origin

    @property
    def control_url(self) -> str:
        """The control page for a person."""
        return f"{self.origin}{CONTROL_PATH}/"

    def start(self) -> Self:
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
        self._server = StandinHTTPServer(self, self._handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits up to one poll interval; tests stop servers often.
            kwargs={"poll_interval": 0.05},
            name=f"standin-{self.kind}-{self.port}",
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

    # -- sends ------------------------------------------------------------------------------

    def set_send_mode(self, mode: str) -> None:
        """Make every later send behave as ``mode`` (one of the stand-in's ``SEND_MODES``).

        ``"down"`` closes the listening socket, so every call (not only sends) meets
        "connection refused"; any other mode brings it back on the same port.
        """
        self._check(mode, self.send_modes)
        with self._lock:
            self._send_mode = mode
            if mode == "down" and not self._down:
                self._close()
                self._down = True
            elif mode != "down" and self._down:
                self._down = False
                self._listen()
        self._say(f"{self.send_words[0]} is now {mode}")

    def queue_send_modes(self, *modes: str) -> None:
        """Answer the next sends with these modes, one per call, then the set mode."""
        for mode in modes:
            # "down" cannot be one call's answer: a refused connection never reaches a handler.
            self._check(mode, tuple(m for m in self.send_modes if m != "down"))
        with self._lock:
            self._queued.extend(modes)
        self._say(f"next {self.send_words[1]}: {', '.join(modes)}")

    def set_send_mode_from_page(self, mode: str) -> None:
        """set_send_mode for the control page, which "down" would take down with it."""
        if mode == "down":
            raise ValueError("'down' is not offered here: this page would go down too")
        self.set_send_mode(mode)

    @property
    def sends(self) -> list[Any]:
        """Every send that got past the request's checks, oldest first (a copy)."""
        with self._lock:
            return list(self._sends)

    def delivered(self) -> list[Any]:
        """Only the sends a customer would have received, oldest first."""
        with self._lock:
            return [call for call in self._sends if call.delivered]

    def calls(self) -> Counter[str]:
        """Requests per route (the stand-in's names for them), whatever they answered."""
        with self._lock:
            return Counter(self._calls)

    def _next_send_mode(self) -> str:
        """The mode this send answers with; call it holding the lock."""
        return self._queued.popleft() if self._queued else self._send_mode

    def _announce_send(self, chat: str, gateway_id: str | None, mode: str, text: str) -> None:
        if self.announce:
            print(
                f"{self.label}, nothing sent to WhatsApp: to {chat} -> {gateway_id}"
                f" (answered as {mode})\n    {text!r}",
                flush=True,
            )

    # -- failures of the other routes ---------------------------------------------------------

    def _set_failure(self, route: str, mode: str | None, *, shown: str | None = None) -> None:
        """``route`` fails as ``mode`` (in ``failure_modes``), or answers again with None."""
        if self.failing_routes:
            self._check(route, self.failing_routes)
        if mode is not None:
            self._check(mode, self.failure_modes)
        with self._lock:
            if mode is None:
                self._failures.pop(route, None)
            else:
                self._failures[route] = mode
        self._say(f"{shown or route} {'fails: ' + mode if mode else 'answers normally'}")

    def _count(self, route: str) -> str | None:
        """Count a call; return the failure it must meet, if any."""
        with self._lock:
            self._calls[route] += 1
            return self._failures.get(self.failure_groups.get(route, route))

    # -- the control page and the announcements -----------------------------------------------

    def _shared_page_state(self) -> dict[str, Any]:
        """What every control page shows of the sends and calls."""
        with self._lock:
            return {
                "send_mode": self._send_mode,
                "queued": list(self._queued),
                "failures": dict(self._failures),
                "sends": list(self._sends[-20:]),
                "calls": Counter(self._calls),
            }

    def _check(self, value: str, allowed: tuple[str, ...]) -> None:
        check(value, allowed, self.check_word)

    def _say(self, text: str) -> None:
        if self.announce:
            print(f"{self.label}: {text}", flush=True)


class WebhookStandin(Standin):
    """A stand-in for a gateway that pushes: it posts webhooks (``_poster``), echoes our
    own sends as ``echo_mode`` says, and can lose webhooks on purpose (``lose_webhooks``)."""

    # The line announce prints when echo_mode is turned ("{}": the mode), or None.
    echo_said: ClassVar[str | None] = "echo mode is now {}"
    # Whether stop() waits for webhooks not yet posted, or drops them.
    finish_posts_on_stop: ClassVar[bool] = True

    def __init__(self, host: str, port: int, **options: Any) -> None:
        super().__init__(host, port, **options)
        self._poster = Poster(f"standin-{self.kind}-webhook")
        self._echo_mode = "before_answer"
        # A webhook that never came: what happened is kept, the webhook is not posted.
        self.lose_webhooks = False

    def stop(self) -> None:
        """Stop listening, release any hanging request, and finish (or drop) the webhooks
        still to be posted."""
        super().stop()
        self._poster.close(finish=self.finish_posts_on_stop)

    @property
    def echo_mode(self) -> str:
        """When the echo of our own send is posted: "before_answer" (inside the send,
        before its HTTP answer, as the gateways do), "after_answer", or "never"."""
        with self._lock:
            return self._echo_mode

    @echo_mode.setter
    def echo_mode(self, mode: str) -> None:
        self._check(mode, ECHO_MODES)
        with self._lock:
            self._echo_mode = mode
        if self.echo_said:
            self._say(self.echo_said.format(mode))

    def _shared_page_state(self) -> dict[str, Any]:
        with self._lock:
            state = super()._shared_page_state()
            state.update(echo_mode=self._echo_mode, lose_webhooks=self.lose_webhooks)
            return state


# -- posting webhooks ----------------------------------------------------------------------


class Poster:
    """Posts a gateway's webhooks from a thread of the stand-in (never the caller's, as the
    gateway posts them from its own process), one at a time, in the order they were given.

    ``wait`` posts and returns once the receiver answered; ``submit`` returns at once.
    A stopped stand-in's knobs still work: the thread is started again when needed.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix=self._name)
            return self._pool.submit(job, *args)

    def wait(self, job: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``job`` on the posting thread and return what it returned (or raise what it
        raised); after what was submitted before it."""
        return self.submit(job, *args).result(timeout)

    def drain(self, timeout: float) -> None:
        """Wait, up to ``timeout``, until everything submitted so far has been posted."""
        try:
            self.wait(_nothing, timeout=timeout)
        except FutureTimeout:
            pass

    def close(self, *, finish: bool) -> None:
        """Stop the posting thread once the post under way is done; ``finish`` posts the
        rest first, otherwise they are dropped."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=not finish)


def _nothing() -> None:
    pass


def post(url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
    """POST one webhook body as it is; httpx.HTTPError when nothing answered."""
    # No proxy from the environment between the stand-in and the receiver (loopback).
    with httpx.Client(trust_env=False, timeout=RECEIVER_TIMEOUT) as client:
        return client.post(url, content=body, headers=dict(headers))


def describe_error(exc: BaseException) -> str:
    """How a failed post is recorded and shown: the exception's type and words."""
    return f"{type(exc).__name__}: {exc}"


# -- the HTTP side ---------------------------------------------------------------------------


class StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops bursts of connections (a 1 s SYN
    # retry each); Node listens with 511.
    request_queue_size = 511

    def __init__(self, standin: Standin, handler: type[StandinHandler]) -> None:
        self.standin = standin
        self.release = standin._release
        super().__init__((standin.host, standin.port), handler)


class StandinHandler(BaseHTTPRequestHandler):
    """A request to a stand-in. A subclass routes the gateway's paths and the control page,
    sets ``render`` (the control page: function(standin) -> HTML) and ``actions`` (its
    knobs: action -> function(standin, form)), and says how the gateway answers an error500."""

    server: StandinHTTPServer
    # The Express-based gateways add this header to every answer; None adds nothing.
    powered_by: ClassVar[str | None] = "Express"
    # What "garbage" answers: a page where JSON was expected.
    garbage: ClassVar[bytes] = b"<html><body>Gateway says hi</body></html>"
    render: ClassVar[Callable[[Any], str]]
    actions: ClassVar[Mapping[str, Callable[[Any, dict[str, str]], object]]] = {}
    # What a knob may raise to be answered 400 with its words.
    control_errors: ClassVar[tuple[type[BaseException], ...]] = (ValueError,)

    @property
    def standin(self) -> Any:
        return self.server.standin

    # -- reading ----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_form(self) -> dict[str, str]:
        """The body as an HTML form posts it (the first value of each field)."""
        raw = self._read_body().decode("utf-8", errors="replace")
        return {k: v[0] for k, v in parse_qs(raw).items()}

    # -- writing ----------------------------------------------------------------------------

    def _reply(
        self, code: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(code)
        if self.powered_by:
            self.send_header("X-Powered-By", self.powered_by)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, code: int, data: object) -> None:
        self._reply(code, self._dump(data), "application/json; charset=utf-8")

    def _dump(self, data: object) -> bytes:
        """The gateway's JSON (JSON.stringify unless a subclass says otherwise)."""
        return js_json(data)

    # -- failures -----------------------------------------------------------------------------

    def _answer(self, route: str, normal: Callable[[], None]) -> None:
        """Count a call to ``route`` and answer it normally, or as its failure knob says."""
        failure = self.standin._count(route)
        if failure is None:
            normal()
        else:
            self._fail(failure)

    def _fail(self, mode: str) -> None:
        """Answer as a failure mode says instead of normally."""
        if mode == "error500":
            self._error500()
        elif mode == "garbage":
            self._reply(200, self.garbage, "text/html")
        elif mode == "drop":
            self._drop()
        elif mode == "hang":
            self._hang()

    def _error500(self) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        self.close_connection = True  # hang up without a word

    def _hang(self) -> None:
        # Wait past any client timeout, but stop at once on shutdown or "down".
        self.server.release.wait(self.standin.hang_seconds)
        self.close_connection = True

    # -- the control page ------------------------------------------------------------------------

    def _control_path(self) -> str | None:
        """The path under the control page (``""`` for the page itself), or None outside it."""
        path = urlsplit(self.path).path
        if path == CONTROL_PATH or path.startswith(CONTROL_PATH + "/"):
            return path[len(CONTROL_PATH) :]
        return None

    def _control_page(self) -> None:
        html_page = type(self).render(self.standin)
        self._reply(200, html_page.encode(), "text/html; charset=utf-8")

    def _control_post(self, action: str) -> None:
        """Turn the knob ``action`` with the posted form, and go back to the page."""
        form = self._read_form()
        act = self.actions.get(action)
        if act is None:
            self._no_such_control()
            return
        try:
            act(self.standin, form)
        except self.control_errors as exc:
            self._reply(400, html.escape(str(exc)).encode(), "text/plain; charset=utf-8")
            return
        self._reply(303, b"", "text/plain", {"Location": CONTROL_PATH + "/"})

    def _no_such_control(self) -> None:
        self._reply(404, b"no such control", "text/plain; charset=utf-8")

    def log_message(self, format: str, *args: Any) -> None:
        # The dashboard polls a gateway every few seconds: logging each request would
        # bury the STAND-IN lines a person is looking for.
        pass


# -- the control page's HTML -----------------------------------------------------------------

_e = html.escape


def page(title: str, heading: str, body: str, *, width: str = "60em") -> str:
    """A whole control page: a red banner saying it is a stand-in, then ``body`` (HTML)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{_e(title)}</title></head>
<body style="font-family:sans-serif;max-width:{width};margin:1em auto">
<h1 style="background:#b00;color:#fff;padding:.5em">{_e(heading)}</h1>
{body}</body>
</html>
"""


def knob(action: str, label: str, *fields: str, inline: bool = False) -> str:
    """One knob: a plain POST to the control page's ``action`` with ``fields`` (HTML) and a
    submit button saying ``label``."""
    style = ' style="display:inline"' if inline else ""
    inner = "".join(f"{field} " for field in fields)
    return (
        f'<form method="post" action="{CONTROL_PATH}/{action}"{style}>'
        f'{inner}<button type="submit">{_e(label)}</button></form>'
    )


def button(action: str, label: str, **hidden: str) -> str:
    """A knob that is only a button (with ``hidden`` fields), shown inline."""
    fields = [f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in hidden.items()]
    return knob(action, label, *fields, inline=True)


def labelled(label: str, control: str) -> str:
    return f"<label>{_e(label)} {control}</label>"


def text_field(
    name: str,
    value: str = "",
    *,
    label: str | None = None,
    size: int | None = None,
    placeholder: str | None = None,
) -> str:
    """A text input (escaped value), inside a label when there is one."""
    attributes = f' name="{_e(name)}"'
    if size is not None:
        attributes += f' size="{size}"'
    if placeholder is not None:
        attributes += f' placeholder="{_e(placeholder)}"'
    if value:
        attributes += f' value="{_e(value)}"'
    control = f"<input{attributes}>"
    return labelled(label, control) if label is not None else control


def options(values: Iterable[str], selected: str) -> str:
    return "".join(
        f'<option value="{_e(v)}"{" selected" if v == selected else ""}>{_e(v)}</option>'
        for v in values
    )


def select(
    name: str,
    values: Iterable[str],
    selected: str = "",
    *,
    label: str | None = None,
    blank: str | None = None,
) -> str:
    """A choice among ``values``; ``blank`` adds a first, empty choice saying that."""
    first = f'<option value="">{_e(blank)}</option>' if blank is not None else ""
    control = f'<select name="{_e(name)}">{first}{options(values, selected)}</select>'
    return labelled(label, control) if label is not None else control


def checkbox(name: str, checked: bool, label: str) -> str:
    return f'<label><input type="checkbox" name="{_e(name)}"{" checked" if checked else ""}> {_e(label)}</label>'


def send_mode_form(
    modes: Sequence[str],
    selected: str,
    *,
    submit: str = "Set",
    label: str | None = "Mode",
    inline: bool = False,
) -> str:
    """The send-mode knob; "down" is left out (this page would go down with it)."""
    choices = select("mode", [m for m in modes if m != "down"], selected, label=label)
    return knob("send-mode", submit, choices, inline=inline)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table of records, newest first as given; every cell escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table border="1" cellpadding="4"><tr>{head}</tr>\n{body}</table>'


def bullets(*items: str) -> str:
    """A list of already escaped HTML items."""
    return "<ul>\n" + "".join(f"<li>{item}</li>\n" for item in items) + "</ul>"


def counted(calls: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(calls.items())) or "none yet"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


# -- the command line ------------------------------------------------------------------------


class _CommandLine(argparse.ArgumentParser):
    """An ArgumentParser that also wants each required secret, from its option or from
    its environment variable."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.secrets: list[tuple[str, str, str]] = []

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        for dest, flag, variable in self.secrets:
            if getattr(parsed, dest) is None:
                self.error(f"{flag} is required (or {variable} in the environment)")
        return parsed


def command_line(description: str, *, port: int) -> argparse.ArgumentParser:
    """A stand-in's command line: what it is, and where it listens."""
    parser = _CommandLine(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    return parser


def add_secret(
    parser: argparse.ArgumentParser, flag: str, variable: str, help: str, *, required: bool = False
) -> None:
    """An option for a secret that may come from the environment variable ``variable``
    instead, so that it need not be on a command line (which ``ps`` shows to anyone).
    Read as the dashboard's settings read it (stripped); the option wins when given.
    A required one missing from both stops the command line (``parser`` from command_line)."""
    found = (os.environ.get(variable) or "").strip()
    action = parser.add_argument(
        flag, default=found or (None if required else ""), help=f"{help}; without it, ${variable}"
    )
    if required:
        if not isinstance(parser, _CommandLine):
            raise TypeError("a required secret needs the parser command_line() makes")
        parser.secrets.append((action.dest, flag, variable))


def add_webhook_options(
    parser: argparse.ArgumentParser, *, api_key: str, webhook_url: str, webhook_secret: str
) -> None:
    """The options of a gateway that pushes: the key it takes, where it posts, how it signs."""
    add_secret(parser, "--api-key", "GATEWAY_API_KEY", api_key, required=True)
    parser.add_argument("--webhook-url", default=None, help=webhook_url)
    add_secret(parser, "--webhook-secret", "GATEWAY_WEBHOOK_SECRET", webhook_secret)


def add_show_qr(parser: argparse.ArgumentParser, help: str) -> None:
    """``--show-qr``: start as a fresh install does, where a person must act first."""
    parser.add_argument("--show-qr", action="store_true", help=help)


def webhook_standin_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a stand-in that pushes is built with from add_webhook_options' command line."""
    return {
        "host": args.host,
        "api_key": args.api_key,
        "webhook_url": args.webhook_url,
        "webhook_secret": args.webhook_secret,
        "announce": True,
    }


def serve(standin: Standin, name: str, detail: str = "", *, stopped: str | None = None) -> None:
    """Run ``standin`` from the command line: say where it is, serve until Ctrl-C."""
    standin.start()
    print(
        f"{name} on {standin.url}{detail} - messages are printed here, never sent to "
        f"WhatsApp.\nControl page: {standin.control_url}\nCtrl-C stops it.",
        flush=True,
    )
    try:
        standin.serve_forever()
    except KeyboardInterrupt:
        print(f"{stopped or name} stopped.", file=sys.stderr)


# -- what WhatsApp and JavaScript make ---------------------------------------------------------


def new_qr_string() -> str:
    """A made-up QR payload shaped like WhatsApp Web's: ref, noise key, identity key, secret."""
    ref = base64.b64encode(os.urandom(63)).decode()
    keys = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    return "2@" + ref + "," + ",".join(keys)


def new_sent_id() -> str:
    """A sent message's short id as WhatsApp Web clients make them (3EB0 + hex)."""
    return "3EB0" + secrets.token_hex(8).upper()


def new_inbound_id() -> str:
    """A customer's message id as phones make them (an iPhone's 3A + hex)."""
    return "3A" + secrets.token_hex(9).upper()


def iso_z(at: float) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, a Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def js_json(value: object) -> bytes:
    """JSON as JavaScript's JSON.stringify writes it: compact, UTF-8, nothing escaped."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
