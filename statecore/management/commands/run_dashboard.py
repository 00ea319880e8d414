"""`make run`: the loops, the dashboard, and a STAND-IN gateway when none answers.

With the scripts' service (`GATEWAY_KIND` wwebjs) the stand-in takes the port of the
state's `api_endpoint`. With WAHA, Evolution or the Cloud API it takes the port of
`GATEWAY_URL`, accepts `GATEWAY_API_KEY`, and posts its webhooks, signed with
`GATEWAY_WEBHOOK_SECRET`, to this dashboard's `/gateway/webhook`; WAHA's and
Evolution's start logged out, showing a QR, as a fresh install.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from statecore import session, whatsapp

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
STOP_WAIT_SECONDS = 10
STANDIN_ASSISTANT = "statecore.standin_assistant.draft_reply"
# Each kind's stand-in module, and whether it starts showing a QR (the Cloud API has none).
STANDINS = {
    "wwebjs": ("statecore.whatsapp.standin_wwebjs", True),
    "waha": ("statecore.whatsapp.standin_waha", True),
    "evolution": ("statecore.whatsapp.standin_evolution", True),
    "cloud": ("statecore.whatsapp.standin_cloud", False),
}
WEBHOOK_PATH = "/gateway/webhook"


class Command(BaseCommand):
    help = (
        "For `make run`: the receiving and sending loops, a STAND-IN gateway (and assistant) "
        "when no gateway listens at api_endpoint (or GATEWAY_URL), and the dashboard on "
        "http://127.0.0.1:8000. Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where runserver listens")

    def handle(self, *args, **options):
        self.children: list[tuple[str, subprocess.Popen]] = []
        # Explicitly: a shell starting us in the background would have SIGINT ignored.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
        self.env = dict(os.environ)
        try:
            self._start_gateway_if_missing(options["addr"])
            self._start("receiver", "manage.py", "receive_messages", "--loop")
            self._start("sender", "manage.py", "send_approved", "--loop")
            self._start("web", "manage.py", "runserver", options["addr"])
            self.stdout.write(
                self.style.SUCCESS(
                    f"Dashboard on http://{options['addr']}/ - Ctrl-C stops everything."
                )
            )
            self._wait_until_one_ends()
        except KeyboardInterrupt:
            self.stdout.write("Stopping...")
        finally:
            self._stop_all()

    def _start_gateway_if_missing(self, addr: str) -> None:
        kind = whatsapp.kind()
        # WAHA's and Evolution's address() names the session too: only the URL is dialled.
        url = whatsapp.address() if kind == "wwebjs" else settings.GATEWAY_URL
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if _listening(parts.hostname or "", port):
            self.stdout.write(f"A gateway listens at {url}: using it.")
            return
        if parts.hostname not in LOOPBACK or parts.scheme != "http":
            self.stdout.write(
                self.style.WARNING(
                    f"No gateway answers at {url}, and a stand-in can only replace a local one: "
                    "replies will wait until the gateway is up."
                )
            )
            return
        module, shows_qr = STANDINS[kind]
        options = ["--host", "127.0.0.1", "--port", str(port)]
        env = self.env
        if kind == "wwebjs":
            options += ["--prefix", parts.path or "/"]
        else:
            options += _pushing_options(kind, addr)
            env = {**self.env, **_pushing_secrets()}
        # As a fresh install: WhatsApp not linked yet, a QR to scan.
        show_qr = ["--show-qr"] if shows_qr else []
        self._start("gateway", "-m", module, *options, *show_qr, env=env)
        for _ in range(50):
            if _listening("127.0.0.1", port):
                break
            time.sleep(0.1)
        else:
            raise CommandError(f"the stand-in gateway did not come up at {url}")
        if kind == "wwebjs":
            self._make_session_folder()
        self._use_standin_assistant()
        which = "" if kind == "wwebjs" else f" ({kind})"
        steer = "Scan its QR, write as a customer" if shows_qr else "Write as a customer"
        self.stdout.write(
            self.style.WARNING(
                f"STAND-IN gateway at {url}{which}: nothing reaches WhatsApp; every send is "
                f"printed here.\n"
                f"    {steer}, make it fail: http://127.0.0.1:{port}/_standin/"
            )
        )

    def _make_session_folder(self) -> None:
        folder = session.session_dir(session.current())
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            self.stdout.write(
                f"Created the session folder {folder} so the demo session can be valid."
            )

    def _use_standin_assistant(self) -> None:
        if not self.env.get("ASSISTANT"):
            self.env["ASSISTANT"] = STANDIN_ASSISTANT
            self.stdout.write(
                self.style.WARNING(
                    f"STAND-IN assistant ({STANDIN_ASSISTANT}) drafts a canned reply to each "
                    "customer message; set ASSISTANT to use your own."
                )
            )

    def _start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        # A session of its own: Ctrl-C reaches us only, and we stop each child in
        # order (the sender finishes the send in flight before it goes).
        child = subprocess.Popen(
            [sys.executable, *args],
            cwd=settings.BASE_DIR,
            start_new_session=True,
            env=self.env if env is None else env,
        )
        self.children.append((name, child))

    def _wait_until_one_ends(self) -> None:
        while True:
            for name, child in self.children:
                if child.poll() is not None:
                    raise CommandError(
                        f"the {name} process ended (exit {child.returncode}); stopping the rest"
                    )
            time.sleep(0.5)

    def _stop_all(self) -> None:
        # Last started, first stopped: the web, then the sender (it finishes the
        # send in flight), the receiver, and the gateway they may be talking to last.
        for name, child in reversed(self.children):
            if child.poll() is None:
                # The whole group: runserver's autoreloader serves from a child of its own.
                _signal_group(child, signal.SIGTERM)
                try:
                    child.wait(timeout=STOP_WAIT_SECONDS)
                except subprocess.TimeoutExpired:
                    self.stdout.write(f"The {name} process did not stop; killing it.")
                    _signal_group(child, signal.SIGKILL)
                    child.wait()
        self.stdout.write("All stopped.")


def _pushing_options(kind: str, addr: str) -> list[str]:
    """A pushing stand-in's options: where it posts, and names that are no secret.

    Its key, webhook secret and verify token go in its environment (_pushing_secrets),
    never on its command line, which `ps` shows to anyone on the machine."""
    options = ["--webhook-url", webhook_url(addr)]
    if kind == "cloud":
        options += ["--phone-number-id", settings.GATEWAY_PHONE_NUMBER_ID]
    else:
        name = "--instance" if kind == "evolution" else "--session"
        options += [name, settings.GATEWAY_SESSION]
    return options


def _pushing_secrets() -> dict[str, str]:
    """The secrets a pushing stand-in reads from its environment, as the settings hold them."""
    return {
        "GATEWAY_API_KEY": settings.GATEWAY_API_KEY,
        "GATEWAY_WEBHOOK_SECRET": settings.GATEWAY_WEBHOOK_SECRET,
        "GATEWAY_VERIFY_TOKEN": settings.GATEWAY_VERIFY_TOKEN,
    }


def webhook_url(addr: str) -> str:
    """Where a local stand-in reaches the dashboard that runserver serves at `addr`."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::", "0"):  # every address: loopback among them
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{WEBHOOK_PATH}"


def _listening(host: str, port: int) -> bool:
    """Whether anything accepts connections there (a gateway, or something in its way)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
