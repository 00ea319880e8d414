"""Child processes that use the test database: the reliability tests kill them.

A child gets the test database through DATABASE_URL (built from the test
run's own connection) and the test settings, so the two sides see one database.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.db import connection

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def database_url() -> str:
    """The URL of the database this test runs on (the test database, not the real one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.pop("TEST_DB_SUFFIX", None)
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "manage.py"), *args]


def kill(proc: subprocess.Popen) -> int:
    """SIGKILL the process (and what it started) and reap it; its exit code."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait(timeout=30)


PROGRESS = re.compile(rb"([\d,]+) / ([\d,]+) messages")


def wait_for_progress(fd: int, proc: subprocess.Popen, fraction: float, timeout: float = 60):
    """Read an import's progress lines from `fd` until at least `fraction` of the
    messages are inserted; (done, total) of that line. Fails if it ends first."""
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the pty closes when the child ends
            break
        if not chunk:
            break
        seen += chunk
        for done, total in PROGRESS.findall(seen):
            done, total = int(done.replace(b",", b"")), int(total.replace(b",", b""))
            if fraction * total <= done < total:
                return done, total
        seen = seen[-200:]
    raise AssertionError(f"the import never reported {fraction:.0%} done: {seen!r}")
