"""The seed-compatible Python API (SEED_API.md): every call with the meaning the
scripts rely on, and many processes using it at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from statecore import clock, statefile
from statecore.models import AuditEvent, Message, Source, StateRoot, Status
from statecore.state_manager import MessageStatus, StateManager

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def manager(db) -> StateManager:
    return StateManager(actor="assistant")


def test_message_status_names_the_six_lists():
    assert [s.value for s in MessageStatus] == Status.values
    assert MessageStatus.PENDING_APPROVAL.value == "pending_approval"
    assert MessageStatus["FAILED"] is MessageStatus.FAILED


def test_the_state_file_argument_is_accepted_and_ignored(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manager = StateManager("whatsapp_state.json")
    manager.add_message({"id": "a"}, MessageStatus.INCOMING)
    StateManager(state_file=str(tmp_path / "other.json")).get_messages(MessageStatus.INCOMING)
    assert list(tmp_path.iterdir()) == []
    assert Message.objects.get().message_id == "a"


def test_the_actor_is_the_script_name_unless_given(db, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/opt/bot/whatsapp_watcher.py", "--once"])
    StateManager().add_message({"id": "a"}, MessageStatus.INCOMING)
    event = AuditEvent.objects.get()
    assert (event.actor, event.source) == ("whatsapp_watcher", Source.API)


# --- Session ------------------------------------------------------------------------


@pytest.fixture
def session_folder(settings, tmp_path) -> Path:
    settings.WHATSAPP_SESSION_BASE = tmp_path
    folder = tmp_path / ".wwebjs_auth"
    folder.mkdir()
    return folder


def test_a_fresh_state_needs_a_qr_scan(manager):
    assert manager.is_session_valid() is False
    assert manager.requires_qr_scan() is True


def test_is_session_valid_applies_the_four_rules(manager, session_folder):
    manager.update_session_status(True)
    assert manager.is_session_valid() is True
    session_folder.rmdir()  # the old code never looked at the folder; we do
    assert manager.is_session_valid() is False
    session_folder.mkdir()
    manager.set_config(
        "session", {**manager.get_session_info(), "last_validation": "2026-01-01T00:00:00"}
    )
    assert manager.is_session_valid() is False
    manager.update_session_status(True)
    manager.mark_session_invalid("LOGOUT")
    assert manager.is_session_valid() is False


def test_update_session_status_sets_the_flags_as_the_old_code_did(manager):
    before = clock.local_iso()
    manager.update_session_status(
        True, {"number": "923001234567", "name": "Shop", "platform": "android"}
    )
    info = manager.get_session_info()
    assert (info["authenticated"], info["session_valid"], info["requires_qr"]) == (
        True,
        True,
        False,
    )
    assert info["last_validation"] == info["last_authenticated"] >= before
    account = manager.get_config("account_info")
    assert account == {
        "number": "923001234567",
        "name": "Shop",
        "platform": "android",
        "last_updated": info["last_validation"],
    }
    assert manager.requires_qr_scan() is False
    manager.update_session_status(False)
    info = manager.get_session_info()
    assert (info["authenticated"], info["session_valid"], info["requires_qr"]) == (
        False,
        False,
        True,
    )
    assert manager.get_config("account_info") == account  # not given: not replaced


def test_mark_session_invalid_records_the_reason_audited(manager):
    manager.update_session_status(True)
    manager.mark_session_invalid()
    info = manager.get_session_info()
    assert (info["session_valid"], info["requires_qr"]) == (False, True)
    assert info["invalidation_reason"] == "Unknown" and info["invalidated_at"]
    assert manager.requires_qr_scan() is True
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.note, event.actor) == ("session_invalid", "Unknown", "assistant")


def test_requires_qr_scan_is_true_when_the_key_is_missing(manager):
    statefile.import_bytes(b'{"session": {"authenticated": true}}', actor="t", source="command")
    assert manager.requires_qr_scan() is True
    manager.set_config("session", {"requires_qr": False})
    assert manager.requires_qr_scan() is False


def test_get_session_info_is_the_session_object(manager):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    assert manager.get_session_info() == json.loads((DATA / "quirks.json").read_bytes())["session"]


# --- Messages -----------------------------------------------------------------------

COUNTED = {
    MessageStatus.INCOMING: ("total_incoming", "last_message_received"),
    MessageStatus.PENDING_APPROVAL: (None, None),
    MessageStatus.APPROVED: ("total_approved", None),
    MessageStatus.REJECTED: ("total_rejected", None),
    MessageStatus.SENT: ("total_sent", "last_message_sent"),
    MessageStatus.FAILED: ("total_failed", None),
}


@pytest.mark.parametrize("status", list(MessageStatus), ids=lambda s: s.value)
def test_add_message_appends_and_counts_as_the_old_code_did(manager, status):
    manager.reset_statistics()
    before = manager.get_statistics()
    data = {"id": "m1", "body": "Hi"}
    stored = manager.add_message(data, status)
    assert stored == data == {"id": "m1", "body": "Hi", "timestamp": data["timestamp"]}
    assert manager.get_messages(status) == [data]
    counter, last = COUNTED[status]
    expected = dict(before)
    if counter:
        expected[counter] = 1
    if last:
        expected[last] = manager.get_statistics()[last]
        assert expected[last] is not None
    assert manager.get_statistics() == expected


def test_add_message_takes_the_status_as_text_too(manager):
    manager.add_message({"id": "m1"}, "sent")
    assert Message.objects.get().status == Status.SENT


def test_add_message_with_a_stored_id_raises_and_keeps_one_copy(manager):
    manager.add_message({"id": "m1", "body": "first"}, MessageStatus.INCOMING)
    with pytest.raises(ValueError, match="m1: a message with this id is already stored"):
        manager.add_message({"id": "m1", "body": "second"}, MessageStatus.SENT)
    assert [m["body"] for m in manager.get_messages(MessageStatus.INCOMING)] == ["first"]
    assert manager.get_messages(MessageStatus.SENT) == []
    assert manager.get_statistics()["total_sent"] == 0


def test_lists_are_never_cut_to_100(manager):
    for i in range(150):
        manager.add_message({"id": f"m{i}"}, MessageStatus.INCOMING)
    messages = manager.get_messages(MessageStatus.INCOMING)
    assert [m["id"] for m in messages] == [f"m{i}" for i in range(150)]


def test_get_messages_is_oldest_first_and_limit_gives_the_newest(manager):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    incoming = json.loads((DATA / "quirks.json").read_bytes())["messages"]["incoming"]
    assert manager.get_messages(MessageStatus.INCOMING) == incoming  # as stored, keys in order
    manager.add_message({"id": "newest"}, MessageStatus.INCOMING)
    newest = manager.get_messages(MessageStatus.INCOMING, limit=3)
    assert [m["id"] for m in newest] == ["in_group", "in_unknown_keys", "newest"]
    assert len(manager.get_messages(MessageStatus.INCOMING, limit=100)) == 9
    assert manager.get_messages(MessageStatus.FAILED) == []


def test_move_message_moves_and_counts_the_target(manager):
    manager.add_message({"id": "r1", "body": "draft"}, MessageStatus.PENDING_APPROVAL)
    assert (
        manager.move_message("r1", MessageStatus.PENDING_APPROVAL, MessageStatus.APPROVED) is True
    )
    (moved,) = manager.get_messages(MessageStatus.APPROVED)
    assert moved["status"] == "approved" and moved["status_updated_at"]
    assert manager.get_messages(MessageStatus.PENDING_APPROVAL) == []
    assert manager.get_statistics()["total_approved"] == 1
    assert manager.move_message("r1", "approved", "sent") is True
    assert manager.get_statistics()["total_sent"] == 1
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.actor, event.source) == ("mark_sent", "assistant", Source.API)


def test_move_message_is_false_when_the_message_is_not_in_from_status(manager):
    manager.add_message({"id": "r1"}, MessageStatus.PENDING_APPROVAL)
    manager.move_message("r1", MessageStatus.PENDING_APPROVAL, MessageStatus.REJECTED)
    events = AuditEvent.objects.count()
    # Someone moved it first: False, as the old code said for "not found there".
    assert (
        manager.move_message("r1", MessageStatus.PENDING_APPROVAL, MessageStatus.APPROVED) is False
    )
    assert (
        manager.move_message("nope", MessageStatus.PENDING_APPROVAL, MessageStatus.APPROVED)
        is False
    )
    assert AuditEvent.objects.count() == events
    assert manager.get_statistics()["total_approved"] == 0


@pytest.mark.parametrize(
    "source, target",
    [("sent", "incoming"), ("incoming", "approved"), ("rejected", "sent"), ("sent", "sent")],
)
def test_move_message_raises_for_a_move_the_lifecycle_forbids(manager, source, target):
    manager.add_message({"id": "m1"}, source)
    with pytest.raises(ValueError, match=f"m1: the lifecycle does not allow {source} -> {target}"):
        manager.move_message("m1", source, target)
    assert Message.objects.get().status == source


def test_clear_messages_empties_one_list_audited(manager):
    manager.add_message({"id": "a"}, MessageStatus.SENT)
    manager.add_message({"id": "b"}, MessageStatus.INCOMING)
    manager.clear_messages(MessageStatus.SENT)
    assert manager.get_messages(MessageStatus.SENT) == []
    assert len(manager.get_messages(MessageStatus.INCOMING)) == 1
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.detail, event.actor) == ("clear_list", {"ids": ["a"]}, "assistant")
    assert manager.get_statistics()["total_sent"] == 1  # totals ever counted stay


# --- Statistics and settings ----------------------------------------------------------


def test_reset_statistics_zeroes_the_counters_audited(manager):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    before = manager.get_statistics()
    manager.reset_statistics()
    assert manager.get_statistics() == {
        "total_incoming": 0,
        "total_sent": 0,
        "total_failed": 0,
        "total_approved": 0,
        "last_message_received": None,
        "last_message_sent": None,
        "average_reply_seconds": 42.5,
        "total_rejected": 0,
    }
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.detail) == ("reset_statistics", {"before": before})
    manager.add_message({"id": "x"}, MessageStatus.SENT)
    assert manager.get_statistics()["total_sent"] == 1


def test_get_config_reads_any_top_level_key_as_exported(manager):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    state = json.loads(statefile.export_bytes())
    for key, value in state.items():
        assert manager.get_config(key) == value, key
    assert manager.get_config("statistics") == manager.get_statistics()
    assert manager.get_config("nothing here") is None
    assert manager.get_config("nothing here", 5) == 5


def test_get_config_of_a_setting_does_not_read_the_messages(manager, django_assert_max_num_queries):
    for i in range(50):
        manager.add_message({"id": f"m{i}"}, MessageStatus.INCOMING)
    with django_assert_max_num_queries(1):
        assert manager.get_config("human_in_the_loop") is True


@pytest.mark.parametrize(
    "key, value",
    [
        ("human_in_the_loop", False),
        ("api_endpoint", "http://10.0.0.5:3000/api/whatsapp"),
        ("watcher_config", {"poll_interval_seconds": 10, "auto_reply_enabled": False, "x": [1]}),
        ("retry_config", {"max_retries": 5, "retry_delay_seconds": 0.5}),
        ("custom_key", {"anything": [None, 1.5, "ü"]}),
        ("incoming_messages", []),
    ],
)
def test_set_config_stores_a_valid_setting_audited(manager, key, value):
    manager.set_config(key, value)
    assert manager.get_config(key) == value
    assert json.loads(statefile.export_bytes())[key] == value
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.actor, event.detail["key"], event.detail["after"]) == (
        "set_config",
        "assistant",
        key,
        value,
    )


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("human_in_the_loop", "no", "human_in_the_loop: expected true or false"),
        ("human_in_the_loop", None, "human_in_the_loop: expected true or false"),
        ("api_endpoint", 3000, "api_endpoint: expected a string"),
        (
            "watcher_config",
            {"poll_interval_seconds": 0},
            "watcher_config.poll_interval_seconds: expected a positive whole number",
        ),
        ("retry_config", [3], "retry_config: expected an object"),
        ("incoming_messages", {}, "incoming_messages: expected a list"),
        ("custom", "a\x00b", "custom: holds a NUL character"),
        ("messages", {}, "messages: is kept by the dashboard"),
        ("message_log", [], "message_log: is kept by the dashboard"),
        ("statistics", {}, "statistics: is kept by the dashboard"),
    ],
)
def test_set_config_refuses_a_wrong_value_naming_it(manager, key, value, problem):
    exported = statefile.export_bytes()
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        manager.set_config(key, value)
    assert statefile.export_bytes() == exported


def test_update_config_changes_all_or_nothing(manager):
    exported = statefile.export_bytes()
    with pytest.raises(ValueError, match="retry_config.max_retries"):
        manager.update_config({"human_in_the_loop": False, "retry_config": {"max_retries": "3"}})
    assert statefile.export_bytes() == exported
    manager.update_config({"human_in_the_loop": False, "api_endpoint": "http://gw/api"})
    assert manager.get_config("human_in_the_loop") is False
    assert manager.get_config("api_endpoint") == "http://gw/api"


# --- The whole state ------------------------------------------------------------------


def test_get_full_state_is_what_export_writes(manager):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    manager.add_message({"id": "new"}, MessageStatus.PENDING_APPROVAL)
    full = manager.get_full_state()
    assert json.dumps(full, indent=2, ensure_ascii=False).encode() == statefile.export_bytes()


def test_export_state_writes_the_canonical_file(manager, sample_bytes, tmp_path):
    statefile.import_bytes(sample_bytes, actor="t", source="command")
    target = tmp_path / "whatsapp_state.json"
    assert manager.export_state(str(target)) == str(target)
    assert target.read_bytes() == sample_bytes


def test_backup_state_returns_the_path_of_a_timestamped_copy(
    manager, sample_bytes, tmp_path, settings
):
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    statefile.import_bytes(sample_bytes, actor="t", source="command")
    path = Path(manager.backup_state())
    assert path.parent == tmp_path / "backups"
    assert path.name.startswith("whatsapp_state_backup_") and path.suffix == ".json"
    assert path.read_bytes() == sample_bytes


# --- Many processes at once -------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys

    from statecore.state_manager import MessageStatus, StateManager

    worker, count = sys.argv[1], int(sys.argv[2])
    manager = StateManager()
    for i in range(count):
        manager.add_message(
            {"id": f"{worker}-{i}", "from": f"92300{i:07d}@c.us", "body": f"hello {i}"},
            MessageStatus.INCOMING,
        )
    print(worker, "done")
    """
)


