"""Import then export gives back the file: byte for byte in the canonical form,
and the canonical form of any other valid file; and what changes in between
(moves, adds, counts) shows in the export without disturbing anything else."""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statecore import lifecycle, rootstate, statefile
from statecore.models import AuditEvent, LogEntry, Message, Source, StateRoot, Status
from statecore.statefile import columns, export, rules

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = sorted(DATA.glob("*.json"))
WHO = {"actor": "tester", "source": Source.COMMAND}


def canonical(state: dict) -> bytes:
    return json.dumps(state, indent=2, ensure_ascii=False).encode("utf-8")


def import_file(data: bytes, **options) -> statefile.ImportSummary:
    return statefile.import_bytes(data, actor="tester", source=Source.COMMAND, **options)


def exported() -> dict:
    return json.loads(statefile.export_bytes())


# --- Byte for byte -----------------------------------------------------------


def test_sample_file_comes_back_byte_for_byte(db, sample_bytes):
    import_file(sample_bytes)
    assert statefile.export_bytes() == sample_bytes


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_file_comes_back_byte_for_byte(db, path):
    data = path.read_bytes()
    assert data == canonical(json.loads(data)), "golden files are in the canonical form"
    import_file(data)
    assert statefile.export_bytes() == data


def test_golden_files_carry_the_quirks_they_are_named_for():
    # Guards the golden files themselves: a quirk edited away would make the
    # round trip above prove less than it claims.
    quirks = json.loads((DATA / "quirks.json").read_text(encoding="utf-8"))
    incoming = {m["id"]: m for m in quirks["messages"]["incoming"]}
    assert type(incoming["in_epoch_int"]["timestamp"]) is int
    assert type(incoming["in_epoch_float"]["timestamp"]) is float
    assert "timestamp" not in incoming["in_no_timestamp"]
    assert "<script>" in incoming["in_html"]["body"]
    assert "🎉" in incoming["in_emoji"]["body"]
    assert len(incoming["in_long"]["body"]) >= 10_000
    assert "failed" not in quirks["messages"] and quirks["messages"]["rejected"] == []
    assert list(quirks)[0] == "x_first" and list(quirks)[-1] == "x_last"
    unknown = {
        "session": "browser",
        "account_info": "business",
        "watcher_config": "ignore_numbers",
        "retry_config": "jitter",
        "statistics": "average_reply_seconds",
        "metadata": "migrated_from",
    }
    for part, key in unknown.items():
        assert key in quirks[part], part
    assert "zz_last" in incoming["in_unknown_keys"]
    assert "attempt" in quirks["message_log"][1]
    assert (DATA / "empty_object.json").read_bytes() == b"{}"
    assert "messages" not in json.loads((DATA / "no_messages.json").read_bytes())


# Random valid states. Strings: any text but NUL and lone surrogates (both
# refused, see test_statefile_malformed).
_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12
)
_timestamps = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=4_000_000_000),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    st.datetimes().map(lambda d: d.isoformat()),
    _text,
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_anything = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
# Unknown keys: any name the validator has no rule for (a known name has a type).
_KNOWN_KEYS = {"id"}.union(
    *(rules for rules in rules.TOP_OBJECTS.values()),
    rules.MESSAGE_RULES,
    rules.LOG_RULES,
)
_unknown = st.dictionaries(_text.filter(lambda k: k not in _KNOWN_KEYS), _anything, max_size=2)


@st.composite
def _message(draw, status: str, ident: str) -> dict:
    obj = draw(_unknown)
    known = {
        "id": ident,
        "from": draw(st.none() | _text),
        "body": draw(st.none() | _text),
        "timestamp": draw(_timestamps),
    }
    if draw(st.booleans()):
        known["status"] = status
        known["status_updated_at"] = draw(_timestamps)
    keys = draw(st.permutations(list(known) + list(obj)))
    merged = {**obj, **known}
    return {key: merged[key] for key in keys}


