from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from statecore import rootstate, session
from statecore.gateway import GatewayClient, GatewayError, GatewayUnreachable

LOOPBACK = {"localhost", "127.0.0.1", "::1"}
STOP_WAIT_SECONDS = 10


class Command(BaseCommand):
    help = (
        "For `make run`: the sender loop, a STAND-IN gateway when none answers at api_endpoint, "
        "and the dashboard on http://127.0.0.1:8000. Ctrl-C stops them all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="where runserver listens")

    def handle(self, *args, **options):
        self.children: list[tuple[str, subprocess.Popen]] = []
        # Explicitly: a shell starting us in the background would have SIGINT ignored.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
        try:
            self._start_gateway_if_missing(rootstate.api_endpoint())
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

    def _start_gateway_if_missing(self, url: str) -> None:
        try:
            with GatewayClient(url, status_timeout=2) as client:
                client.status()
            self.stdout.write(f"A gateway answers at {url}: using it.")
            return
        except GatewayUnreachable:
            pass
        except GatewayError as exc:
            # Something listens there but is no healthy gateway: do not take its port.
            self.stdout.write(
                self.style.WARNING(f"Something at {url} answers oddly ({exc}); using it anyway.")
            )
            return
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK or parts.scheme != "http":
            self.stdout.write(
                self.style.WARNING(
                    f"No gateway answers at {url}, and a stand-in can only replace a local one: "
                    "replies will wait until the gateway is up."
                )
            )
            return
        port = parts.port or 80
        self._start(
            "gateway",
            "-m",
            "statecore.standin_gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--prefix",
            parts.path or "/",
        )
        with GatewayClient(url, status_timeout=1) as client:
            for _ in range(50):
                try:
                    client.status()
                    break
                except GatewayError:
                    time.sleep(0.1)
            else:
                raise CommandError(f"the stand-in gateway did not come up at {url}")
        folder = session.session_dir(session.current())
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            self.stdout.write(
                f"Created the session folder {folder} so the demo session can be valid."
            )
        self.stdout.write(
            self.style.WARNING(
                f"STAND-IN gateway at {url}: nothing reaches WhatsApp; every send is printed here."
            )
        )

    def _start(self, name: str, *args: str) -> None:
        # A session of its own: Ctrl-C reaches us only, and we stop each child in
        # order (the sender finishes the send in flight before it goes).
        child = subprocess.Popen(
            [sys.executable, *args], cwd=settings.BASE_DIR, start_new_session=True
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
        # send in flight), and the gateway it may be talking to last.
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


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
