"""`manage.py export_corrections` and `StateManager.corrections`: the dataset the
assistant learns from, checked line by line against a history built by hand."""

from __future__ import annotations

import inspect
import io
import json
import stat
import warnings
from datetime import datetime

import pytest
from django.core.management import CommandError, call_command

from statecore import clock, learning, lifecycle
from statecore.models import Source, Status
from statecore.state_manager import StateManager
from tests.factories import make_incoming, make_reply
from tests.test_learning import Clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def at(monkeypatch) -> Clock:
    moment = Clock()
    monkeypatch.setattr(clock, "now", moment)
    return moment


WEB = {"source": Source.WEB}
CHAT = "923001230001"


def say(clock: Clock, seconds: int, mid: str, text: str, *, chat: str = CHAT):
    clock.days_ago(2, seconds)
    return make_incoming(number=chat, id=mid, body=text, name="Ayesha")


def drafted(clock: Clock, seconds: int, incoming, text: str) -> str:
    clock.days_ago(2, seconds)
    return make_reply(incoming=incoming, body=text).message_id


def build_conversation(clock: Clock) -> None:
    """An older chat (10 days ago), then one of three turns two days ago: a draft approved
    as drafted and sent, one edited and sent, one rejected with a reason."""
    clock.days_ago(10)
    old = make_incoming(number="923001230002", id="in0", body="Old question")
    lifecycle.approve(make_reply(incoming=old, body="Old answer").message_id, actor="sam", **WEB)
    c1 = say(clock, 0, "in1", "Hi")
    r1 = drafted(clock, 30, c1, "Hello! How can I help?")
    clock.days_ago(2, 60)
    lifecycle.approve(r1, actor="dana", **WEB)
    clock.days_ago(2, 90)
    lifecycle.mark_sent(r1, actor="sender", source=Source.WORKER)
    pending = drafted(clock, 210, say(clock, 200, "in4", "Hello?"), "Still here")
    clock.days_ago(2, 220)
    lifecycle.approve(pending, actor="dana", **WEB)
    lifecycle.undo(pending, actor="dana", **WEB)  # pending again: no line, not in the context
    c2 = say(clock, 300, "in2", "Price of the blue shirt?")
    r2 = drafted(clock, 330, c2, "It costs 20.")
    clock.days_ago(2, 360)
    lifecycle.edit_and_approve(r2, "It costs 25 dollars.", actor="sam", **WEB)
    clock.days_ago(2, 400)
    lifecycle.mark_sent(r2, actor="sender", source=Source.WORKER)
    c3 = say(clock, 600, "in3", "Too expensive 😞")
    r3 = drafted(clock, 630, c3, "OK bye")
    clock.days_ago(2, 660)
    lifecycle.reject(r3, actor="dana", reason="Rude", **WEB)
    clock.days_ago(0)


# Exact lines, newest first.
R3 = (
    '{"draft_id": "reply_in3", "chat": "923001230001", "customer_message": {"id": "in3", '
    '"text": "Too expensive 😞", "at": "2026-11-23T10:40:00"}, "context": ['
    '{"direction": "in", "text": "Hi", "at": "2026-11-23T10:30:00"}, '
    '{"direction": "out", "text": "Hello! How can I help?", "at": "2026-11-23T10:30:30"}, '
    '{"direction": "in", "text": "Hello?", "at": "2026-11-23T10:33:20"}, '
    '{"direction": "in", "text": "Price of the blue shirt?", "at": "2026-11-23T10:35:00"}, '
    '{"direction": "out", "text": "It costs 25 dollars.", "at": "2026-11-23T10:35:30"}], '
    '"draft": "OK bye", "final": null, "outcome": "rejected", "reason": "Rude", '
    '"edit_distance": null, "decided_by": "dana", "decided_at": "2026-11-23T10:41:00"}\n'
)
R2 = (
    '{"draft_id": "reply_in2", "chat": "923001230001", "customer_message": {"id": "in2", '
    '"text": "Price of the blue shirt?", "at": "2026-11-23T10:35:00"}, "context": ['
    '{"direction": "in", "text": "Hi", "at": "2026-11-23T10:30:00"}, '
    '{"direction": "out", "text": "Hello! How can I help?", "at": "2026-11-23T10:30:30"}, '
    '{"direction": "in", "text": "Hello?", "at": "2026-11-23T10:33:20"}], '
    '"draft": "It costs 20.", "final": "It costs 25 dollars.", "outcome": "edited", '
    '"reason": null, "edit_distance": 9, "decided_by": "sam", '
    '"decided_at": "2026-11-23T10:36:00"}\n'
)
R1 = (
    '{"draft_id": "reply_in1", "chat": "923001230001", "customer_message": {"id": "in1", '
    '"text": "Hi", "at": "2026-11-23T10:30:00"}, "context": [], '
    '"draft": "Hello! How can I help?", "final": "Hello! How can I help?", '
    '"outcome": "approved_as_drafted", "reason": null, "edit_distance": 0, '
    '"decided_by": "dana", "decided_at": "2026-11-23T10:31:00"}\n'
)
R0 = (
    '{"draft_id": "reply_in0", "chat": "923001230002", "customer_message": {"id": "in0", '
    '"text": "Old question", "at": "2026-11-15T10:30:00"}, "context": [], '
    '"draft": "Old answer", "final": "Old answer", "outcome": "approved_as_drafted", '
    '"reason": null, "edit_distance": 0, "decided_by": "sam", '
    '"decided_at": "2026-11-15T10:30:00"}\n'
)


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("export_corrections", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_export_is_one_exact_line_per_decided_draft_newest_first(at):
    build_conversation(at)
    assert export().splitlines(keepends=True) == [R3, R2, R1, R0]
    assert export("-") == R3 + R2 + R1 + R0


def test_the_context_is_bounded_to_the_turns_asked_oldest_first(at):
    build_conversation(at)
    first = json.loads(export("--turns", "2").splitlines()[0])
    assert [turn["text"] for turn in first["context"]] == [
        "Price of the blue shirt?",
        "It costs 25 dollars.",
    ]
    assert json.loads(export("--turns", "0").splitlines()[0])["context"] == []


@pytest.mark.parametrize(
    ("since", "lines"),
    [
        ("2026-11-15", [R3, R2, R1, R0]),
        ("2026-11-16", [R3, R2, R1]),
        ("2026-11-23T10:36", [R3, R2]),
        ("2026-11-23T10:41:01", []),
    ],
)
def test_since_keeps_the_drafts_decided_from_that_day_or_moment(at, since, lines):
    build_conversation(at)
    assert export("--since", since).splitlines(keepends=True) == lines


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "2026-11-31", ""])
def test_a_bad_since_names_the_option(at, bad):
    with pytest.raises(CommandError, match=r"^--since: .* is not a date; give YYYY-MM-DD"):
        export("--since", bad)


