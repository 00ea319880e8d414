"""The import reads a file in pieces: the same refusals at the same places as reading
it whole, whatever the pieces' size; what it stores exactly what json.loads gives; a
file of junk refused by its limit before it is built; memory held to a fraction of
the file (tracemalloc, as a ratio to the file's size)."""

from __future__ import annotations

import io
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from statecore import statefile
from statecore.models import AuditEvent, Message, Source
from statecore.statefile import parse, stream
from statecore.statefile.parse import StateFileError
from tests.benchmarks.generate import generate_state
from tests.test_statefile_malformed import (  # noqa: F401 - a fixture
    MALFORMED,
    assert_unchanged,
    state_before,
)

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = sorted(DATA.glob("*.json"))
WHO = {"actor": "tester", "source": Source.COMMAND}
OUTSIDE = "more than 100,000 JSON objects and lists outside the messages and the message_log"
INSIDE = "more than 1,000 JSON objects and lists inside one {}"


def canonical(state: dict) -> bytes:
    return json.dumps(state, indent=2, ensure_ascii=False).encode("utf-8")


@pytest.fixture(params=[1, 64], ids=["1-byte pieces", "64-byte pieces"])
def tiny_pieces(request, monkeypatch):
    """Pieces so small that every key, string, number and message crosses their ends."""
    monkeypatch.setattr(stream, "CHUNK_BYTES", request.param)


def refusal(data: bytes) -> str:
    with pytest.raises(StateFileError) as caught:
        statefile.parse_state(data)
    return str(caught.value).splitlines()[0]


# --- The same refusals, whatever the pieces ---------------------------------------------


@pytest.mark.parametrize("data, expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_every_malformed_file_is_refused_at_its_place_across_tiny_pieces(
    tiny_pieces, data, expected
):
    assert refusal(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # The fault the whole text's reading meets first: bad UTF-8 anywhere before syntax.
        (b'{"a": tru, "b": "' + b"x" * 200 + b'\xff"}', "line 1, column 218: not valid UTF-8"),
        (
            b'{"messages": {"sent": [{"id": 1}]}, "x": "' + b"x" * 200 + b'\xff"}',
            "line 1, column 243: not valid UTF-8",
        ),
        # A syntax fault comes before every fault of types, wherever they are.
        (b'\xef\xbb\xbf{"a": "\xff"}', "line 1, column 9: not valid UTF-8"),
        ("\u00a0\u2003".encode(), "the file is empty: expected a JSON object"),
    ],
)
def test_faults_keep_their_order_and_places_across_tiny_pieces(tiny_pieces, data, expected):
    assert refusal(data) == expected


SYNTAX = [
    b'{"human_in_the_loop": 1, "x": [1 2]}',
    b'{"a": "line\nbreak"}',
    b'{"a": 1}}',
    b'{"a" 1}',
    b'{"messages": {"sent": [{"id": "a"} {"id": "b"}]}}',
    b'{"messages": {"sent": [{"id": "a"},]}}',
    b'{"messages": {"sent": [{"id": "a"}',
    b'{"messages": {"sent": [{"id": "a", "n": 1.}]}}',
    b'{"messages": {"sent": [{"id": "a", "n": tru}]}}',
    b'{"messages": {"sent": [{"id": "a\\u12"}]}}',
    b'{"message_log": [{"status": "sent\\x"}]}',
    b'{"messages": {"sent": []} "x": 1}',
    b'{"messages": {"sent" []}}',
    b'{"messages": {1: []}}',
    '{"a": "\\\U0001f44d"}'.encode(),  # a backslash before an emoji escapes nothing
    b'{"a": [1, 2',
    b'{"a": "unterminated',
]


@pytest.mark.parametrize("data", SYNTAX)
def test_syntax_faults_are_named_as_json_loads_names_them_across_tiny_pieces(tiny_pieces, data):
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(data.decode("utf-8"))
    fault = reference.value
    expected = f"line {fault.lineno}, column {fault.colno}: {fault.msg.removesuffix(' at')}"
    assert refusal(data) == expected


def test_a_key_twice_is_named_before_the_faults_of_values():
    data = b'{"human_in_the_loop": 1, "messages": {"sent": [], "sent": [{"id": 2}]}, "human_in_the_loop": true}'
    with pytest.raises(StateFileError) as caught:
        statefile.parse_state(data)
    assert caught.value.errors == [
        ("human_in_the_loop", "the same key appears twice in one object"),
        ("human_in_the_loop", "expected true or false"),
        ("messages.sent", "the same key appears twice in one object"),
        ("messages.sent[0].id", "expected a string"),
    ]


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_files_read_as_json_loads_reads_them_across_tiny_pieces(tiny_pieces, path):
    data = path.read_bytes()
    state = statefile.parse_state(data)
    assert state == json.loads(data)
    assert canonical(state) == data  # key order and numbers as they were


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_files_come_back_byte_for_byte_across_tiny_pieces(db, tiny_pieces, path):
    data = path.read_bytes()
    statefile.import_bytes(data, **WHO)
    assert statefile.export_bytes() == data