@st.composite
def _states(draw) -> dict:
    counter = iter(range(10_000))
    state: dict = {}
    parts = {
        "session": lambda: {
            "authenticated": draw(st.booleans()),
            "last_validation": draw(_timestamps),
            **draw(_unknown),
        },
        "human_in_the_loop": lambda: draw(st.booleans()),
        "statistics": lambda: {
            "total_incoming": draw(st.integers(0, 2**63 - 1)),
            "last_message_sent": draw(_timestamps),
            **draw(_unknown),
        },
        "metadata": lambda: {"last_updated": draw(_timestamps), **draw(_unknown)},
        "messages": lambda: {
            name: [
                draw(_message(name, f"m{next(counter)}")) for _ in range(draw(st.integers(0, 3)))
            ]
            for name in draw(st.permutations(Status.values))[: draw(st.integers(0, 6))]
        },
        "message_log": lambda: [
            {"timestamp": draw(_timestamps), "status": draw(st.sampled_from(["success", "failed"]))}
            | draw(_unknown)
            for _ in range(draw(st.integers(0, 2)))
        ],
        "x_unknown": lambda: draw(_anything),
        "incoming_messages": lambda: draw(st.lists(_anything, max_size=2)),
    }
    for key in draw(st.permutations(list(parts))):
        if draw(st.booleans()):
            state[key] = parts[key]()
    return state


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(state=_states())
def test_any_valid_state_comes_back_byte_for_byte(state):
    data = canonical(state)
    import_file(data)  # each import replaces everything: a fresh state per example
    assert statefile.export_bytes() == data


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(lambda s: json.dumps(s, indent=4, ensure_ascii=False), id="indent-4"),
        pytest.param(lambda s: json.dumps(s, ensure_ascii=False), id="one-line"),
        pytest.param(lambda s: json.dumps(s, indent=2), id="ascii-escapes"),
        pytest.param(
            lambda s: json.dumps(s, indent=2, ensure_ascii=False) + "\n", id="trailing-newline"
        ),
        pytest.param(
            lambda s: "\ufeff" + json.dumps(s, indent=2, ensure_ascii=False), id="byte-order-mark"
        ),
        pytest.param(
            lambda s: json.dumps(s, indent="\t", ensure_ascii=False).replace("\n", "\r\n"),
            id="tabs-crlf",
        ),
    ],
)
def test_a_non_canonical_file_exports_in_the_canonical_form(db, dump):
    quirks = (DATA / "quirks.json").read_bytes()
    state = json.loads(quirks)
    data = dump(state).encode("utf-8")
    assert data != quirks
    import_file(data)
    assert statefile.export_bytes() == quirks


def test_numbers_written_another_way_export_as_python_writes_them(db):
    import_file(b'{"x": [1E3, 1.50, -0, 2e-3], "statistics": {"total_sent": 10}}')
    assert statefile.export_bytes() == canonical(
        {"x": [1000.0, 1.5, 0, 0.002], "statistics": {"total_sent": 10}}
    )


# --- What an import stores and records ----------------------------------------


def test_import_writes_one_audit_event_saying_what_it_replaced(db, sample_bytes):
    import_file((DATA / "lists_out_of_order.json").read_bytes())
    before = AuditEvent.objects.count()
    summary = import_file(sample_bytes)
    event = AuditEvent.objects.order_by("-pk").first()
    assert AuditEvent.objects.count() == before + 1
    assert (event.action, event.actor, event.source) == ("import", "tester", Source.COMMAND)
    assert event.detail["before"] == {
        **dict.fromkeys(Status.values, 0),
        "incoming": 2,
        "sent": 1,
        "message_log": 0,
    }
    assert (
        event.detail["after"] == summary.after == statefile.state_counts(json.loads(sample_bytes))
    )
    assert "2 incoming" in event.note and "1 sent" in event.note


def test_import_never_deletes_audit_events(db, sample_bytes):
    import_file(sample_bytes)
    mid = Message.objects.pending().first().message_id
    lifecycle.approve(mid, **WHO)
    events = list(AuditEvent.objects.values_list("pk", flat=True))
    import_file(b"{}")
    assert set(events) <= set(AuditEvent.objects.values_list("pk", flat=True))
    assert AuditEvent.objects.filter(message_id=mid, action="approve").exists()


