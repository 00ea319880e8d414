"""`make bench-big`: every page and search, and the import, at a million messages.

    python -m tests.benchmarks.bench_big [--size 1000000] [--only sqlite,postgresql]
                                         [--database-url postgres://user@host/db]
                                         [--cache DIR] [--out DIR] [--audit]

The state file (the generator's shape: half incoming, 5% pending, 30% sent)
is generated once per size and generator version into the cache folder
(BENCH_CACHE, else bench-cache/ in the repository) and reused. Each database
runs in a process of its own (big_worker): SQLite on a scratch file, and
PostgreSQL on DATABASE_URL's server (or --database-url) in a database created
and dropped there. Prints the table of server times with each goal met or
MISSED, and the import's time and peak memory; writes the same figures to
bench-results/bench-<date>-<commit>.json. Exits 1 when a goal is missed or a
part could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests.benchmarks import generate
from tests.benchmarks.big_worker import AUDIT_PAGES, PAGES
from tests.benchmarks.results import REPO_ROOT, Figure, count, load_average, megabytes, write_json

DATABASES = ("sqlite", "postgresql")
PAGE_GOAL = 0.150  # seconds of server time, per page and per search
IMPORT_MEMORY_GOAL = 1.5  # x the file's size
DEFAULT_SIZE = 1_000_000


def generator_version() -> str:
    """Any change to the generator's code makes a new file (a stale cache is never used)."""
    return hashlib.sha256(Path(generate.__file__).read_bytes()).hexdigest()[:12]


def cache_path(folder: Path, n: int, seed: int | None = None) -> Path:
    seed = n if seed is None else seed
    return folder / f"state-{n}-seed{seed}-gen{generator_version()}.json"


def cached_state_file(folder: Path, n: int) -> Path:
    """The state file of `n` messages, generated (streamed to disk) only when missing."""
    path = cache_path(folder, n)
    if path.exists():
        print(f"Using the cached {path} ({megabytes(path.stat().st_size)})", file=sys.stderr)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Generating {count(n)} messages into {path} (once) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    # Written aside and renamed, so an interrupted run never leaves a half file to reuse.
    partial = path.with_name(path.name + ".partial")
    try:
        generate.write_state_file(partial, n, seed=n)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return path


def page_met(seconds: list[float | None]) -> bool:
    """A page meets its goal when every database measured it within PAGE_GOAL."""
    return bool(seconds) and all(s is not None and s <= PAGE_GOAL for s in seconds)


def import_met(peak_bytes: int, file_bytes: int) -> bool:
    return peak_bytes <= IMPORT_MEMORY_GOAL * file_bytes


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="messages in the file")
    parser.add_argument("--only", default=",".join(DATABASES), help="sqlite, postgresql or both")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="the PostgreSQL server (default: DATABASE_URL); a database of its own is made there",
    )
    default_cache = os.environ.get("BENCH_CACHE") or REPO_ROOT / "bench-cache"
    parser.add_argument("--cache", type=Path, default=Path(default_cache))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument(
        "--audit",
        action="store_true",
        help="add a year of decisions to the audit log (1.26 million events) and time "
        "the reviewer filter too",
    )
    args = parser.parse_args(argv)
    args.only = [d for d in args.only.split(",") if d]
    if set(args.only) - set(DATABASES) or not args.only:
        parser.error(f"--only: one or both of {', '.join(DATABASES)}")
    if args.size < 2:
        parser.error("--size: at least 2 messages")
    if "postgresql" in args.only and not (args.database_url or "").startswith("postgres"):
        parser.error("PostgreSQL needs DATABASE_URL or --database-url (or --only sqlite)")
    return args


def run_database(
    vendor: str, state_file: Path, database_url: str | None, *, audit: bool = False
) -> dict:
    """One database in its own process; a crash there is reported, never raised."""
    with tempfile.TemporaryDirectory(prefix="whatsapp-bench-big-") as folder:
        result_path = Path(folder) / "result.json"
        command = [sys.executable, "-m", "tests.benchmarks.big_worker"]
        command += [str(state_file), str(result_path)]
        if vendor == "postgresql":
            command += ["--database-url", database_url]
        if audit:
            command += ["--audit"]
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)  # the worker is told its database, never guesses
        done = subprocess.run(command, cwd=REPO_ROOT, env=env)
        if not result_path.exists():
            return {"database": vendor, "error": f"the worker exited {done.returncode}"}
        return json.loads(result_path.read_text(encoding="utf-8"))


def _ms(page: dict | None) -> str:
    if page is None:
        return "not run"
    if "error" in page:
        return f"failed: {page['error']}"
    return f"{page['seconds'] * 1000:,.0f} ms"


def _queries(pages: list[dict | None]) -> str:
    found = [str(p["queries"]) for p in pages if p and "queries" in p]
    return " / ".join(dict.fromkeys(found)) or "-"


