"""Import and export of N messages, each set against plain `json` on the same file.

Import is timed into an emptied database (the previous state is replaced by an
empty one, untimed, first), from reading the file to the commit; its peak
memory is measured in a run of its own, because tracemalloc slows everything
it watches.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from tests.benchmarks.generate import write_state_file
from tests.benchmarks.results import Figure, count, median_time, megabytes, seconds

IMPORT_GOAL_SIZE = 100_000
IMPORT_TIME_GOAL = 8.0  # x a bare json.load of the same file
IMPORT_MEMORY_GOAL = 5.0  # x the file's size
EXPORT_TIME_GOAL = 2.5  # x a bare json.dumps(state, indent=2, ensure_ascii=False)


def _repeats(n: int) -> int:
    return 3 if n >= 100_000 else 5


def _empty_state() -> None:
    from statecore import statefile

    statefile.import_bytes(b"{}", actor="bench", source="command")


def _import(path: Path) -> None:
    from statecore import statefile

    statefile.import_bytes(path.read_bytes(), actor="bench", source="command")


def _json_load(path: Path) -> None:
    with open(path, "rb") as f:
        json.load(f)


def import_memory(path: Path) -> int:
    """Peak bytes allocated by Python during one import, over what was held before."""
    from statecore import statefile

    _empty_state()
    data = path.read_bytes()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        statefile.import_bytes(data, actor="bench", source="command")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


def import_figures(n: int, path: Path) -> list[Figure]:
    size = path.stat().st_size
    reps = _repeats(n)
    ours, ours_all = median_time(lambda: _import(path), reps, before=_empty_state)
    plain, plain_all = median_time(lambda: _json_load(path), 5)
    peak = import_memory(path)
    has_goal = n == IMPORT_GOAL_SIZE
    return [
        Figure(
            "import time",
            count(n),
            seconds(ours),
            f"json.load {seconds(plain)} -> {ours / plain:.1f}x",
            f"<= {IMPORT_TIME_GOAL:g}x json.load" if has_goal else "",
            ours / plain <= IMPORT_TIME_GOAL if has_goal else None,
            {
                "n": n,
                "seconds": ours,
                "runs": ours_all,
                "json_load": plain_all,
                "ratio": ours / plain,
            },
        ),
        Figure(
            "import peak memory",
            count(n),
            megabytes(peak),
            f"file {megabytes(size)} -> {peak / size:.1f}x",
            f"<= {IMPORT_MEMORY_GOAL:g}x the file" if has_goal else "",
            peak / size <= IMPORT_MEMORY_GOAL if has_goal else None,
            {"n": n, "peak_bytes": peak, "file_bytes": size, "ratio": peak / size},
        ),
    ]


def export_figure(n: int, path: Path) -> Figure:
    """Export of the state just imported from `path` (same state, same bytes)."""
    from statecore import statefile

    state = json.loads(path.read_bytes())
    exported = statefile.export_bytes()
    identical = exported == path.read_bytes()
    reps = _repeats(n)
    ours, ours_all = median_time(statefile.export_bytes, reps)
    plain, plain_all = median_time(lambda: json.dumps(state, indent=2, ensure_ascii=False), reps)
    ratio = ours / plain
    return Figure(
        "export time",
        count(n),
        seconds(ours),
        f"json.dumps {seconds(plain)} -> {ratio:.1f}x"
        + ("" if identical else " (NOT the same bytes)"),
        f"<= {EXPORT_TIME_GOAL:g}x json.dumps",
        ratio <= EXPORT_TIME_GOAL,
        {
            "n": n,
            "seconds": ours,
            "runs": ours_all,
            "json_dumps": plain_all,
            "ratio": ratio,
            "same_bytes_as_file": identical,
        },
    )


def state_files(sizes: list[int], workdir: Path) -> dict[int, Path]:
    """One generated file per size, shared by the benchmarks that need N stored."""
    return {n: write_state_file(workdir / f"state-{n}.json", n, seed=n) for n in sizes}


def run(sizes: list[int], files: dict[int, Path]) -> list[Figure]:
    times, memory, exports = [], [], []
    for n in sizes:
        path = files[n]
        timed, peak = import_figures(n, path)
        times.append(timed)
        memory.append(peak)
        _import(path)
        exports.append(export_figure(n, path))
    return times + memory + exports