def test_import_replaces_everything(db, sample_bytes):
    import_file(sample_bytes)
    import_file(b'{"api_endpoint": "http://x/api"}')
    assert Message.objects.count() == 0 and LogEntry.objects.count() == 0
    assert StateRoot.objects.count() == 1
    assert statefile.export_bytes() == b'{\n  "api_endpoint": "http://x/api"\n}'


def test_import_fills_the_columns_pages_filter_on(db):
    import_file((DATA / "quirks.json").read_bytes())
    group = Message.objects.get(message_id="in_group")
    assert (group.status, group.is_group, group.chat, group.author) == (
        Status.INCOMING,
        True,
        "120363000000000001",
        "923007777777@c.us",
    )
    assert group.timestamp == datetime.fromisoformat("2026-11-24T08:09:35+05:00")
    epoch = Message.objects.get(message_id="in_epoch_int")
    assert epoch.timestamp.timestamp() == 1764000000
    assert Message.objects.get(message_id="in_no_timestamp").timestamp is None
    assert Message.objects.get(message_id="in_unknown_keys").timestamp is None
    reply = Message.objects.get(message_id="reply_in_html")
    assert (reply.reply_to, reply.recipient, reply.chat) == (
        "in_html",
        "923004444444",
        "923004444444",
    )
    assert list(LogEntry.objects.order_by("pk").values_list("outcome", flat=True)) == [
        "success",
        "failed",
    ]


def test_timestamps_at_the_ends_of_the_calendar_are_kept_as_text(db, settings):
    # In a zone west of UTC, 9999-12-31T23:00 is in year 10000 in UTC: the
    # parsed column stays empty, the text is exported as it came.
    settings.TIME_ZONE = "America/New_York"
    state = {
        "messages": {
            "incoming": [
                {"id": "late", "timestamp": "9999-12-31T23:00:00"},
                {"id": "early", "timestamp": "0001-01-01T00:00:00+05:00"},
                {"id": "epoch-huge", "timestamp": 1e300},
            ]
        }
    }
    import_file(canonical(state))
    assert statefile.export_bytes() == canonical(state)
    assert set(Message.objects.values_list("timestamp", flat=True)) == {None}


def test_import_inserts_in_batches_not_one_query_per_message(db):
    def state(n: int) -> bytes:
        items = [
            {"id": f"m{i}", "from": f"{i}@c.us", "body": "hi", "timestamp": i} for i in range(n)
        ]
        return canonical({"messages": {"incoming": items}, "message_log": [{"status": "x"}] * 3})

    small, large = state(500), state(5000)
    with CaptureQueriesContext(connection) as few:
        import_file(small)
    with CaptureQueriesContext(connection) as many:
        import_file(large)
    assert Message.objects.count() == 5000
    # 5,000 messages are three batches of 2,000 where 500 are one: two
    # statements more, not thousands.
    assert len(many) - len(few) <= 3, [q["sql"][:80] for q in many.captured_queries]
    # Each secondary index is dropped and made again (2 statements each), and the
    # search's index is made again empty and built (8).
    assert len(many) < 56


def test_import_reports_progress_in_batches(db):
    items = [{"id": f"m{i}"} for i in range(4500)]
    calls: list[tuple[int, int]] = []
    import_file(
        canonical({"messages": {"sent": items[:10], "incoming": items[10:]}}),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(2000, 4500), (4000, 4500), (4500, 4500)]


# --- The Message table's columns, declared once (statefile.columns) -----------


def _row(message_id: str) -> dict:
    return Message.objects.filter(message_id=message_id).values().get()


