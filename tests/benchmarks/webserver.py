"""A real gunicorn on a free loopback port, and reviewers that sign in and approve.

Shared by the HTTP benchmark and the reliability test that kills gunicorn.
An approval counts as confirmed only when the server answered it as done: 200
and the `queue-changed` event the queue's counters listen for, in an htmx
trigger header (the same 200 without it is the "customer wrote again, are you
sure?" card).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CHANGED_EVENT = "queue-changed"
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, env: dict[str, str], workers: int = 2) -> subprocess.Popen:
    """gunicorn serving the project on 127.0.0.1:`port`; returns once it answers."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "statecore.wsgi:application",
            f"--workers={workers}",
            f"--bind=127.0.0.1:{port}",
            "--log-level=warning",
        ],
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,  # its own process group: the tests kill the whole server
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode} at start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_gunicorn(proc)
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop_gunicorn(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time (user + system) used so far by gunicorn and its live workers, from /proc:
    unlike wall time it does not grow when other work on the machine takes the CPU."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if proc.pid in (pid, ppid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def sign_in(base_url: str, username: str, password: str) -> httpx.Client:
    """A client signed in through the login form, as a browser would (CSRF included)."""
    client = httpx.Client(base_url=base_url, timeout=30)
    page = client.get("/accounts/login/")
    token = _CSRF_FIELD.search(page.text)
    if not token:
        raise RuntimeError("no CSRF token on the login page")
    answer = client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token.group(1)},
    )
    if answer.status_code != 302 or "sessionid" not in client.cookies:
        raise RuntimeError(f"{username} could not sign in (HTTP {answer.status_code})")
    return client


def announces_change(answer: httpx.Response) -> bool:
    """The queue's event in any of htmx's trigger headers (HX-Trigger, -After-Swap/-Settle)."""
    return any(
        name.lower().startswith("hx-trigger") and CHANGED_EVENT in value
        for name, value in answer.headers.items()
    )


@dataclass
class Approvals:
    """What one reviewer saw."""

    confirmed: list[int] = field(default_factory=list)
    # Sent, but no answer came back: it may or may not be done.
    unknown: list[int] = field(default_factory=list)
    # The connection was refused: the request never reached a server.
    refused: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def approve(client: httpx.Client, pk: int, seen: Approvals) -> None:
    """POST one approval as the queue's htmx button does, and file its outcome."""
    start = time.perf_counter()
    try:
        answer = client.post(
            f"/queue/{pk}/approve/",
            headers={"HX-Request": "true", "X-CSRFToken": client.cookies.get("csrftoken", "")},
        )
    except httpx.HTTPError as exc:
        seen.latencies.append(time.perf_counter() - start)
        seen.errors.append(type(exc).__name__)
        # A refused connection never reached the server; anything later may have.
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            seen.refused.append(pk)
        else:
            seen.unknown.append(pk)
        return
    seen.latencies.append(time.perf_counter() - start)
    if answer.status_code == 200 and announces_change(answer):
        seen.confirmed.append(pk)
        return
    seen.errors.append(f"HTTP {answer.status_code}")
    if answer.status_code >= 500:  # the server failed somewhere: before or after the commit
        seen.unknown.append(pk)