@pytest.mark.parametrize("turns", ["-1", str(learning.MAX_TURNS + 1)])
def test_turns_out_of_range_names_the_option(at, turns):
    with pytest.raises(CommandError, match=r"^--turns: give 0 to 50"):
        export("--turns", turns)


def test_the_export_to_a_file_holds_the_same_lines_readable_by_its_owner_only(at, tmp_path):
    build_conversation(at)
    target = tmp_path / "corrections.jsonl"
    err = io.StringIO()
    call_command("export_corrections", str(target), stdout=io.StringIO(), stderr=err)
    assert target.read_text(encoding="utf-8") == R3 + R2 + R1 + R0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert f"4 corrections written to {target}" in err.getvalue()


def test_an_unwritable_file_is_a_command_error_and_nothing_is_left(at, tmp_path):
    build_conversation(at)
    with pytest.raises(CommandError, match="export failed, nothing written to"):
        export(str(tmp_path / "missing" / "corrections.jsonl"))
    assert not (tmp_path / "missing").exists()


def test_a_line_break_unicode_knows_is_escaped_so_each_line_stays_one(at):
    at.days_ago(1)
    reply = make_reply(body="one\u2028two")
    lifecycle.approve(reply.message_id, actor="dana", **WEB)
    at.days_ago(0)
    text = export()
    assert len(text.splitlines()) == 1 and "\\u2028" in text
    assert json.loads(text)["final"] == "one\u2028two"


def test_a_draft_no_longer_stored_has_no_line(at):
    build_conversation(at)
    lifecycle.clear_list(Status.REJECTED, actor="t", **WEB)
    assert export().splitlines(keepends=True) == [R2, R1, R0]


# --- The Python API ---------------------------------------------------------------------


def test_the_api_gives_the_commands_lines_as_dicts(at):
    build_conversation(at)
    manager = StateManager(actor="assistant")
    lines = [json.loads(line) for line in export().splitlines()]
    assert manager.corrections() == lines
    assert manager.corrections(limit=2) == lines[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a naive time is local, not a RuntimeWarning
        assert manager.corrections(since=datetime(2026, 11, 16)) == lines[:3]
    assert manager.corrections(turns=1)[0]["context"] == [
        {"direction": "out", "text": "It costs 25 dollars.", "at": "2026-11-23T10:35:30"}
    ]


def test_the_api_reads_one_query_plus_one_per_correction(at, django_assert_num_queries):
    build_conversation(at)
    assert inspect.isgenerator(learning.corrections())  # streams, never a list of all
    with django_assert_num_queries(1 + 2):
        learning_list = list(learning.corrections(limit=2))
    assert len(learning_list) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"since": "2026-11-01"}, "since: expected a datetime or None"),
        ({"limit": -1}, "limit: expected a whole number >= 0 or None"),
        ({"limit": True}, "limit: expected a whole number >= 0 or None"),
        ({"turns": 51}, "turns: expected a whole number 0 to 50"),
        ({"turns": 2.0}, "turns: expected a whole number 0 to 50"),
    ],
)
def test_the_api_refuses_bad_arguments_naming_them(db, kwargs, error):
    with pytest.raises(ValueError, match=f"^{error}"):
        StateManager(actor="assistant").corrections(**kwargs)
