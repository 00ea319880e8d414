"""Modes of the state files written (issue 12, "File modes"): a new file is 0600
whatever the umask, a replaced file keeps its mode and group, `--mode` says
otherwise; the same for `export_state FILE`, `--backup`, the backup written before
an upload, and the Python API."""

from __future__ import annotations

import io
import os
import stat

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from approvals import statefile_views
from statecore import statefile
from statecore.models import Source
from statecore.state_manager import StateManager


@pytest.fixture(autouse=True)
def usual_umask():
    """The common 022, under which open() would give 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def backups(settings, tmp_path):
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    return tmp_path / "backups"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def export(*args: str) -> None:
    call_command("export_state", *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_export_state_creates_a_new_file_0600(db, tmp_path):
    export(str(tmp_path / "state.json"))
    assert mode(tmp_path / "state.json") == 0o600


@pytest.mark.parametrize("old_mode", [0o644, 0o640, 0o600])
def test_export_state_keeps_the_mode_of_the_file_it_replaces(db, tmp_path, old_mode):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    target.chmod(old_mode)
    export(str(target))
    assert mode(target) == old_mode and target.read_bytes() != b"old"


@pytest.mark.skipif(
    os.geteuid() != 0 and len(os.getgroups()) < 2, reason="needs a second group to give"
)
def test_a_replaced_file_keeps_its_group(db, tmp_path):
    # The README's recipe gives a group read access once; the next export must not take it back.
    other = 4242 if os.geteuid() == 0 else next(g for g in os.getgroups() if g != os.getgid())
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    os.chown(target, -1, other)
    target.chmod(0o640)
    export(str(target))
    assert (os.stat(target).st_gid, mode(target)) == (other, 0o640)


def test_export_state_backup_is_created_0600(db, backups):
    export("--backup")
    (backup,) = backups.iterdir()
    assert mode(backup) == 0o600


@pytest.mark.parametrize("given", ["640", "0640", "0o640"])
def test_export_state_mode_sets_the_mode_of_every_file_written(db, tmp_path, backups, given):
    replaced = tmp_path / "replaced.json"
    replaced.write_bytes(b"old")
    replaced.chmod(0o600)
    export(str(tmp_path / "new.json"), "--mode", given)
    export(str(replaced), "--backup", "--mode", given)
    (backup,) = backups.iterdir()
    assert [mode(p) for p in (tmp_path / "new.json", replaced, backup)] == [0o640] * 3


@pytest.mark.parametrize("given", ["999", "rw-r-----", "4755", "64", ""])
def test_export_state_refuses_a_mode_that_is_not_three_octal_digits(db, tmp_path, given):
    with pytest.raises(CommandError, match="--mode"):
        export(str(tmp_path / "state.json"), "--mode", given)
    assert not (tmp_path / "state.json").exists()


def test_export_state_mode_does_not_apply_to_standard_output(db):
    with pytest.raises(CommandError, match="--mode applies to files"):
        export("-", "--mode", "640")


def test_the_python_api_creates_its_files_0600(db, tmp_path, backups):
    manager = StateManager(actor="script")
    exported = manager.export_state(tmp_path / "state.json")
    assert [mode(exported), mode(manager.backup_state())] == [0o600, 0o600]


def test_the_backup_written_before_an_upload_is_0600(
    db, client, sample_bytes, backups, tmp_path, monkeypatch
):
    monkeypatch.setattr(statefile_views, "UPLOAD_DIR", tmp_path / "uploads")
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    keeper = User.objects.create_user("keeper", is_staff=True)
    keeper.user_permissions.add(*Permission.objects.filter(codename="import_state"))
    client.force_login(keeper)
    upload = SimpleUploadedFile("s.json", b'{"human_in_the_loop": true}')
    client.post(reverse("approvals:state-upload"), {"file": upload, "on_duplicate": "refuse"})
    page = client.get(reverse("approvals:state-upload-confirm"))
    token = page.context["confirm_form"]["token"].value()
    client.post(reverse("approvals:state-upload-confirm"), {"token": token})
    (backup,) = backups.iterdir()
    assert backup.read_bytes() == sample_bytes and mode(backup) == 0o600
