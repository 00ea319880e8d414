"""parse_state on files holding characters beyond U+FFFF (emoji): the text is
read through JSON escape pairs to keep its memory small (see the benchmark's
import peak memory), which must change neither what is read nor the places
named for a fault."""

from __future__ import annotations

import json

import pytest

from statecore.statefile.parse import StateFileError, parse_state

GOOD = [
    '{"messages": {"incoming": [{"id": "a", "body": "hi 👍 𝔘𝔫𝔦 👨\u200d👩\u200d👧"}]}}',
    '\ufeff{"messages": {"incoming": [{"id": "a", "body": "🎉"}]}}',
    '{"a": "\\ud83c\\udf89 already escaped, and 🎉 raw", "b": ["🧣", {"🔑": "ok"}]}',
]


@pytest.mark.parametrize("text", GOOD)
def test_a_file_with_emoji_reads_as_plain_json_reads_it(text):
    data = text.encode("utf-8")
    assert parse_state(data) == json.loads(text.removeprefix("\ufeff"))


@pytest.mark.parametrize(
    ("data", "place", "problem"),
    [
        ('{"a": "🎉🎉🎉", "b": tru}'.encode(), "line 1, column 19", "Expecting value"),
        ('{"x": 1,\n "a": "🎉", "b": }'.encode(), "line 2, column 17", "Expecting value"),
        ('{"a": "🎉", "b": "'.encode() + b'\xff"}', "line 1, column 18", "not valid UTF-8"),
        (b'{"a": "\xf0\x80\x80\x80 \xf0\x9f\x8e\x89"}', "line 1, column 8", "not valid UTF-8"),
        (b'{"a": "\xf4\x90\x80\x80 \xf0\x9f\x8e\x89"}', "line 1, column 8", "not valid UTF-8"),
    ],
)
def test_a_fault_after_an_emoji_is_placed_exactly(data, place, problem):
    with pytest.raises(StateFileError) as refused:
        parse_state(data)
    assert refused.value.errors == [(place, problem)]


@pytest.mark.parametrize(
    ("escape", "problem"),
    [("\\u0000", "NUL character"), ("\\ud800", "lone surrogate")],
)
def test_unstorable_escapes_are_still_refused_beside_emoji(escape, problem):
    data = f'{{"messages": {{"incoming": [{{"id": "a", "body": "{escape} 🎉"}}]}}}}'.encode()
    with pytest.raises(StateFileError) as refused:
        parse_state(data)
    [(place, text)] = refused.value.errors
    assert place == "messages.incoming[0].body"
    assert problem in text
