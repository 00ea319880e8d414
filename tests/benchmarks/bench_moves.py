"""One `move_message` (pending_approval -> approved) with N messages stored,
through the Python API the scripts call, against the old JSON-file storage.

The old storage reads and rewrites the whole file per move (about two seconds
at 100,000), so it is timed a few times only.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from tests.benchmarks.baseline import JsonFileStateManager
from tests.benchmarks.results import Figure, count, seconds

OUR_MOVES = 30
BASELINE_MOVES = {1_000: 20, 10_000: 5}
BASELINE_MOVES_LARGE = 3
GOAL_SIZE = 100_000
FLAT_FROM = 1_000
SPEEDUP_GOAL = 500  # ours at least this many times faster at GOAL_SIZE
FLAT_GOAL = 2.0  # ours at GOAL_SIZE within this factor of FLAT_FROM


def _timed_moves(move, ids: list[str]) -> list[float]:
    times = []
    for mid in ids:
        start = time.perf_counter()
        moved = move(mid)
        times.append(time.perf_counter() - start)
        if moved is not True:
            raise RuntimeError(f"{mid} was not moved: the benchmark measured nothing")
    return times


def ours(path: Path) -> list[float]:
    from statecore import statefile
    from statecore.models import Message
    from statecore.state_manager import MessageStatus, StateManager

    statefile.import_bytes(path.read_bytes(), actor="bench", source="command")
    manager = StateManager(actor="bench")
    ids = list(Message.objects.pending().values_list("message_id", flat=True)[: OUR_MOVES + 1])

    def move(mid: str) -> bool:
        return manager.move_message(mid, MessageStatus.PENDING_APPROVAL, MessageStatus.APPROVED)

    move(ids[0])  # the first call pays for connecting and compiling queries
    return _timed_moves(move, ids[1:])


def baseline(path: Path, workdir: Path, moves: int) -> list[float]:
    copy = shutil.copyfile(path, workdir / f"baseline-{path.name}")
    manager = JsonFileStateManager(copy)
    pending = json.loads(Path(copy).read_bytes())["messages"]["pending_approval"]
    ids = [m["id"] for m in pending[:moves]]
    try:
        return _timed_moves(
            lambda mid: manager.move_message(mid, "pending_approval", "approved"), ids
        )
    finally:
        Path(copy).unlink()


def run(sizes: list[int], workdir: Path, state_files: dict[int, Path]) -> list[Figure]:
    figures: list[Figure] = []
    medians: dict[int, float] = {}
    for n in sizes:
        ours_times = ours(state_files[n])
        old_times = baseline(state_files[n], workdir, BASELINE_MOVES.get(n, BASELINE_MOVES_LARGE))
        mine, old = statistics.median(ours_times), statistics.median(old_times)
        medians[n] = mine
        has_goal = n == GOAL_SIZE
        figures.append(
            Figure(
                "move_message",
                f"{count(n)} stored",
                f"{seconds(mine)} (median of {len(ours_times)})",
                f"old storage {seconds(old)} (median of {len(old_times)}) -> {old / mine:,.0f}x faster",
                f">= {SPEEDUP_GOAL}x faster" if has_goal else "",
                old / mine >= SPEEDUP_GOAL if has_goal else None,
                {"n": n, "ours": ours_times, "baseline": old_times, "speedup": old / mine},
            )
        )
    if FLAT_FROM in medians and GOAL_SIZE in medians:
        growth = medians[GOAL_SIZE] / medians[FLAT_FROM]
        figures.append(
            Figure(
                "move_message flat",
                f"{count(GOAL_SIZE)} vs {count(FLAT_FROM)}",
                f"{growth:.2f}x",
                f"{seconds(medians[GOAL_SIZE])} vs {seconds(medians[FLAT_FROM])}",
                f"<= {FLAT_GOAL:g}x",
                growth <= FLAT_GOAL,
                {"ratio": growth},
            )
        )
    return figures
