"""Strict reading of a state file: every fault refused with the place it is at.

Strict JSON only (no NaN/Infinity, no key twice, no NUL character), and the
types of STATE_FORMAT.md at every level. Missing keys are not wrong.
"""

from __future__ import annotations

import json
import re

from .rules import MAX_DEPTH, DuplicateKeys, JSONConstant, check_json, check_state

MAX_ERRORS_SHOWN = 20
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")
_UNSTORABLE_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
# A well-formed 4-byte UTF-8 sequence: one character beyond U+FFFF.
_ASTRAL_UTF8 = re.compile(rb"[\xf0-\xf4][\x80-\xbf]{3}")
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_LONG_NUMBER = re.compile(r"\d{4301,}")  # Python reads at most 4,300 digits


class StateFileError(ValueError):
    """A refused file. `errors` is a list of (place, problem)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        lines = [
            f"{place}: {problem}" if place else problem
            for place, problem in errors[:MAX_ERRORS_SHOWN]
        ]
        if len(errors) > MAX_ERRORS_SHOWN:
            lines.append(f"... and {len(errors) - MAX_ERRORS_SHOWN} more")
        super().__init__("\n".join(lines))


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = DuplicateKeys(obj)
        dup.duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]
        return dup
    return obj


def parse_state(data: bytes | str) -> dict:
    """The state in `data`, or StateFileError naming every fault's place."""
    if isinstance(data, bytes) and _ASTRAL_UTF8.search(data):
        # One character beyond U+FFFF (an emoji) makes Python hold the whole
        # decoded text at 4 bytes per character, 4x the file before parsing.
        # Written as the JSON escape pair it stands for, the text stays at 1-2
        # bytes per character and parses to the very same strings.
        pairs = _EscapePairs()
        try:
            return _parse_text(
                _ASTRAL_UTF8.sub(lambda m: pairs[m[0]], data).decode("utf-8"),
                check_text=_UNSTORABLE_ESCAPE_BYTES.search(data) is not None,
            )
        except (StateFileError, UnicodeDecodeError):
            pass  # refused: read again as it is, so that each place is named exactly
    return _parse_bytes(data)


def parse_json(data: bytes) -> object:
    """Any JSON document read as strictly as a state file (a request body): bad UTF-8,
    NaN, a key twice, nesting over MAX_DEPTH, a NUL or a lone surrogate raise
    StateFileError naming the place, but no state-file types are asked for."""
    return _parse_bytes(data, check=check_json)


class _EscapePairs(dict):
    """A 4-byte UTF-8 sequence -> its JSON escape pair (as is when not UTF-8)."""

    def __missing__(self, sequence: bytes) -> bytes:
        try:
            code = ord(sequence.decode("utf-8")) - 0x10000
        except UnicodeDecodeError:
            escaped = sequence
        else:
            escaped = b"\\u%04x\\u%04x" % (0xD800 + (code >> 10), 0xDC00 + (code & 0x3FF))
        self[sequence] = escaped
        return escaped


def _parse_bytes(data: bytes | str, check=check_state) -> dict:
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


def _parse_text(text: str, check_text: bool | None = None, check=check_state) -> dict:
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise StateFileError([("", "the file is empty: expected a JSON object")])
    try:
        state = json.loads(text, object_pairs_hook=_pairs_hook, parse_constant=JSONConstant)
    except json.JSONDecodeError as exc:
        problem = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise StateFileError([(f"line {exc.lineno}, column {exc.colno}", problem)]) from None
    except RecursionError:
        place = _place(text, _too_deep_at(text))
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


def _too_deep_at(text: str) -> int | None:
    """Where the nesting first goes past MAX_DEPTH (the parser's RecursionError
    does not say). Only run for a refused file."""
    depth = 0
    for token in _BRACKETS.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None


def find_duplicate_ids(state: dict) -> dict[str, list[str]]:
    """Every id stored more than once, with the places it is at (in file order)."""
    lists = state.get("messages") or {}
    seen: set[str] = set()
    twice: set[str] = set()
    for items in lists.values():
        for obj in items:
            mid = obj["id"]
            if mid in seen:
                twice.add(mid)
            seen.add(mid)
    places: dict[str, list[str]] = {}
    if twice:
        for status, items in lists.items():
            for index, obj in enumerate(items):
                if obj["id"] in twice:
                    places.setdefault(obj["id"], []).append(f"{status}[{index}]")
    return places