def _database_url() -> str:
    """The test database, for a child process that sets Django up by itself."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}"


def _run_scripts(tmp_path: Path, processes: int, each: int) -> None:
    script = tmp_path / "whatsapp_watcher.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "PYTHONPATH": str(REPO),
    }
    children = [
        subprocess.Popen(
            [sys.executable, str(script), f"w{n}", str(each)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    results = [child.communicate(timeout=300) for child in children]
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert out.strip().endswith("done")


@pytest.mark.django_db(transaction=True)
def test_four_processes_adding_500_messages_each_store_exactly_2000(tmp_path):
    statefile.import_bytes((DATA / "quirks.json").read_bytes(), actor="t", source="command")
    total_before = StateManager().get_statistics()["total_incoming"]
    messages_before = Message.objects.count()
    _run_scripts(tmp_path, processes=4, each=500)
    assert Message.objects.count() == messages_before + 2000
    assert Message.objects.filter(message_id__regex=r"^w[0-3]-\d+$").count() == 2000
    assert StateManager().get_statistics()["total_incoming"] == total_before + 2000
    added = AuditEvent.objects.filter(action="add", actor="whatsapp_watcher")
    assert added.count() == 2000
    assert set(added.values_list("source", flat=True)) == {Source.API}
    # The export holds every one of them, in a file an import accepts.
    state = statefile.parse_state(statefile.export_bytes())
    assert len(state["messages"]["incoming"]) == 8 + 2000


@pytest.mark.django_db(transaction=True)
def test_processes_starting_on_an_empty_database_share_one_state(tmp_path):
    # None has a state row yet: each may try to create it; one does, all count.
    _run_scripts(tmp_path, processes=3, each=40)
    assert StateRoot.objects.count() == 1
    assert Message.objects.count() == 120
    assert StateManager().get_statistics()["total_incoming"] == 120


@pytest.mark.django_db(transaction=True)
def test_each_call_replaces_a_connection_that_grew_old_or_failed():
    # A watcher runs for days, outside any request: nothing else closes its
    # connection when it outlives CONN_MAX_AGE or the database restarts.
    manager = StateManager(actor="watcher")
    manager.add_message({"id": "a"}, MessageStatus.INCOMING)
    old = connection.connection
    connection.close_at = time.monotonic() - 1  # past CONN_MAX_AGE
    assert manager.get_statistics()["total_incoming"] == 1
    assert connection.connection is not old
    if connection.vendor == "postgresql":
        # The server ends the session, as a restart does; the connection is a
        # persistent one. CONN_HEALTH_CHECKS finds it dead before the call uses it.
        connection.close_at = None
        pid = connection.connection.info.backend_pid
        with psycopg.connect(
            dbname=connection.settings_dict["NAME"],
            host=connection.settings_dict["HOST"] or "127.0.0.1",
            user=connection.settings_dict["USER"] or "postgres",
            autocommit=True,
        ) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert manager.get_statistics()["total_incoming"] == 1
        assert connection.connection.info.backend_pid != pid
    manager.add_message({"id": "b"}, MessageStatus.INCOMING)
    assert [m["id"] for m in manager.get_messages(MessageStatus.INCOMING)] == ["a", "b"]
