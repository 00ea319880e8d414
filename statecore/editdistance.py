"""The size of a reviewer's edit: the Levenshtein distance between two texts.

Counted on characters (Unicode code points) after NFC normalisation, so an "é"
typed as one code point or as "e" plus a combining accent is the same letter.
Computed once, when an edit is saved (lifecycle.edit_and_approve), and kept in
its audit row: the overview and the export only read it.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

# The most cells of the two-row table computed (the differing middles' lengths
# multiplied): about 0.1 s of pure Python, spent under the row's lock (the edit
# measures the locked row's text). A reply may have 65,536 characters, and two of
# those would take hours; past the cap the distance is an upper bound.
MAX_CELLS = 1_000_000


class Distance(NamedTuple):
    value: int
    # False past MAX_CELLS: `value` is then the longer differing middle's length,
    # an upper bound (the edit counted as rewriting all of that part).
    exact: bool


def edit_distance(a: str, b: str, *, max_cells: int | None = None) -> Distance:
    """Insertions, deletions and substitutions of characters that turn `a` into `b`;
    past `max_cells` (MAX_CELLS) an upper bound, flagged."""
    max_cells = MAX_CELLS if max_cells is None else max_cells
    a = unicodedata.normalize("NFC", a)
    b = unicodedata.normalize("NFC", b)
    a, b = _differing_middles(a, b)
    if len(a) < len(b):
        a, b = b, a  # the shorter text is the row: less memory, the same result
    if not b:
        return Distance(len(a), True)
    if len(a) * len(b) > max_cells:
        return Distance(len(a), False)
    return Distance(_levenshtein(a, b), True)


def _differing_middles(a: str, b: str) -> tuple[str, str]:
    """`a` and `b` without their common prefix and suffix: an edit of a long reply
    usually touches a few words, and the table shrinks to those."""
    shortest = min(len(a), len(b))
    start = 0
    while start < shortest and a[start] == b[start]:
        start += 1
    end = 0
    while end < shortest - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end]


def _levenshtein(a: str, b: str) -> int:
    """The textbook dynamic programme, keeping two rows of len(b) + 1 cells."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        left = i
        for j, char_b in enumerate(b, 1):
            # Written out rather than min(...): twice as fast in CPython.
            best = previous[j - 1] + (char_a != char_b)
            if previous[j] + 1 < best:
                best = previous[j] + 1
            if left + 1 < best:
                best = left + 1
            current.append(best)
            left = best
        previous = current
    return previous[-1]
