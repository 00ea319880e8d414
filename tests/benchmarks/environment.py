"""The benchmark's own database and settings, made before Django starts.

SQLite: a file in a temporary folder. PostgreSQL (`--database-url`): a fresh
database created on that server and dropped at the end, so a run never
touches the server's other databases. Every process the benchmark starts
(writers, gunicorn) inherits the same environment.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass
class BenchDatabase:
    url: str
    vendor: str  # "sqlite" or "postgresql"
    _admin_url: str = ""
    _name: str = ""

    def drop(self) -> None:
        """Drop the PostgreSQL database this run created (nothing to do for SQLite)."""
        if self.vendor != "postgresql":
            return
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


def make_database(workdir: Path, database_url: str | None) -> BenchDatabase:
    if not database_url:
        return BenchDatabase(url=f"sqlite:///{workdir / 'bench.sqlite3'}", vendor="sqlite")
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"--database-url: expected postgres://..., got {parts.scheme}://")
    import psycopg

    name = f"whatsapp_bench_{os.getpid()}"
    admin_url = urlunsplit(("postgresql", parts.netloc, parts.path or "/postgres", "", ""))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    return BenchDatabase(url=url, vendor="postgresql", _admin_url=admin_url, _name=name)


def set_environment(db: BenchDatabase, workdir: Path) -> None:
    """Production settings (DEBUG off: no query log), on plain http to loopback."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="statecore.settings",
        DATABASE_URL=db.url,
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        PLAIN_HTTP="1",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        STATIC_ROOT=str(workdir / "static"),
        STATE_BACKUP_DIR=str(workdir / "backups"),
        LOG_LEVEL="WARNING",
    )
    root = str(Path(__file__).resolve().parent.parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p
    )


def start_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def collect_static() -> None:
    """What a deployment does once: the pages need the manifest of static files."""
    from django.core.management import call_command

    call_command("collectstatic", verbosity=0, interactive=False)