def test_the_declared_columns_are_every_column_of_the_message_table():
    # A Message field an import does not declare would be left to a default
    # nobody chose (or refused as NULL): each must be derived or given one.
    declared = columns.import_row({"id": "m"}, "incoming", 0, tz=UTC, to_time=lambda v, tz: v)
    table = [f.name for f in Message._meta.concrete_fields if not f.primary_key]
    assert sorted(declared) == sorted(table)


def test_the_insert_follows_the_declaration_in_any_order(db, monkeypatch):
    # The statement names the columns of each row: reversing the declaration
    # writes the same table, and the file still comes back byte for byte.
    declared = columns.import_row
    monkeypatch.setattr(
        columns, "import_row", lambda *a, **k: dict(reversed(declared(*a, **k).items()))
    )
    quirks = (DATA / "quirks.json").read_bytes()
    import_file(quirks)
    assert statefile.export_bytes() == quirks
    group = _row("in_group")
    assert (group["status"], group["chat"], group["author"], group["claimed_by"]) == (
        Status.INCOMING,
        "120363000000000001",
        "923007777777@c.us",
        "",
    )
    assert [_row(m["id"])["position"] for m in json.loads(quirks)["messages"]["incoming"]] == list(
        range(len(json.loads(quirks)["messages"]["incoming"]))
    )


def test_a_column_added_to_the_declaration_is_written_in_its_place(db, monkeypatch):
    # As if `author` became a column only the database keeps: declared once,
    # with its import default, it is written with that default and no other
    # column moves.
    derived = columns.message_columns
    monkeypatch.setattr(
        columns,
        "message_columns",
        lambda *a, **k: {n: v for n, v in derived(*a, **k).items() if n != "author"},
    )
    monkeypatch.setattr(columns, "DATABASE_ONLY", {"author": "?", **columns.DATABASE_ONLY})
    quirks = (DATA / "quirks.json").read_bytes()
    import_file(quirks)
    assert set(Message.objects.values_list("author", flat=True)) == {"?"}
    group = _row("in_group")
    assert (group["sender"], group["chat"], group["status_changed_by"]) == (
        "120363000000000001@g.us",
        "120363000000000001",
        "",
    )
    assert statefile.export_bytes() == quirks


# --- Changes after an import, as export shows them ----------------------------


def test_a_move_keeps_the_key_order_of_the_object(db):
    import_file((DATA / "quirks.json").read_bytes())
    lifecycle.approve("reply_in_html", **WHO)
    moved = exported()["messages"]["approved"][-1]
    assert list(moved) == [
        "priority",
        "id",
        "recipient",
        "body",
        "original_message_id",
        "timestamp",
        "status",
        "status_updated_at",
    ]
    lifecycle.mark_sent("reply_in_epoch_int", **WHO)
    sent = exported()["messages"]["sent"][-1]
    # Keys it already had stay where they were, with their new values.
    assert list(sent) == [
        "id",
        "recipient",
        "body",
        "original_message_id",
        "timestamp",
        "status",
        "status_updated_at",
    ]
    assert sent["status"] == "sent" and sent["timestamp"] == 1764000100
    assert isinstance(sent["status_updated_at"], str)


def test_a_move_changes_nothing_else_in_the_file(db):
    data = (DATA / "quirks.json").read_bytes()
    import_file(data)
    lifecycle.approve("reply_in_emoji", **WHO)
    before, after = json.loads(data), exported()
    moved = after["messages"]["approved"].pop()
    before["messages"]["pending_approval"].pop()
    assert after["messages"] == before["messages"]
    assert moved["id"] == "reply_in_emoji"
    assert after["metadata"]["last_updated"] != before["metadata"]["last_updated"]
    after["metadata"]["last_updated"] = before["metadata"]["last_updated"]
    assert after["statistics"]["total_approved"] == before["statistics"]["total_approved"] + 1
    after["statistics"]["total_approved"] = before["statistics"]["total_approved"]
    assert after == before
    assert list(after) == list(before)


