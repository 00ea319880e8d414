"""How the settings open a PostgreSQL connection: the planner settings the pages at a
million messages were measured with (bench-big)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _options_for(database_url: str) -> str:
    """The connection options the settings give this DATABASE_URL, read in a fresh
    process (the settings are read once, at start-up)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "statecore.settings"}
    env["DATABASE_URL"] = database_url
    code = "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_postgresql_connection_prices_a_random_read_as_on_an_ssd_and_compiles_nothing():
    # With the spinning disk's price (4), the admin's list of one status walked the
    # primary key through half a million rows of other lists (200 ms at a million).
    options = _options_for("postgres://someone@127.0.0.1:5432/shop")
    assert "-c random_page_cost=1.1" in options
    assert "-c jit=off" in options


def test_a_sqlite_database_is_given_no_postgresql_options():
    assert "random_page_cost" not in _options_for("sqlite:////tmp/shop.sqlite3")
