"""A state file read in small pieces: its structure walked here, each value read by
Python's own JSON decoder.

Why not a streaming JSON library (ijson): the values stored must be exactly what
`json.loads` gives (floats and key order as they were, `1e5` not `Decimal('1E+5')`,
a key twice refused with its place), and the places of faults must stay those
`json.loads` names. So only the few levels of a state file's skeleton (the top-level
object, `messages`, its lists, `message_log`) are walked by the small loop below,
which raises the very errors the C scanner raises there; every message, log entry
and setting is handed to `JSONDecoder.raw_decode` on its own, so each value is
`json.loads`' own and memory holds one message at a time, not the file.

The decoded text is kept in a window of about CHUNK_BYTES; an item larger than the
window is first measured by a scan of its brackets (which enforces the limits below
before anything is built), then decoded whole.

Limits, so that a file whose bulk is junk is refused before it is built in memory
(README, "Importing and exporting"):
- MAX_CONTAINERS objects and lists outside the message objects and log entries (the
  settings, unknown keys, legacy lists: what an import holds in memory at once);
- MAX_ITEM_CONTAINERS objects and lists nested in any one message or log entry.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO

from .rules import MAX_DEPTH, DuplicateKeys, JSONConstant, join

# The window of decoded text: small, because an item that fits is decoded before it
# is counted, so junk in one window is built (at most ~30,000 empty lists, 2 MB) before
# the limit sees it; a larger item is counted first (_scan).
CHUNK_BYTES = 1 << 16
MAX_CONTAINERS = 100_000
MAX_ITEM_CONTAINERS = 1_000
LIMITS_HELP = "see the README, 'Importing and exporting'"

_WS = re.compile(r"[ \t\n\r]*")
# A string (its closing quote missing when the window ends inside it) or a bracket.
# Written as runs between escapes: `(?:[^"\\]|\\.)*` keeps a backtracking entry per
# character, 20 MB for a string of 200,000.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?P<close>")?|[\[\]{}]', re.S)
_LONG_NUMBER = re.compile(r"\d{4301,}")  # Python reads at most 4,300 digits
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89abcdefABCDEF])")


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = DuplicateKeys(obj)
        dup.duplicates = [k for k, _ in pairs if k in seen or seen.add(k)]
        return dup
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=JSONConstant)


class Fault(Exception):
    """A fault that stops the reading: (place, problem). `utf8_first`: a UTF-8 fault
    further on is named instead (as reading the whole text first would)."""

    def __init__(self, place: str, problem: str, *, utf8_first: bool = True) -> None:
        super().__init__(place, problem)
        self.place = place
        self.problem = problem
        self.utf8_first = utf8_first


# Events of the walk: what the reader met, in file order.
ROOT = "root"  # (ROOT, value, check_text): the document is not an object
VALUE = "value"  # (VALUE, key, value, check_text): a top-level value held whole
KEY = "key"  # (KEY, path, key): a key of the top level ("") or of `messages`
LIST = "list"  # (LIST, name): a list of `messages` begins
LIST_VALUE = "list-value"  # (LIST_VALUE, name, value, check_text): not a list
MESSAGE = "message"  # (MESSAGE, name, index, obj, check_text)
LOG = "log"  # (LOG,): `message_log` is a list
ENTRY = "entry"  # (ENTRY, index, obj, check_text)


class Reader:
    """The text of a binary stream, decoded as it is read, with the walk of a state
    file's skeleton over it."""

    def __init__(self, stream: BinaryIO, *, check_text: bool = True) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._want_text_check = check_text
        self.buf = ""
        self.pos = 0
        self.offset = 0  # characters before buf[0]
        self.line = 1  # the line buf[0] is on
        self.line_start = 0  # where that line starts
        self.eof = False
        self._bom = False
        self._held = 0  # containers held so far (MAX_CONTAINERS)

    # --- The text ------------------------------------------------------------

    def _read(self, *, compact: bool, size: int = 0) -> None:
        if compact:
            self._compact()
        data = self._stream.read(size or CHUNK_BYTES)
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise self._utf8_fault(exc) from None
        if not self.offset and not self.buf and not self._bom and text.startswith("\ufeff"):
            self._bom = True
            text = text[1:]
        self.buf += text
        self.eof = not data

    def _compact(self) -> None:
        """Drop the text before pos (read already)."""
        if self.pos:
            newlines = self.buf.count("\n", 0, self.pos)
            if newlines:
                self.line += newlines
                self.line_start = self.offset + self.buf.rfind("\n", 0, self.pos) + 1
            self.offset += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0

    def _utf8_fault(self, exc: UnicodeDecodeError) -> Fault:
        before = exc.object[: exc.start].decode("utf-8", errors="replace")
        if not self.offset and not self.buf and before.startswith("\ufeff"):
            before = before[1:]
            self._bom = True
        self.buf += before
        place = self.place(self.offset + len(self.buf), utf8=True)
        return Fault(place, "not valid UTF-8", utf8_first=False)

    def drain(self) -> None:
        """Decode the rest of the stream (a UTF-8 fault there is named first)."""
        while not self.eof:
            self.pos = len(self.buf)
            self._read(compact=True)

    def place(self, index: int, *, utf8: bool = False) -> str:
        """`line L, column C` of the character at `index` (from the start of the text)."""
        i = index - self.offset
        newline = self.buf.rfind("\n", 0, i)
        if newline < 0:
            line, column = self.line, index - self.line_start + 1
        else:
            line, column = self.line + self.buf.count("\n", 0, i), i - newline
        if utf8 and self._bom and line == 1:
            column += 1  # the byte-order mark counts as a character before a UTF-8 fault
        return f"line {line}, column {column}"

    def _fail(self, problem: str, index: int | None = None) -> Fault:
        return Fault(self.place(self.offset + (self.pos if index is None else index)), problem)

    def _ahead(self, n: int) -> None:
        """At least n characters from pos in the window, unless the text ends first.
        The text read already goes once it is most of the window (after a large item
        the window holds more than it needs)."""
        if self.pos > CHUNK_BYTES:
            self._compact()
        while len(self.buf) - self.pos < n and not self.eof:
            self._read(compact=True)

    def skip_ws(self) -> None:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or self.eof:
                return
            self._read(compact=True)

    def peek(self) -> str:
        self._ahead(1)
        return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def _rest_is_space(self) -> bool:
        while True:
            rest = self.buf[self.pos :]
            if rest and not rest.isspace():
                return False
            if self.eof:
                return True
            self.pos = len(self.buf)
            self._read(compact=True)

    # --- The skeleton --------------------------------------------------------

    def events(self) -> Iterator[tuple]:
        """The walk of the whole file, in file order; raises Fault."""
        self.skip_ws()
        first = self.peek()
        if not first or (first.isspace() and self._rest_is_space()):
            raise Fault("", "the file is empty: expected a JSON object", utf8_first=False)
        if first == "{":
            self.pos += 1
            yield from self._members("", self._top_value)
        else:
            yield (ROOT, *self._held_value(0, "(top level)"))
        self.skip_ws()
        if self.pos < len(self.buf):
            raise self._fail("Extra data")

    def _members(self, path: str, on_value: Callable[[str], Iterator[tuple]]) -> Iterator[tuple]:
        """The members of an object whose `{` was just read (as the C scanner reads them)."""
        self.skip_ws()
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise self._fail("Expecting property name enclosed in double quotes")
            key = self._key()
            yield (KEY, path, key)
            self.skip_ws()
            if self.peek() != ":":
                raise self._fail("Expecting ':' delimiter")
            self.pos += 1
            self.skip_ws()
            yield from on_value(key)
            if self._closed_after_element("}"):
                return

    def _key(self) -> str:
        while True:
            try:
                key, self.pos = json.decoder.scanstring(self.buf, self.pos + 1)
                return key
            except json.JSONDecodeError as exc:
                if self.eof or not _maybe_cut(exc, len(self.buf)):
                    raise self._fail(exc.msg.removesuffix(" at"), exc.pos) from None
                self._read(compact=False)

    def _top_value(self, key: str) -> Iterator[tuple]:
        char = self.peek()
        if key == "messages" and char == "{":
            self.pos += 1
            yield from self._members("messages", self._status_list)
        elif key == "message_log" and char == "[":
            yield (LOG,)
            for index, obj, check_text in self._items(2, join("", key), "log entry"):
                yield (ENTRY, index, obj, check_text)
        else:
            yield (VALUE, key, *self._held_value(1, join("", key)))

    def _status_list(self, name: str) -> Iterator[tuple]:
        if self.peek() != "[":
            yield (LIST_VALUE, name, *self._held_value(2, join("messages", name)))
            return
        yield (LIST, name)
        for index, obj, check_text in self._items(3, join("messages", name), "message"):
            yield (MESSAGE, name, index, obj, check_text)

    def _items(self, depth: int, path: str, what: str) -> Iterator[tuple[int, object, bool]]:
        """Each element of the list at pos (the list at `path`), decoded on its own."""
        self.pos += 1
        self.skip_ws()
        if self.peek() == "]":
            self.pos += 1
            return
        index = 0
        while True:
            place = f"{path}[{index}]"
            value, check_text = self._value(depth, MAX_ITEM_CONTAINERS + 1, place, what)
            yield index, value, check_text
            index += 1
            if self._closed_after_element("]"):
                return

    def _closed_after_element(self, closer: str) -> bool:
        """After an object's member or a list's item: True when `closer` ends the
        container (read past it), False after the comma before the next element."""
        self.skip_ws()
        char = self.peek()
        if char == closer:
            self.pos += 1
            return True
        if char != ",":
            raise self._fail("Expecting ',' delimiter")
        self.pos += 1
        self.skip_ws()
        return False

    def _held_value(self, depth: int, place: str) -> tuple[object, bool]:
        """A value kept whole in memory: its containers count against MAX_CONTAINERS."""
        self._ahead(CHUNK_BYTES // 4)
        start = self.pos
        self._held += self._scan(start, depth, MAX_CONTAINERS - self._held, place, None)
        return self._decode(start, depth, scanned=True)

    def _value(self, depth: int, limit: int, place: str, what: str) -> tuple[object, bool]:
        self._ahead(CHUNK_BYTES // 4)
        start = self.pos
        try:
            return self._decode(start, depth, scanned=False)
        except _Incomplete:  # larger than the window: counted before it is built
            self._scan(start, depth, limit, place, what)
            return self._decode(start, depth, scanned=True)

    def _decode(self, start: int, depth: int, *, scanned: bool) -> tuple[object, bool]:
        """The value at start, decoded by json's own decoder. Not `scanned`: raise
        _Incomplete where the window may end inside it; `scanned`: read on."""
        while True:
            buf = self.buf
            try:
                value, end = _DECODER.raw_decode(buf, start)
            except json.JSONDecodeError as exc:
                if self.eof or not _maybe_cut(exc, len(buf)):
                    raise self._fail(exc.msg.removesuffix(" at"), exc.pos) from None
            except RecursionError:
                found = too_deep_at(buf, start, depth)
                index = start if found is None else found
                raise self._fail(f"nesting too deep (over {MAX_DEPTH} levels)", index) from None
            except ValueError:  # an integer of more digits than Python converts
                long_number = _LONG_NUMBER.search(buf, start)
                index = long_number.start() if long_number else start
                raise self._fail("a number with too many digits to read", index) from None
            else:
                # A number near the window's end may go on past it (`1` of `1e400`).
                if self.eof or end < len(buf) - 12 or type(value) not in (int, float):
                    self.pos = end
                    check_text = self._want_text_check and (
                        _UNSTORABLE_ESCAPE.search(buf, start, end) is not None
                    )
                    return value, check_text
            if not scanned:
                raise _Incomplete
            self._read(compact=False, size=max(CHUNK_BYTES, len(buf) - start))

    def _scan(self, start: int, depth: int, limit: int, place: str, what: str | None) -> int:
        """Read on until the value at start is whole in the window (or the text ends),
        counting its objects and lists: Fault past `limit`, before any of it is built.
        Returns the count."""
        if self.buf[start : start + 1] not in ("[", "{", '"'):
            return 0
        level, count, i = depth, 0, start
        while True:
            for token in _TOKENS.finditer(self.buf, i):
                char = self.buf[token.start()]
                if char == '"':
                    if token.group("close") is None:
                        i = token.start()
                        break
                elif char in "[{":
                    level += 1
                    count += 1
                    if count > limit:
                        raise Fault(place, _limit_problem(what), utf8_first=False)
                else:
                    level -= 1
                if level == depth:
                    return count
            else:
                i = len(self.buf)
            if self.eof:
                return count
            # Doubling the window: a value of n characters is scanned O(n log n).
            self._read(compact=False, size=max(CHUNK_BYTES, len(self.buf) - start))


class _Incomplete(Exception):
    """The window ends inside the value: read on."""


def _maybe_cut(exc: json.JSONDecodeError, length: int) -> bool:
    # Every fault the decoder meets because the text stops is at its end (a number,
    # a literal or an escape cut short) or is a string not closed before it.
    return exc.pos >= length - 12 or exc.msg.startswith("Unterminated string")


def _limit_problem(what: str | None) -> str:
    if what is None:
        return (
            f"more than {MAX_CONTAINERS:,} JSON objects and lists outside the messages "
            f"and the message_log, the most an import reads ({LIMITS_HELP})"
        )
    return (
        f"more than {MAX_ITEM_CONTAINERS:,} JSON objects and lists inside one {what}, "
        f"the most an import reads ({LIMITS_HELP})"
    )


def item_limit_problem(what: str) -> str:
    """The refusal of a message or log entry holding over MAX_ITEM_CONTAINERS."""
    return _limit_problem(what)


_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)


def too_deep_at(text: str, start: int = 0, depth: int = 0) -> int | None:
    """Where the nesting of the value at `start` (inside `depth` containers) first goes
    past MAX_DEPTH, or None (the parser's RecursionError does not say where)."""
    for token in _BRACKETS.finditer(text, start):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None