def test_a_list_missing_from_the_file_appears_after_the_others_once_used(db):
    import_file((DATA / "quirks.json").read_bytes())
    assert "failed" not in exported()["messages"]
    lifecycle.mark_failed("reply_in_epoch_int", "Request timed out", **WHO)
    lists = exported()["messages"]
    assert list(lists) == ["incoming", "pending_approval", "approved", "rejected", "sent", "failed"]
    assert lists["approved"] == [] and lists["failed"][0]["error"] == "Request timed out"


def test_lists_keep_the_order_the_file_had(db):
    data = (DATA / "lists_out_of_order.json").read_bytes()
    import_file(data)
    lifecycle.add_message({"id": "p1", "body": "draft"}, Status.PENDING_APPROVAL, **WHO)
    assert list(exported()["messages"]) == ["sent", "incoming", "failed", "pending_approval"]


def test_a_counter_missing_from_the_file_appears_once_counted(db):
    import_file((DATA / "quirks.json").read_bytes())
    stats = exported()["statistics"]
    assert "total_rejected" not in stats
    lifecycle.reject("reply_in_html", **WHO)
    stats = exported()["statistics"]
    assert stats["total_rejected"] == 1
    assert list(stats)[-1] == "total_rejected"
    assert stats["average_reply_seconds"] == 42.5  # unknown keys stay
    assert stats["total_sent"] == 2**63 - 1


def test_metadata_missing_from_the_file_appears_when_something_changes(db):
    import_file(b'{"messages": {"pending_approval": [{"id": "r1"}]}}')
    assert "metadata" not in exported()
    lifecycle.approve("r1", **WHO)
    state = exported()
    assert list(state["metadata"]) == ["last_updated"]
    assert list(state) == ["messages", "statistics", "metadata"]
    assert state["statistics"] == {"total_approved": 1}


def test_the_empty_state_accepts_messages_and_exports_a_valid_file(db):
    import_file(b"{}")
    assert statefile.export_bytes() == b"{}"
    lifecycle.add_message({"id": "i1", "from": "1@c.us", "body": "hi"}, Status.INCOMING, **WHO)
    data = statefile.export_bytes()
    state = statefile.parse_state(data)  # what we export is always importable
    assert list(state) == ["messages", "statistics", "metadata"]
    assert state["messages"]["incoming"][0]["id"] == "i1"
    assert state["statistics"]["total_incoming"] == 1
    assert state["statistics"]["last_message_received"] == state["metadata"]["last_updated"]
    import_file(data)
    assert statefile.export_bytes() == data


def test_unknown_top_level_keys_keep_their_place_as_the_state_changes(db):
    import_file((DATA / "quirks.json").read_bytes())
    lifecycle.approve("reply_in_html", **WHO)
    rootstate.update_extra("x_new", {"a": 1}, actor="t", source=Source.API, action="set_config")
    keys = list(exported())
    assert keys[0] == "x_first" and keys.index("x_middle") == keys.index("retry_config") + 1
    assert keys[-2:] == ["x_last", "x_new"]


def test_epoch_timestamps_of_untouched_messages_stay_numbers(db):
    import_file((DATA / "quirks.json").read_bytes())
    lifecycle.approve("reply_in_html", **WHO)
    lifecycle.mark_sent("reply_in_epoch_int", **WHO)
    incoming = {m["id"]: m for m in exported()["messages"]["incoming"]}
    assert incoming["in_epoch_int"]["timestamp"] == 1764000000
    assert incoming["in_epoch_float"]["timestamp"] == 1764000000.125
    assert exported()["session"]["last_validation"] == 1764000000


def test_a_fresh_database_exports_the_state_the_old_scripts_started_with(db):
    state = exported()
    assert list(state) == rootstate.TOP_LEVEL_ORDER
    assert state["messages"] == {name: [] for name in Status.values}
    assert state["human_in_the_loop"] is True
    assert state["statistics"] == {
        "total_incoming": 0,
        "total_sent": 0,
        "total_failed": 0,
        "total_approved": 0,
        "total_rejected": 0,
        "last_message_received": None,
        "last_message_sent": None,
    }
    statefile.parse_state(statefile.export_bytes())