def test_numbers_are_what_json_loads_makes_of_them(db, tiny_pieces):
    data = b'{"x": [1e5, 1E+5, 1.50, -0, 2e-3, 12345678901234567890, 0.1], "messages": {"sent": [{"id": "a", "n": 1e5, "f": 1.0}]}}'
    statefile.import_bytes(data, **WHO)
    assert json.loads(statefile.export_bytes()) == json.loads(data)
    assert statefile.export_bytes() == canonical(json.loads(data))
    assert '"n": 100000.0' in statefile.export_bytes().decode()


def test_a_message_larger_than_a_piece_reads_whole(db, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK_BYTES", 1024)
    body = "é👍" * 40_000  # about 240 KB of UTF-8: many pieces
    data = canonical({"messages": {"incoming": [{"id": "a", "body": body}, {"id": "b"}]}})
    statefile.import_bytes(data, **WHO)
    assert statefile.export_bytes() == data


def test_messages_larger_than_the_window_are_held_a_few_at_a_time(db, tmp_path):
    """Measured: about 9 MB (a batch of 2 MB of JSON, as rows) for 20 or 60 messages of
    200,000 characters alike (three windows of 64 KiB each)."""
    body = "x" * 200_000
    peaks, sizes = [], []
    for count in (20, 60):
        path = tmp_path / f"large-{count}.json"
        items = [{"id": f"m{i}", "body": body} for i in range(count)]
        path.write_bytes(canonical({"messages": {"incoming": items}}))
        sizes.append(path.stat().st_size)
        peaks.append(peak_ratio(lambda p=path: statefile.import_path(p, **WHO), 1))
        assert statefile.export_bytes() == path.read_bytes()
    # Holding the messages would add the 8 MB between the files; a batch adds none.
    assert peaks[1] - peaks[0] < 0.2 * (sizes[1] - sizes[0]), peaks
    assert peaks[1] / sizes[1] < 1.0


def test_a_refusal_keeps_a_thousand_faults_and_counts_them_all():
    data = b'{"message_log": [' + b",".join([b"1"] * 5000) + b"]}"
    with pytest.raises(StateFileError) as caught:
        statefile.parse_state(data)
    assert len(caught.value.errors) == 1000
    assert caught.value.total == 5000
    assert str(caught.value).splitlines()[-1] == "... and 4980 more"


# --- Limits on containers ---------------------------------------------------------------


def junk(size: int) -> bytes:
    """`size` bytes of empty lists under an unknown key."""
    count = (size - 12) // 3
    return b'{"junk": [' + b"[]," * count + b"[]]}"


@pytest.mark.parametrize(
    ("data", "place", "problem"),
    [
        (
            b'{"junk": [' + b"{}," * 100_000 + b"[]]}",
            "junk",
            OUTSIDE,
        ),
        (
            b'{"a": [' + b"[]," * 60_000 + b'[]], "b": [' + b"[]," * 60_000 + b"[]]}",
            "b",
            OUTSIDE,
        ),
        (b"[" + b"[]," * 100_000 + b"[]]", "(top level)", OUTSIDE),
        (
            b'{"messages": {"sent": [{"id": "a", "x": [' + b"[]," * 1000 + b"[]]}]}}",
            "messages.sent[0]",
            INSIDE.format("message"),
        ),
        (
            b'{"message_log": [{}, {"x": [' + b"[]," * 1000 + b"[]]}]}",
            "message_log[1]",
            INSIDE.format("log entry"),
        ),
    ],
    ids=[
        "in an unknown key",
        "over two keys",
        "a list at the top",
        "in a message",
        "in a log entry",
    ],
)
def test_containers_over_the_limit_are_refused_naming_where(
    db,
    state_before,  # noqa: F811
    data,
    place,
    problem,  # noqa: F811
):
    with pytest.raises(StateFileError) as caught:
        statefile.import_bytes(data, **WHO)
    [(where, text)] = caught.value.errors
    assert where == place
    assert text.startswith(problem) and "README" in text
    assert_unchanged(state_before)


@pytest.mark.parametrize("pieces", [3, 1 << 20], ids=["tiny pieces", "the usual pieces"])
def test_a_message_at_the_limit_is_read_and_one_more_is_refused(db, monkeypatch, pieces):
    monkeypatch.setattr(stream, "CHUNK_BYTES", pieces)

    def message(nested: int) -> bytes:
        return canonical(
            {"messages": {"sent": [{"id": "a", "x": [[] for _ in range(nested - 1)]}]}}
        )

    statefile.import_bytes(message(1000), **WHO)
    assert json.loads(Message.objects.get().raw)["x"] == [[]] * 999
    with pytest.raises(StateFileError, match=r"messages.sent\[0\]: more than 1,000 JSON"):
        statefile.import_bytes(message(1001), **WHO)


def test_settings_at_the_limit_are_read(db):
    state = {"x": [[] for _ in range(99_999)]}  # the list itself is the 100,000th
    statefile.import_bytes(canonical(state), **WHO)
    assert statefile.export_bytes() == canonical(state)


def peak_ratio(run, size: int) -> float:
    tracemalloc.start()
    try:
        run()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / size


def test_a_file_of_junk_is_refused_by_its_limit_holding_a_tenth_of_it(db, tmp_path):
    path = tmp_path / "junk.json"
    path.write_bytes(junk(30 * 1024 * 1024))
    size = path.stat().st_size

    def run():
        with pytest.raises(StateFileError) as caught:
            statefile.import_path(path, **WHO)
        assert caught.value.errors[0][0] == "junk"
        assert OUTSIDE in caught.value.errors[0][1]

    assert peak_ratio(run, size) < 0.1
    assert not Message.objects.exists() and not AuditEvent.objects.exists()


def test_a_message_of_junk_is_refused_by_its_limit_holding_a_tenth_of_it(db, tmp_path):
    path = tmp_path / "junk.json"
    with path.open("wb") as file:
        file.write(b'{"messages": {"incoming": [{"id": "a", "junk": [')
        file.write(b"[]," * 7_000_000 + b"[]]}]}}")
    size = path.stat().st_size

    def run():
        with pytest.raises(StateFileError, match=r"messages.incoming\[0\]: more than 1,000"):
            statefile.import_path(path, **WHO)

    assert peak_ratio(run, size) < 0.1


def test_an_imports_memory_does_not_grow_with_the_file(db, tmp_path):
    """Measured: a peak of about 9 MB (a batch of rows, the pieces, the id hashes) at
    10,000, 20,000 and 40,000 messages alike: 0.65x a file of 14 MB, where reading the
    whole file held 4.3x. At 1,000,000 the id hashes add 8 bytes a message."""
    peaks, sizes = [], []
    for n in (20_000, 40_000):
        path = tmp_path / f"state-{n}.json"
        path.write_bytes(canonical(generate_state(n, seed=3)))
        sizes.append(path.stat().st_size)
        peaks.append(peak_ratio(lambda p=path: statefile.import_path(p, **WHO), 1))
        assert Message.objects.count() == n and statefile.export_bytes() == path.read_bytes()
    assert peaks[1] - peaks[0] < 0.1 * (sizes[1] - sizes[0]), peaks
    assert peaks[1] / sizes[1] <= 1.0, f"peak {peaks[1] / sizes[1]:.2f}x the file"


# --- Standard input ---------------------------------------------------------------------


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def _spools() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("import_state-*")}


