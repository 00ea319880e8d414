"""Strict reading of a state file: every fault refused with the place it is at.

Strict JSON only (no NaN/Infinity, no key twice, no NUL character), and the
types of STATE_FORMAT.md at every level. Missing keys are not wrong.

A file is checked in one pass over its text (`check_file`, reading it in pieces
through `stream`), holding one message at a time: the import then reads it again
to insert (`items`), so memory does not grow with the file.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..models import Status
from . import stream
from .rules import (
    LOG_RULES,
    MAX_DEPTH,
    JSONConstant,
    _unstorable,
    _Walker,
    check_json,
    join,
)

MAX_ERRORS_SHOWN = 20
MAX_ERRORS_KEPT = 1000  # a file of a million wrong values need not hold them all
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")
_LONG_NUMBER = re.compile(r"\d{4301,}")  # Python reads at most 4,300 digits


class StateFileError(ValueError):
    """A refused file. `errors` is a list of (place, problem); `total` counts them
    all where only the first MAX_ERRORS_KEPT were kept."""

    def __init__(self, errors: list[tuple[str, str]], total: int | None = None) -> None:
        self.errors = errors
        self.total = len(errors) if total is None else total
        lines = [
            f"{place}: {problem}" if place else problem
            for place, problem in errors[:MAX_ERRORS_SHOWN]
        ]
        if self.total > MAX_ERRORS_SHOWN:
            lines.append(f"... and {self.total - MAX_ERRORS_SHOWN} more")
        super().__init__("\n".join(lines))


def parse_state(data: bytes | str) -> dict:
    """The state in `data`, or StateFileError naming every fault's place (the whole
    state in memory: check_file reads a file in pieces and holds one message)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return check_file(lambda: io.BytesIO(data), collect=True).state


def parse_json(data: bytes) -> object:
    """Any JSON document read as strictly as a state file (a request body): bad UTF-8,
    NaN, a key twice, nesting over MAX_DEPTH, a NUL or a lone surrogate raise
    StateFileError naming the place, but no state-file types are asked for."""
    return _parse_bytes(data, check=check_json)


def _parse_bytes(data: bytes | str, check=check_json) -> dict:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = data[: exc.start].decode("utf-8", errors="replace")
            place = _place(before, len(before))
            raise StateFileError([(place, "not valid UTF-8")]) from None
    else:
        text = data
    return _parse_text(text, check=check)


def _parse_text(text: str, check_text: bool | None = None, check=check_json) -> dict:
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise StateFileError([("", "the file is empty: expected a JSON object")])
    try:
        state = json.loads(text, object_pairs_hook=stream._pairs_hook, parse_constant=JSONConstant)
    except json.JSONDecodeError as exc:
        problem = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise StateFileError([(f"line {exc.lineno}, column {exc.colno}", problem)]) from None
    except RecursionError:
        place = _place(text, stream.too_deep_at(text))
        raise StateFileError([(place, f"nesting too deep (over {MAX_DEPTH} levels)")]) from None
    except ValueError:  # an integer of more digits than Python converts
        long_number = _LONG_NUMBER.search(text)
        place = _place(text, long_number.start() if long_number else None)
        raise StateFileError([(place, "a number with too many digits to read")]) from None
    # Only an escape can put a NUL or a lone surrogate in a string (raw control
    # characters are a syntax error), so the strings are searched only then.
    if check_text is None:
        check_text = _UNSTORABLE_ESCAPE.search(text) is not None
    errors = check(state, check_text=check_text)
    if errors:
        raise StateFileError(errors)
    return state


def _place(text: str, index: int | None) -> str:
    if index is None:
        return ""
    line = text.count("\n", 0, index) + 1
    column = index - text.rfind("\n", 0, index)
    return f"line {line}, column {column}"


Opener = Callable[[], BinaryIO]


@dataclass
class CheckedFile:
    """What the check of a valid file learnt: its top-level values in file order
    (`messages` as {list: []}, `message_log` as []), the counts of state_counts,
    every id found more than once with its places (list, index), and (`collect`)
    the whole state."""

    skeleton: dict = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    state: dict | None = None


def check_file(open_stream: Opener, *, collect: bool = False) -> CheckedFile:
    """Check the file `open_stream()` gives, in one pass of small pieces; the same
    faults at the same places as reading it whole. StateFileError on any fault.

    Ids are compared by their hash during the pass (a small int per message, not the
    id); only if two hashes meet is the file read once more for the ids themselves."""
    checker = _Checker(collect=collect)
    with open_stream() as source:
        _walk(stream.Reader(source), checker.handle)
    if checker.errors.total:
        raise StateFileError(list(checker.errors), checker.errors.total)
    checked = CheckedFile(skeleton=checker.skeleton, counts=checker.counts)
    if checker.twice:
        checked.duplicates = _places_of_ids(open_stream, checker.twice)
    if collect:
        checked.state = checker.skeleton
    return checked


def items(open_stream: Opener) -> Iterator[tuple]:
    """The messages ((MESSAGE, list, index, obj, _)) and log entries ((ENTRY, index,
    obj, _)) of a checked file, in file order, one at a time."""
    with open_stream() as source:
        try:
            for event in stream.Reader(source, check_text=False).events():
                if event[0] in (stream.MESSAGE, stream.ENTRY):
                    yield event
        except stream.Fault as fault:  # the file changed since it was checked
            raise StateFileError([(fault.place, fault.problem)]) from None