def page_rows(results: dict[str, dict]) -> list[tuple[str, ...]]:
    """(page, SQLite, PostgreSQL, queries, goal, result, SQLite CPU) per page, for the
    databases run."""
    rows = []
    audited = any("audit_events" in result for result in results.values())
    for label, _ in PAGES + AUDIT_PAGES if audited else PAGES:
        pages = [
            results[v].get("pages", {}).get(label) if v in results else None for v in DATABASES
        ]
        ran = [p for v, p in zip(DATABASES, pages, strict=True) if v in results]
        seconds = [p.get("seconds") if p else None for p in ran]
        met = "met" if page_met(seconds) else "MISSED"
        cells = [_ms(p) if v in results else "-" for v, p in zip(DATABASES, pages, strict=True)]
        goal = f"<= {PAGE_GOAL * 1000:.0f} ms"
        rows.append((label, *cells, _queries(pages), goal, met, _sqlite_cpu(pages[0])))
    return rows


def _sqlite_cpu(page: dict | None) -> str:
    """SQLite runs inside the timed process, so its CPU time is the page's work without
    the wait for a busy machine's cores (PostgreSQL's work is in another process)."""
    if not page or "cpu" not in page:
        return ""
    return f"{statistics.median(page['cpu']) * 1000:,.0f} ms"


def _import_judged(figures: dict) -> tuple[bool, float]:
    """Whether the import ran and met its goal, and its peak as a multiple of the file."""
    ratio = figures["peak_rss_bytes"] / figures["file_bytes"]
    ok = figures["exit_code"] == 0 and import_met(figures["peak_rss_bytes"], figures["file_bytes"])
    return ok, ratio


def import_rows(results: dict[str, dict]) -> list[tuple[str, ...]]:
    rows = []
    for vendor, result in results.items():
        figures = result.get("import")
        if not figures:
            rows.append((f"import ({vendor})", result.get("error", "not run"), "", "MISSED"))
            continue
        ok, ratio = _import_judged(figures)
        shown = (
            f"{figures['seconds']:,.0f} s, peak {megabytes(figures['peak_rss_bytes'])} "
            f"= {ratio:.2f}x the file ({megabytes(figures['file_bytes'])}); "
            f"the same command on an empty file: {megabytes(figures['baseline_rss_bytes'])}"
        )
        if figures["exit_code"] != 0:
            shown += f", exit {figures['exit_code']}"
        rows.append(
            (
                f"import_state ({vendor})",
                shown,
                f"<= {IMPORT_MEMORY_GOAL:g}x the file",
                "met" if ok else "MISSED",
            )
        )
    return rows


def text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def figures(results: dict[str, dict], n: int) -> list[Figure]:
    """The same figures for write_json: one per page and database, one per import."""
    out = []
    for vendor, result in results.items():
        if "import" in result:
            i = result["import"]
            ok, ratio = _import_judged(i)
            out.append(
                Figure(
                    f"import_state peak memory ({vendor})",
                    count(n),
                    megabytes(i["peak_rss_bytes"]),
                    f"file {megabytes(i['file_bytes'])} -> {ratio:.2f}x; {i['seconds']:.1f} s",
                    f"<= {IMPORT_MEMORY_GOAL:g}x the file",
                    ok,
                    i,
                )
            )
        for label, _ in PAGES + AUDIT_PAGES if "audit_events" in result else PAGES:
            page = result.get("pages", {}).get(label)
            seconds = page.get("seconds") if page else None
            out.append(
                Figure(
                    f"GET {label} ({vendor})",
                    count(n),
                    _ms(page),
                    f"{page['queries']} queries" if page and "queries" in page else "",
                    f"<= {PAGE_GOAL * 1000:.0f} ms",
                    page_met([seconds]),
                    page or {"error": result.get("error", "not run")},
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = datetime.now()
    load_at_start = load_average()
    state_file = cached_state_file(args.cache, args.size)
    results = {}
    for vendor in DATABASES:
        if vendor in args.only:
            print(f"... {vendor}", file=sys.stderr, flush=True)
            results[vendor] = run_database(vendor, state_file, args.database_url, audit=args.audit)
    for vendor, result in results.items():
        if "error" in result:
            print(f"\n{vendor}: {result['error']}", file=sys.stderr)
    title = (
        f"bench-big at {count(args.size)} messages, {started:%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, "
        f"load average {load_at_start} at start, {load_average()} at end; DEBUG off, "
        f"server time per page: median of 3 after a warm-up"
    )
    header = ("page", "SQLite", "PostgreSQL", "queries", "goal", "result", "SQLite CPU")
    print(f"\n{title}\n\n{text_table(header, page_rows(results))}\n")
    print(
        text_table(("import", "time and peak RSS", "goal", "result"), import_rows(results)) + "\n"
    )
    all_figures = figures(results, args.size)
    path = write_json(
        all_figures,
        args.out,
        database="+".join(results),
        started=started,
        load_at_start=load_at_start,
    )
    # A database that failed still has a figure per page (MISSED), so it is counted here.
    missed = [f for f in all_figures if f.met is False]
    print(
        f"{sum(f.met is True for f in all_figures)} goals met, {len(missed)} missed. Figures written to {path}"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