def test_standard_input_is_spooled_and_imported(db, monkeypatch, sample_bytes):
    before = _spools()
    data = sample_bytes + b" " * (3 * 1024 * 1024)  # more than one piece of the copy
    monkeypatch.setattr(sys, "stdin", _Stdin(data))
    out = io.StringIO()
    call_command("import_state", "-", stdout=out)
    assert out.getvalue().startswith("Imported -: ")
    assert statefile.export_bytes() == sample_bytes
    assert _spools() == before


def test_a_refused_standard_input_changes_nothing_and_leaves_no_spool(
    state_before,  # noqa: F811
    monkeypatch,
):
    before = _spools()
    monkeypatch.setattr(sys, "stdin", _Stdin(b'{"messages": {"sent": [{"id": 1}]}}'))
    with pytest.raises(CommandError) as caught:
        call_command("import_state", "-")
    assert str(caught.value).splitlines() == [
        "- refused, nothing changed:",
        "messages.sent[0].id: expected a string",
    ]
    assert_unchanged(state_before)
    assert _spools() == before


def test_the_check_reads_the_file_once_and_the_import_twice(db, monkeypatch, sample_bytes):
    opened: list[str] = []

    def opener():
        opened.append("open")
        return io.BytesIO(sample_bytes)

    parse.check_file(opener)
    assert opened == ["open"]
    statefile.import_file(opener, **WHO)
    assert opened == ["open"] * 3


def test_ids_whose_hashes_meet_are_compared_as_ids(db, monkeypatch, sample_bytes):
    monkeypatch.setattr(parse, "hash", lambda text: 7, raising=False)  # every id collides
    summary = statefile.import_bytes(sample_bytes, **WHO)
    assert summary.dropped_duplicates == []
    assert statefile.export_bytes() == sample_bytes
    with pytest.raises(StateFileError, match=r"messages \(sent\[0\], sent\[1\]\): the id 'x'"):
        statefile.import_bytes(
            canonical({"messages": {"sent": [{"id": "x"}, {"id": "x"}, {"id": "y"}]}}), **WHO
        )


def test_a_file_replaced_between_the_check_and_the_insert_is_not_read(
    db, monkeypatch, tmp_path, sample_bytes
):
    from statecore.statefile import importing

    path = tmp_path / "whatsapp_state.json"
    path.write_bytes(sample_bytes)
    newer = tmp_path / "newer.json"
    newer.write_bytes(b'{"messages": {"sent": [{"id": 5}]}}')  # never checked
    real_check = importing.check_file

    def check_then_replace(open_stream):
        checked = real_check(open_stream)
        newer.replace(path)  # as the scripts write their file: a rename over it
        return checked

    monkeypatch.setattr(importing, "check_file", check_then_replace)
    statefile.import_path(path, **WHO)
    assert statefile.export_bytes() == sample_bytes
