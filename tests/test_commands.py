"""`manage.py import_state` and `manage.py export_state` (other commands are
tested beside the modules they drive)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from statecore import statefile
from statecore.models import AuditEvent, Message, Source

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, stdout: io.StringIO | None = None) -> str:
    out = stdout or io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def _child_env() -> dict[str, str]:
    """A `manage.py` child working on this test's database."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        url = f"sqlite:///{db['NAME']}"
    else:
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        url = f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url}


def manage(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        input=stdin,
        capture_output=True,
        env=_child_env(),
        cwd=REPO,
        timeout=120,
    )


# --- import_state ---------------------------------------------------------------------


def test_import_state_replaces_the_state_and_says_what_it_holds(db, tmp_path, sample_bytes):
    path = tmp_path / "whatsapp_state.json"
    path.write_bytes(sample_bytes)
    out = run("import_state", str(path), "--actor", "migration")
    assert out == (
        f"Imported {path}: incoming 40, pending_approval 8, approved 0, rejected 8, "
        "sent 16, failed 8, message_log 2.\n"
    )
    assert statefile.export_bytes() == sample_bytes
    event = AuditEvent.objects.get(action="import")
    assert (event.actor, event.source) == ("migration", Source.COMMAND)


def test_import_state_shows_progress_only_on_a_terminal(db, tmp_path):
    items = [{"id": f"m{i}"} for i in range(4500)]
    path = tmp_path / "big.json"
    path.write_bytes(json.dumps({"messages": {"incoming": items}}).encode())
    plain = run("import_state", str(path))
    assert "\r" not in plain and " / " not in plain
    terminal = run("import_state", str(path), stdout=Terminal())
    assert terminal.startswith(
        "\r  2,000 / 4,500 messages\r  4,000 / 4,500 messages\r  4,500 / 4,500 messages\n"
    )
    assert Message.objects.count() == 4500


def test_import_state_of_a_missing_file_fails_cleanly(db, tmp_path):
    with pytest.raises(CommandError, match=r"cannot read .*nope\.json: No such file or directory"):
        run("import_state", str(tmp_path / "nope.json"))


@pytest.mark.django_db(transaction=True)
def test_import_state_reads_standard_input(sample_bytes):
    done = manage("import_state", "-", stdin=sample_bytes)
    assert done.returncode == 0, done.stderr
    assert statefile.export_bytes() == sample_bytes


@pytest.mark.django_db(transaction=True)
def test_a_refused_file_exits_non_zero_naming_the_place_and_changes_nothing(tmp_path, sample_bytes):
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    before, events = statefile.export_bytes(), AuditEvent.objects.count()
    bad = json.loads(sample_bytes)
    bad["messages"]["sent"][3]["id"] = 3
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad, indent=2))
    done = manage("import_state", str(path))
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        f"CommandError: {path} refused, nothing changed:\nmessages.sent[3].id: expected a string"
    )
    assert done.stdout == b""
    assert statefile.export_bytes() == before
    assert AuditEvent.objects.count() == events


@pytest.mark.django_db(transaction=True)
def test_a_file_with_a_syntax_error_is_refused_with_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "session": {\n    "authenticated": tru\n  }\n}')
    done = manage("import_state", str(path))
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == "line 3, column 22: Expecting value"


# --- export_state ---------------------------------------------------------------------


def test_export_state_dash_writes_exactly_the_bytes(db, sample_bytes, capsysbinary):
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    call_command("export_state", "-")
    out = capsysbinary.readouterr().out
    assert out == sample_bytes and not out.endswith(b"\n")


@pytest.mark.django_db(transaction=True)
def test_export_state_dash_from_the_shell_writes_nothing_else(sample_bytes):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="setup", source="command")
    done = manage("export_state", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DATA / "quirks.json").read_bytes()
    assert done.stderr == b""


def test_export_state_to_a_file_replaces_it_atomically(db, sample_bytes, tmp_path):
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"old")
    err = io.StringIO()
    call_command("export_state", str(target), stderr=err)
    assert target.read_bytes() == sample_bytes
    assert err.getvalue() == f"Exported to {target}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whatsapp_state.json"]


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_an_interrupted_export_leaves_the_old_file_and_no_temporary_file(
    db, sample_bytes, tmp_path, monkeypatch, failing
):
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"the old state")

    def crash(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(failing, crash)
    with pytest.raises(CommandError, match="export failed, the old file is left as it was"):
        run("export_state", str(target))
    assert target.read_bytes() == b"the old state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whatsapp_state.json"]


def test_an_export_interrupted_while_writing_leaves_the_old_file(
    db, sample_bytes, tmp_path, monkeypatch
):
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"the old state")
    real_fdopen = os.fdopen

    class HalfWritten(io.FileIO):
        def write(self, data):
            super().write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    def fdopen(fd, mode="r", *args, **kwargs):
        return HalfWritten(fd, "wb") if "w" in mode else real_fdopen(fd, mode, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(CommandError, match="No space left on device"):
        run("export_state", str(target))
    assert target.read_bytes() == b"the old state"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whatsapp_state.json"]


def test_export_state_into_a_missing_folder_fails_cleanly(db, tmp_path):
    with pytest.raises(CommandError, match="export failed"):
        run("export_state", str(tmp_path / "no" / "such" / "state.json"))


def test_export_state_backup_writes_a_timestamped_copy(db, sample_bytes, tmp_path, settings):
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    err = io.StringIO()
    call_command("export_state", "--backup", stderr=err)
    (backup,) = (tmp_path / "backups").iterdir()
    assert backup.name.startswith("whatsapp_state_backup_")
    assert len(backup.name) == len("whatsapp_state_backup_20261124_091203.json")
    assert backup.read_bytes() == sample_bytes
    assert err.getvalue() == f"Backup written to {backup}\n"


def test_export_state_needs_a_target(db):
    with pytest.raises(CommandError, match="name a file"):
        run("export_state")
