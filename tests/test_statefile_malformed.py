"""Every refused file: the place of the fault named, and the database exactly
as it was (its export before and after compared byte for byte)."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from statecore import lifecycle, statefile
from statecore.models import AuditEvent, Source, Status
from statecore.statefile.parse import StateFileError, parse_state

LISTS = "incoming, pending_approval, approved, rejected, sent, failed"


def messages(status: str, *objects: dict) -> bytes:
    return json.dumps({"messages": {status: list(objects)}}).encode()


# (file, the first line of the refusal: "place: problem")
MALFORMED = {
    "empty file": (b"", "the file is empty: expected a JSON object"),
    "whitespace only": (b" \n\t\r\n ", "the file is empty: expected a JSON object"),
    "byte-order mark only": (b"\xef\xbb\xbf", "the file is empty: expected a JSON object"),
    "invalid UTF-8": (b'{"a": "caf\xe9"}', "line 1, column 11: not valid UTF-8"),
    "invalid UTF-8 on line 3": (b'{\n"a": 1,\n"b": "\xff"}', "line 3, column 7: not valid UTF-8"),
    "syntax error": (
        b'{\n  "session": {,\n}',
        "line 2, column 15: Expecting property name enclosed in double quotes",
    ),
    "trailing comma": (
        b'{"a": 1,}',
        "line 1, column 9: Expecting property name enclosed in double quotes",
    ),
    "cut short": (b'{"messages": {"incoming": [', "line 1, column 28: Expecting value"),
    "two documents": (b'{"x": 1} {"y": 2}', "line 1, column 10: Extra data"),
    "single quotes": (
        b"{'single': 1}",
        "line 1, column 2: Expecting property name enclosed in double quotes",
    ),
    "raw NUL byte": (b'{"a": "x\x00y"}', "line 1, column 9: Invalid control character"),
    "top level a list": (b"[]", "(top level): expected a JSON object at the top level"),
    "top level a string": (b'"state"', "(top level): expected a JSON object at the top level"),
    "NaN": (
        b'{"statistics": {"total_sent": NaN}}',
        "statistics.total_sent: NaN is not a JSON number",
    ),
    "Infinity": (b'{"x": [Infinity]}', "x[0]: Infinity is not a JSON number"),
    "-Infinity": (b'{"x": {"y": -Infinity}}', "x.y: -Infinity is not a JSON number"),
    "a float overflowing to infinity": (b'{"x": 1e400}', "x: a number too large to store"),
    "a number of 5000 digits": (
        b'{"x": ' + b"1" * 5000 + b"}",
        "line 1, column 7: a number with too many digits to read",
    ),
    "duplicate top-level key": (
        b'{"session": {}, "session": {}}',
        "session: the same key appears twice in one object",
    ),
    "duplicate key in a message": (
        messages("incoming", {"id": "a"})[:-4] + b', "body": "x", "body": "y"}]}}',
        "messages.incoming[0].body: the same key appears twice in one object",
    ),
    "duplicate key with an odd name": (
        b'{"messages": {"incoming": [{"id": "a", "odd key": 1, "odd key": 2}]}}',
        'messages.incoming[0]["odd key"]: the same key appears twice in one object',
    ),
    "NUL character in a body": (
        messages("incoming", {"id": "a", "body": "x\x00y"}),
        "messages.incoming[0].body: holds a NUL character (\\u0000), which cannot be stored",
    ),
    "NUL character in a key": (
        b'{"x": {"a\\u0000b": 1}}',
        'x["a\\u0000b"]: a key holds a NUL character (\\u0000), which cannot be stored',
    ),
    "lone surrogate": (
        b'{"account_info": {"name": "\\ud83d"}}',
        "account_info.name: holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode",
    ),
    "counter beyond 64 bits": (
        b'{"statistics": {"total_incoming": 18446744073709551616}}',
        "statistics.total_incoming: expected a whole number from 0 to 2^63-1 (a 64-bit counter)",
    ),
    "negative counter": (
        b'{"statistics": {"total_rejected": -1}}',
        "statistics.total_rejected: expected a whole number from 0 to 2^63-1 (a 64-bit counter)",
    ),
    "true as a counter": (
        b'{"statistics": {"total_sent": true}}',
        "statistics.total_sent: expected a whole number",
    ),
    "a float as a counter": (
        b'{"statistics": {"total_sent": 1.0}}',
        "statistics.total_sent: expected a whole number",
    ),
    "true as a poll interval": (
        b'{"watcher_config": {"poll_interval_seconds": true}}',
        "watcher_config.poll_interval_seconds: expected a whole number",
    ),
    "negative retry delay": (
        b'{"retry_config": {"retry_delay_seconds": -1}}',
        "retry_config.retry_delay_seconds: expected a number of 0 or more",
    ),
    "text as human_in_the_loop": (
        b'{"human_in_the_loop": "yes"}',
        "human_in_the_loop: expected true or false",
    ),
    "null api_endpoint": (b'{"api_endpoint": null}', "api_endpoint: expected a string"),
    "session a list": (b'{"session": []}', "session: expected an object"),
    "text as session.authenticated": (
        b'{"session": {"authenticated": "true"}}',
        "session.authenticated: expected true or false",
    ),
    "zero validation interval": (
        b'{"session": {"validation_interval_minutes": 0}}',
        "session.validation_interval_minutes: expected a positive whole number",
    ),
    "a number as account_info.number": (
        b'{"account_info": {"number": 923001234567}}',
        "account_info.number: expected a string or null",
    ),
    "metadata version a number": (
        b'{"metadata": {"version": 1}}',
        "metadata.version: expected a string or null",
    ),
    "messages a list": (b'{"messages": []}', "messages: expected an object of six lists"),
    "a list in messages that is not a status": (
        b'{"messages": {"incoming": [], "queued": []}}',
        f"messages.queued: not a status: the lists are {LISTS}",
    ),
    "a status list that is not a list": (
        b'{"messages": {"sent": {}}}',
        "messages.sent: expected a list of messages",
    ),
    "message not an object": (
        messages("sent", {"id": "a"}, "hello"),
        "messages.sent[1]: expected a message object",
    ),
    "message without an id": (
        messages("sent", {"id": "a"}, {"id": "b"}, {"id": "c"}, {"body": "no id"}),
        "messages.sent[3].id: missing: every message needs a string id",
    ),
    "message with a number as id": (
        messages("sent", {"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": 4}),
        "messages.sent[3].id: expected a string",
    ),
    "message with a null id": (
        messages("approved", {"id": None}),
        "messages.approved[0].id: expected a string",
    ),
    "message with an empty id": (
        messages("sent", {"id": ""}),
        "messages.sent[0].id: expected a non-empty string",
    ),
    "message with an id of 501 characters": (
        messages("sent", {"id": "x" * 501}),
        "messages.sent[0].id: longer than 500 characters",
    ),
    "message status not its list": (
        messages("sent", {"id": "a", "status": "approved"}),
        "messages.sent[0].status: is 'approved' but the message is in the 'sent' list",
    ),
    "isGroup as text": (
        messages("incoming", {"id": "a", "isGroup": "no"}),
        "messages.incoming[0].isGroup: expected true or false",
    ),
    "false as a timestamp": (
        messages("incoming", {"id": "a", "timestamp": False}),
        "messages.incoming[0].timestamp: expected a timestamp (text or epoch seconds) or null",
    ),
    "a list as recipient": (
        messages("pending_approval", {"id": "a", "recipient": ["923"]}),
        "messages.pending_approval[0].recipient: expected a string or null",
    ),
    "message_log an object": (b'{"message_log": {}}', "message_log: expected a list"),
    "message_log entry a number": (
        b'{"message_log": [1]}',
        "message_log[0]: expected a log entry object",
    ),
    "message_log entry with a numeric status": (
        b'{"message_log": [{"status": 200}]}',
        "message_log[0].status: expected a string or null",
    ),
    "legacy list an object": (b'{"incoming_messages": {}}', "incoming_messages: expected a list"),
    "absurd nesting": (
        b"[" * 100_000 + b"]" * 100_000,
        "line 1, column 65: nesting too deep (over 64 levels)",
    ),
    "deep nesting in an unknown key": (
        b'{"x": ' + b"[" * 70 + b"]" * 70 + b"}",
        "x" + "[0]" * 64 + ": nesting too deep (over 64 levels)",
    ),
}


def test_there_are_at_least_thirty_malformed_files():
    assert len(MALFORMED) >= 30


@pytest.fixture
def state_before(db, sample_bytes):
    """A used state (the sample, one approval): what a refused file must not touch."""
    statefile.import_bytes(sample_bytes, actor="setup", source=Source.COMMAND)
    draft = lifecycle.add_message({"id": "draft"}, Status.PENDING_APPROVAL, actor="a", source="api")
    lifecycle.approve(draft.message_id, actor="dana", source=Source.WEB)
    return statefile.export_bytes(), AuditEvent.objects.count()


def assert_unchanged(state_before) -> None:
    exported, events = state_before
    assert statefile.export_bytes() == exported
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("data, refusal", MALFORMED.values(), ids=MALFORMED.keys())
def test_import_refuses_a_malformed_file_naming_the_place(state_before, data, refusal):
    with pytest.raises(StateFileError) as caught:
        statefile.import_bytes(data, actor="tester", source=Source.COMMAND)
    assert str(caught.value).splitlines()[0] == refusal
    assert_unchanged(state_before)


@pytest.mark.parametrize("data, refusal", MALFORMED.values(), ids=MALFORMED.keys())
def test_import_command_refuses_a_malformed_file(state_before, tmp_path, data, refusal):
    path = tmp_path / "whatsapp_state.json"
    path.write_bytes(data)
    with pytest.raises(CommandError) as caught:
        call_command("import_state", str(path))
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path} refused, nothing changed:"
    assert lines[1] == refusal
    assert_unchanged(state_before)


def test_every_fault_of_a_file_is_named_not_only_the_first():
    data = json.dumps(
        {
            "human_in_the_loop": 1,
            "statistics": {"total_sent": "3"},
            "messages": {"sent": [{"id": 1}, {"id": "b", "isGroup": None}]},
        }
    ).encode()
    with pytest.raises(StateFileError) as caught:
        parse_state(data)
    assert caught.value.errors == [
        ("human_in_the_loop", "expected true or false"),
        ("statistics.total_sent", "expected a whole number"),
        ("messages.sent[0].id", "expected a string"),
        ("messages.sent[1].isGroup", "expected true or false"),
    ]


def test_a_refusal_with_many_faults_shows_twenty_and_counts_the_rest():
    data = messages("incoming", *({"id": i} for i in range(25)))
    with pytest.raises(StateFileError) as caught:
        parse_state(data)
    lines = str(caught.value).splitlines()
    assert len(caught.value.errors) == 25
    assert lines[:2] == [
        "messages.incoming[0].id: expected a string",
        "messages.incoming[1].id: expected a string",
    ]
    assert lines[-1] == "... and 5 more" and len(lines) == 21


# --- The same id twice ----------------------------------------------------------

DUPLICATES = json.dumps(
    {
        "messages": {
            "incoming": [{"id": "a", "body": "first a"}, {"id": "b"}, {"id": "c", "body": "c1"}],
            "pending_approval": [{"id": "c", "body": "c2"}],
            "sent": [{"id": "a", "body": "second a", "status": "sent"}, {"id": "c", "body": "c3"}],
        }
    },
    indent=2,
).encode()


def test_the_same_id_in_two_lists_is_refused_naming_every_id_and_its_lists(state_before):
    with pytest.raises(StateFileError) as caught:
        statefile.import_bytes(DUPLICATES, actor="tester", source=Source.COMMAND)
    assert caught.value.errors == [
        ("messages (incoming[0], sent[0])", "the id 'a' appears more than once"),
        (
            "messages (incoming[2], pending_approval[0], sent[1])",
            "the id 'c' appears more than once",
        ),
    ]
    assert_unchanged(state_before)


def test_the_same_id_twice_in_one_list_is_refused(db):
    with pytest.raises(StateFileError, match=r"messages \(sent\[0\], sent\[2\]\)"):
        statefile.import_bytes(
            messages("sent", {"id": "x"}, {"id": "y"}, {"id": "x"}),
            actor="tester",
            source=Source.COMMAND,
        )


def _bodies() -> dict[str, list[str]]:
    state = json.loads(statefile.export_bytes())
    return {
        name: [m.get("body", m["id"]) for m in items] for name, items in state["messages"].items()
    }


def test_keep_first_keeps_the_first_copy_in_file_order(db):
    summary = statefile.import_bytes(
        DUPLICATES, actor="tester", source=Source.COMMAND, on_duplicate="keep-first"
    )
    assert _bodies() == {
        "incoming": ["first a", "b", "c1"],
        "pending_approval": [],
        "sent": [],
    }
    assert summary.dropped_duplicates == ["a", "c"]
    event = AuditEvent.objects.filter(action="import").latest("pk")
    assert event.detail["duplicate_rule"] == "keep-first"
    assert event.detail["dropped_duplicates"] == ["a", "c"]


def test_keep_last_keeps_the_last_copy_in_file_order(db):
    statefile.import_bytes(
        DUPLICATES, actor="tester", source=Source.COMMAND, on_duplicate="keep-last"
    )
    assert _bodies() == {"incoming": ["b"], "pending_approval": [], "sent": ["second a", "c3"]}


def test_an_unknown_duplicate_rule_is_refused(db):
    with pytest.raises(ValueError, match="on_duplicate must be one of refuse, keep-first"):
        statefile.import_bytes(b"{}", actor="t", source=Source.COMMAND, on_duplicate="newest")


def test_import_command_refuses_duplicates_unless_a_rule_is_chosen(state_before, tmp_path):
    path = tmp_path / "dup.json"
    path.write_bytes(DUPLICATES)
    with pytest.raises(CommandError) as caught:
        call_command("import_state", str(path))
    assert "messages (incoming[0], sent[0]): the id 'a' appears more than once" in str(caught.value)
    assert_unchanged(state_before)
    out = _run_import(str(path), "--duplicates", "keep-last")
    assert "Kept one copy (keep-last) of: a, c" in out
    assert _bodies()["sent"] == ["second a", "c3"]


def _run_import(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("import_state", *args, stdout=out)
    return out.getvalue()