# --- Export to a file ------------------------------------------------------------


def test_export_state_writes_the_canonical_file(db, sample_bytes, tmp_path):
    import_file(sample_bytes)
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"old")
    assert statefile.export_state(target) == target
    assert target.read_bytes() == sample_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["whatsapp_state.json"]


@pytest.mark.parametrize("failing", ["os.replace", "os.fsync"])
def test_an_interrupted_export_leaves_the_old_file_intact(db, tmp_path, monkeypatch, failing):
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"the old file")

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(failing, crash)
    with pytest.raises(OSError, match="No space left"):
        statefile.export_state(target)
    assert target.read_bytes() == b"the old file"
    assert [p.name for p in tmp_path.iterdir()] == ["whatsapp_state.json"]


def test_backup_state_writes_a_timestamped_copy_in_the_backup_folder(
    db, sample_bytes, tmp_path, settings
):
    settings.STATE_BACKUP_DIR = tmp_path / "backups"
    import_file(sample_bytes)
    first = statefile.backup_state()
    second = statefile.backup_state()
    assert first.parent == second.parent == tmp_path / "backups"
    assert first.read_bytes() == second.read_bytes() == sample_bytes
    assert first != second  # two backups in one second never overwrite each other
    assert re.fullmatch(r"whatsapp_state_backup_\d{8}_\d{6}\.json", first.name)
    stamp = datetime.strptime(first.name[22:37], "%Y%m%d_%H%M%S")
    assert abs((datetime.now() - stamp).total_seconds()) < 60


def test_state_counts_name_every_list_and_the_log():
    counts = statefile.state_counts({"messages": {"sent": [{"id": "a"}]}, "message_log": [{}] * 2})
    assert counts == {**dict.fromkeys(Status.values, 0), "sent": 1, "message_log": 2}


def test_a_counter_at_the_64_bit_limit_stays_there(db):
    # One more would be "bigint out of range" on PostgreSQL (refusing the move)
    # and a float on SQLite (an export no import accepts).
    import_file((DATA / "quirks.json").read_bytes())
    lifecycle.mark_sent("reply_in_epoch_int", **WHO)
    total_sent = exported()["statistics"]["total_sent"]
    assert total_sent == 2**63 - 1 and type(total_sent) is int
    assert Message.objects.get(message_id="reply_in_epoch_int").status == Status.SENT


def test_export_keeps_the_permissions_of_the_file_it_replaces(db, tmp_path):
    # The scripts may read the file as another user: the temporary file's 0600
    # must not become the state file's mode.
    target = tmp_path / "whatsapp_state.json"
    target.write_bytes(b"old")
    target.chmod(0o640)
    statefile.export_state(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    fresh = tmp_path / "new.json"
    statefile.export_state(fresh)
    # A new file holds every customer's number and message: the owner's alone.
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


@pytest.mark.django_db(transaction=True)
def test_an_export_is_one_snapshot_even_while_messages_move(monkeypatch):
    # The export reads the counters, then the messages: a move in between must
    # not show a reply in `approved` that total_approved does not count yet.
    import_file(b'{"messages": {"pending_approval": [{"id": "r1"}]}}')
    read_lists = export._lists_in_order
    mover_started = threading.Event()
    outcome: dict = {}

    def paused(root):
        mover_started.wait(timeout=10)
        time.sleep(0.5)  # the move runs now, or waits for the export to finish
        return read_lists(root)

    def mover():
        try:
            mover_started.set()
            lifecycle.approve("r1", **WHO)
        finally:
            connection.close()

    def exporter():
        try:
            outcome["state"] = json.loads(statefile.export_bytes())
        finally:
            connection.close()

    monkeypatch.setattr(export, "_lists_in_order", paused)
    threads = [threading.Thread(target=exporter), threading.Thread(target=mover)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    state = outcome["state"]
    approved = len(state["messages"].get("approved", []))
    assert state.get("statistics", {}).get("total_approved", 0) == approved
    assert Message.objects.get(message_id="r1").status == Status.APPROVED
