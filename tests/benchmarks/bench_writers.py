"""Concurrent writers through the Python API: 4 processes x 500 `add_message`,
ours against the old JSON-file storage, counting what was kept."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.benchmarks.baseline import JsonFileStateManager
from tests.benchmarks.results import Figure, count, seconds

PROCESSES = 4
PER_PROCESS = 500


def _run_writers(kind: str, extra: list[str]) -> tuple[float, Counter]:
    """Start every writer, wait until all are set up, then let them go at once."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.benchmarks.writer",
                kind,
                str(w),
                str(PER_PROCESS),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(PROCESSES)
    ]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a {kind} writer did not start")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    errors: Counter = Counter()
    slowest = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a {kind} writer exited with {proc.returncode}")
        report = json.loads(out.strip().splitlines()[-1])
        errors.update(report["errors"])
        slowest = max(slowest, report["seconds"])
    return slowest, errors


def _errors_text(errors: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in errors.most_common()) or "no errors"


def ours() -> Figure:
    from statecore import rootstate, statefile
    from statecore.models import Message

    statefile.import_bytes(b"{}", actor="bench", source="command")
    counter_before = rootstate.get_root().total_incoming or 0
    took, errors = _run_writers("ours", [])
    kept = Message.objects.filter(message_id__startswith="writer").count()
    counted = (rootstate.get_root().total_incoming or 0) - counter_before
    wanted = PROCESSES * PER_PROCESS
    return Figure(
        "concurrent add_message",
        f"{PROCESSES} processes x {PER_PROCESS}",
        f"{count(kept)} kept, counter +{count(counted)}, {_errors_text(errors)}",
        f"{seconds(took)} ({wanted / took:,.0f} adds/s)",
        f"all {count(wanted)} kept and counted, no errors",
        kept == counted == wanted and not errors,
        {"kept": kept, "counted": counted, "errors": dict(errors), "seconds": took},
    )


def baseline(workdir: Path) -> Figure:
    path = workdir / "baseline-writers.json"
    path.unlink(missing_ok=True)
    JsonFileStateManager(path)  # a fresh, empty state file
    took, errors = _run_writers("baseline", [str(path)])
    try:
        state = json.loads(path.read_bytes())
    except ValueError as exc:
        kept, counted = 0, 0
        shown = f"file left unreadable ({exc}); {_errors_text(errors)}"
    else:
        ids = {m.get("id") for m in state["messages"]["incoming"]}
        kept = sum(1 for mid in ids if str(mid).startswith("writer"))
        counted = state["statistics"]["total_incoming"]
        shown = f"{count(kept)} kept, counter {count(counted)}, {_errors_text(errors)}"
    lost = PROCESSES * PER_PROCESS - kept
    return Figure(
        "concurrent add_message (old storage)",
        f"{PROCESSES} processes x {PER_PROCESS}",
        shown,
        f"{count(lost)} lost; {seconds(took)}",
        "",
        None,
        {"kept": kept, "counted": counted, "lost": lost, "errors": dict(errors), "seconds": took},
    )


def run(workdir: Path) -> list[Figure]:
    return [ours(), baseline(workdir)]
