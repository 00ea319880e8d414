"""`make bench`: every figure of issue 7 in one run, on a database of its own.

    python -m tests.benchmarks.run [--database-url postgres://user@host/db]
                                   [--sizes 1000,10000,100000] [--only import,moves,...]

Prints a table with each goal marked met or MISSED and writes the same figures
to bench-results/bench-<date>-<commit>.json. Exits 1 when a goal is missed or a
part could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path

from tests.benchmarks import environment
from tests.benchmarks.results import (
    REPO_ROOT,
    Figure,
    load_average,
    markdown_table,
    table,
    write_json,
)

PARTS = ("statefile", "moves", "pages", "http", "writers")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run on (a database of its own is created there and dropped)",
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="message counts N")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run: {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.only = [p for p in args.only.split(",") if p]
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def _run_part(name: str, run) -> list[Figure]:
    print(f"... {name}", file=sys.stderr, flush=True)
    try:
        return run()
    except Exception as exc:  # a part that cannot run is reported, the others still run
        traceback.print_exc()
        return [Figure(name, "", f"could not run: {exc}", goal="runs", met=False)]


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = datetime.now()
    load_at_start = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="whatsapp-bench-"))
    db = environment.make_database(workdir, args.database_url)
    try:
        environment.set_environment(db, workdir)
        environment.start_django()
        figures = _run_parts(args, workdir)
    finally:
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    title = (
        f"Benchmarks on {db.vendor}, {started:%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, "
        f"load average {load_at_start} at start, {load_average()} at end"
    )
    print(f"\n{title}\n\n{table(figures)}\n")
    if args.markdown:
        print(markdown_table(figures) + "\n")
    path = write_json(
        figures, args.out, database=db.vendor, started=started, load_at_start=load_at_start
    )
    missed = [f for f in figures if f.met is False]
    met = sum(f.met is True for f in figures)
    print(f"{met} goals met, {len(missed)} missed. Figures written to {path}")
    return 1 if missed else 0


def _run_parts(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    from tests.benchmarks import bench_moves, bench_statefile, bench_writers

    files = bench_statefile.state_files(args.sizes, workdir)
    figures: list[Figure] = []
    if "statefile" in args.only:
        figures += _run_part("import and export", lambda: bench_statefile.run(args.sizes, files))
    if "moves" in args.only:
        figures += _run_part("move_message", lambda: bench_moves.run(args.sizes, workdir, files))
    if "pages" in args.only:
        from tests.benchmarks import bench_pages

        figures += _run_part("pages", bench_pages.run)
    if "http" in args.only:
        from tests.benchmarks import bench_http

        figures += _run_part("approvals over HTTP", bench_http.run)
    if "writers" in args.only:
        figures += _run_part("concurrent writers", lambda: bench_writers.run(workdir))
    return figures


if __name__ == "__main__":
    sys.exit(main())
