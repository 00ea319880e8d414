"""An export onto a full disk: the old file intact, a clear error, a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from statecore import statefile
from statecore.models import Source
from tests.reliability.processes import REPO_ROOT, child_env


def _export_on_full_disk(room: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.reliability.full_disk", str(room), "export_state", *args],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("room", [0, 4096])
def test_an_export_onto_a_full_disk_keeps_the_old_file(tmp_path, sample_bytes, room):
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    target = tmp_path / "whatsapp_state.json"
    old = b'{"an": "earlier export"}'
    target.write_bytes(old)

    result = _export_on_full_disk(room, str(target))

    assert result.returncode != 0
    assert "No space left on device" in result.stderr
    assert "the old file is left as it was" in result.stderr
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whatsapp_state.json"]  # no leftovers


@pytest.mark.django_db(transaction=True)
def test_an_export_with_room_enough_writes_the_file(tmp_path, sample_bytes):
    """The counterpart: the same run with space to spare replaces the file."""
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"{}")

    result = _export_on_full_disk(10 * len(sample_bytes), str(target))

    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == sample_bytes