def _walk(reader: stream.Reader, handle: Callable[[tuple], None]) -> None:
    try:
        for event in reader.events():
            handle(event)
    except stream.Fault as fault:
        if fault.utf8_first:
            try:
                reader.drain()
            except stream.Fault as utf8:
                fault = utf8
        raise StateFileError([(fault.place, fault.problem)]) from None


def _places_of_ids(open_stream: Opener, hashes: set[int]) -> dict[str, list[tuple[str, int]]]:
    places: dict[str, list[tuple[str, int]]] = {}
    for event in items(open_stream):
        if event[0] == stream.MESSAGE:
            _, name, index, obj, _ = event
            mid = obj["id"]
            if hash(mid) in hashes:
                places.setdefault(mid, []).append((name, index))
    return {mid: where for mid, where in places.items() if len(where) > 1}


def duplicate_faults(checked: CheckedFile, advice: str = "") -> list[tuple[str, str]]:
    """The refusal of ids found more than once: each id with every place it is at."""
    return [
        (
            f"messages ({', '.join(f'{name}[{index}]' for name, index in places)})",
            f"the id {mid!r} appears more than once{advice}",
        )
        for mid, places in checked.duplicates.items()
    ]


class _Faults(list):
    """The faults found, the first MAX_ERRORS_KEPT kept, all counted."""

    total = 0

    def append(self, fault: tuple[str, str]) -> None:
        self.total += 1
        if len(self) < MAX_ERRORS_KEPT:
            super().append(fault)

    def insert(self, index: int, fault: tuple[str, str]) -> None:
        self.total += 1
        super().insert(index, fault)
        if len(self) > MAX_ERRORS_KEPT:
            self.pop()


class _Checker:
    """The walk's events checked by the rules' walker, in the order reading the
    whole state would name them (an object's key faults before its values')."""

    def __init__(self, *, collect: bool) -> None:
        self.errors = _Faults()
        self.walker = _Walker(self.errors, check_text=False)
        self.collect = collect
        self.skeleton: dict = {}
        self.counts = {status: 0 for status in Status.values} | {"message_log": 0}
        self.hashes: set[int] = set()
        self.twice: set[int] = set()
        self._keys_seen: dict[str, set[str]] = {"": set(), "messages": set()}
        self._head = {"": 0, "messages": 0}  # where an object's next key fault goes
        self._collecting: list = []
        self._list_path = ""

    def handle(self, event: tuple) -> None:
        getattr(self, "_" + event[0].replace("-", "_"))(*event[1:])

    def _key(self, path: str, key: str) -> None:
        seen = self._keys_seen[path]
        if key in seen:
            self._key_fault(path, join(path, key), "the same key appears twice in one object")
        problem = _unstorable(key)
        if problem:
            self._key_fault(path, join(path, key), f"a key {problem}")
        seen.add(key)
        if path:
            self._list_path = join(path, key)
            self._collecting = self.skeleton["messages"][key] = []
        elif key == "messages":
            self.skeleton[key] = {}
            self._keys_seen["messages"] = set()
            self._head["messages"] = len(self.errors)
        elif key == "message_log":
            self._collecting = self.skeleton[key] = []

    def _key_fault(self, path: str, place: str, problem: str) -> None:
        self.errors.insert(self._head[path], (place, problem))
        self._head[path] += 1
        if not path:
            self._head["messages"] += 1

    def _root(self, value: object, check_text: bool) -> None:
        self.walker.check_text = check_text
        self.walker.state(value)
        self.skeleton = value

    def _value(self, key: str, value: object, check_text: bool) -> None:
        self.walker.check_text = check_text
        self.walker.top(key, value)
        self.skeleton[key] = value

    def _list(self, name: str) -> None:
        self.walker.status_list("messages", name, [])

    def _list_value(self, name: str, value: object, check_text: bool) -> None:
        self.walker.check_text = check_text
        self.walker.status_list("messages", name, value)
        self.skeleton["messages"][name] = value

    def _message(self, name: str, index: int, obj: object, check_text: bool) -> None:
        walker = self.walker
        walker.check_text = check_text
        walker.containers = 0
        place = f"{self._list_path}[{index}]"
        walker.message(place, obj, name)
        self._item_done(place, obj, "message")
        if name in self.counts:
            self.counts[name] += 1
        mid = obj.get("id") if type(obj) is dict else None
        if type(mid) is str:
            digest = hash(mid)
            if digest in self.hashes:
                self.twice.add(digest)
            else:
                self.hashes.add(digest)

    def _log(self) -> None:
        pass

    def _entry(self, index: int, obj: object, check_text: bool) -> None:
        walker = self.walker
        walker.check_text = check_text
        walker.containers = 0
        place = f"message_log[{index}]"
        walker.entry(place, obj, LOG_RULES, "log entry")
        self._item_done(place, obj, "log entry")
        self.counts["message_log"] += 1

    def _item_done(self, place: str, obj: object, what: str) -> None:
        nested = self.walker.containers - (type(obj) is list)  # a list counts itself
        if nested > stream.MAX_ITEM_CONTAINERS:
            raise stream.Fault(place, stream.item_limit_problem(what), utf8_first=False)
        if self.collect:
            self._collecting.append(obj)
