"""Helpers for the session, sender and gateway-event tests (plain functions, not fixtures)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from statecore import clock, rootstate
from statecore.models import Source

REPO = Path(__file__).resolve().parent.parent


def use_gateway(url: str) -> None:
    """Point the state's api_endpoint at a (fake) gateway."""
    rootstate.update_part(
        "api_endpoint", lambda _old: url, actor="test", source=Source.API, action="set"
    )


def set_session(**changes: object) -> dict:
    """Change keys of the stored session (None removes a key)."""

    def change(old):
        data = dict(old or {})
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return data

    return rootstate.update_part("session", change, actor="test", source=Source.API, action="set")


def valid_session(settings, tmp_path: Path) -> dict:
    """A session that passes all four rules: flags true, validated now, folder present."""
    settings.WHATSAPP_SESSION_BASE = tmp_path
    (tmp_path / ".wwebjs_auth").mkdir(exist_ok=True)
    return set_session(
        authenticated=True,
        session_valid=True,
        requires_qr=False,
        session_path=".wwebjs_auth",
        last_validation=clock.local_iso(),
        validation_interval_minutes=30,
    )


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a `manage.py` child process working on this test's database."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        url = f"sqlite:///{db['NAME']}"
    else:
        url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "statecore.settings",
        "DATABASE_URL": url,
        "WHATSAPP_SESSION_BASE": str(tmp_path),
        "TIME_ZONE": settings.TIME_ZONE,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "manage.py"), *args]
