"""An import killed half way (SIGKILL while it inserts) leaves the state as it was."""

from __future__ import annotations

import os
import pty
import signal
import subprocess

import pytest

from statecore import lifecycle, statefile
from statecore.models import AuditEvent, Message, Source, Status
from tests.benchmarks.generate import write_state_file
from tests.reliability.processes import child_env, kill, manage, wait_for_progress

BIG = 30_000  # 15 batches of inserts: time enough to be killed between two


@pytest.mark.django_db(transaction=True)
def test_an_import_killed_while_inserting_changes_nothing(tmp_path, sample_bytes):
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    pending = Message.objects.pending().values_list("message_id", flat=True).first()
    lifecycle.approve(pending, actor="reviewer", source=Source.WEB)  # a state no file holds
    before = statefile.export_bytes()
    events_before = AuditEvent.objects.count()
    big = write_state_file(tmp_path / "big.json", BIG, seed=11)

    # On a terminal the command reports each inserted batch: the moment to kill it.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        manage("import_state", str(big)),
        env=child_env(),
        stdout=follower,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(follower)
    try:
        done, total = wait_for_progress(leader, proc, fraction=0.4)
        code = kill(proc)
    finally:
        os.close(leader)
        if proc.poll() is None:
            kill(proc)

    assert code == -signal.SIGKILL, proc.stderr.read().decode()
    assert 0 < done < total == BIG
    assert statefile.export_bytes() == before
    assert AuditEvent.objects.count() == events_before
    assert Message.objects.get(message_id=pending).status == Status.APPROVED


@pytest.mark.django_db(transaction=True)
def test_the_same_import_left_to_finish_replaces_the_state(tmp_path, sample_bytes):
    """The counterpart: the file the test above kills is a good file that imports."""
    statefile.import_bytes(sample_bytes, actor="test", source=Source.COMMAND)
    big = write_state_file(tmp_path / "big.json", BIG, seed=11)
    result = subprocess.run(
        manage("import_state", str(big)), env=child_env(), capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    assert statefile.export_bytes() == big.read_bytes()
