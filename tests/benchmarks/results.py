"""What a benchmark run reports: figures with their goals, a table, a JSON file.

Each figure keeps the text shown in the table and the raw numbers (seconds,
bytes, counts) in `data`, so two runs' JSON files can be compared by a script.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Figure:
    name: str
    size: str  # what was measured on: "100,000", "10,000 pending", "4 reviewers, 10 s"
    shown: str  # our value, as the table shows it
    compared: str = ""  # the reference it is set against, and the ratio
    goal: str = ""
    met: bool | None = None  # None: no goal, shown for comparison only
    data: dict = field(default_factory=dict)

    @property
    def result(self) -> str:
        return {True: "met", False: "MISSED", None: ""}[self.met]


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1_000_000:.0f} µs"


def megabytes(value: float) -> str:
    return f"{value / 1_000_000:.1f} MB"


def count(value: int) -> str:
    return f"{value:,}"


def median_time(
    run: Callable[[], object], repeats: int, before: Callable[[], object] | None = None
):
    """The median wall time of `repeats` calls of `run`; `before` (untimed) runs first each time."""
    times = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def table(figures: list[Figure]) -> str:
    header = ("figure", "on", "ours", "compared with", "goal", "result")
    rows = [header] + [(f.name, f.size, f.shown, f.compared, f.goal, f.result) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(figures: list[Figure]) -> str:
    """The same table for the README."""
    lines = ["| figure | on | ours | compared with | goal | result |", "|---|---|---|---|---|---|"]
    for f in figures:
        cells = (f.name, f.size, f.shown, f.compared, f.goal, f.result)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    """Other work on the machine skews every figure: say how busy it was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_end": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(
    figures: list[Figure], folder: Path, *, database: str, started: datetime, load_at_start: str
) -> Path:
    commit = git_commit()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{started:%Y%m%d-%H%M%S}-{commit}.json"
    payload = {
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "database": database,
        "machine": machine() | {"load_average_at_start": load_at_start},
        "figures": [asdict(f) | {"result": f.result} for f in figures],
        "goals_met": sum(f.met is True for f in figures),
        "goals_missed": sum(f.met is False for f in figures),
    }
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
