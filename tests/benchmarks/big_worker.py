"""One database of `make bench-big`: import a cached state file, then time every page.

    python -m tests.benchmarks.big_worker STATE_FILE RESULT_JSON [--database-url URL]

Run by `bench_big` in a process of its own per database, because Django's
settings (DATABASE_URL) are fixed once it starts. The import runs the real
`manage.py import_state` in a child process, so its peak memory (the child's
maximum resident set, from wait4) is the command's alone. The pages are then
requested through Django's test client, signed in as a superuser (the admin
lists need one), with DEBUG off: a warm-up, three timed requests, and one more
whose queries are counted. The figures go to RESULT_JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.benchmarks import environment
from tests.benchmarks.results import REPO_ROOT

# (label in the table, URL): the table first, then the other pages it names.
PAGES = (
    ("/", "/"),
    ("/queue/", "/queue/"),
    ("/queue/?q=invoice", "/queue/?q=invoice"),
    ("/queue/?q=9230", "/queue/?q=9230"),
    ("/history/", "/history/"),
    ("/history/?q=payment", "/history/?q=payment"),
    ("/history/?page=400", "/history/?page=400"),
    ("/history/?status=failed", "/history/?status=failed"),
    ("admin messages ?q=payment", "/admin/statecore/message/?q=payment"),
    ("admin messages ?q=Zoë", "/admin/statecore/message/?q=Zo%C3%AB"),
    # Searches beyond the table: a name without its accent over the history,
    # a word held by many replies, a longer fragment of a number (tens of thousands of hits).
    ("/history/?q=zoe", "/history/?q=zoe"),
    ("/history/?q=invoice", "/history/?q=invoice"),
    ("/history/?q=9230057", "/history/?q=9230057"),
    ("/queue/?kind=direct", "/queue/?kind=direct"),
    # The other filters people use, at a million: a chat kind that is a few in a hundred,
    # a fragment too short for the index, and the admin's lists of one status or kind.
    ("/queue/?kind=group", "/queue/?kind=group"),
    ("/queue/?q=zo", "/queue/?q=zo"),
    ("/history/?q=zo", "/history/?q=zo"),
    ("admin messages ?status=incoming", "/admin/statecore/message/?status__exact=incoming"),
    ("admin messages ?kind=incoming", "/admin/statecore/message/?kind=incoming"),
    ("admin messages ?q=9230057", "/admin/statecore/message/?q=9230057"),
    ("admin messages by last change, oldest first", "/admin/statecore/message/?o=6"),
    ("/session/", "/session/"),
    ("admin messages", "/admin/statecore/message/"),
    ("admin audit events", "/admin/statecore/auditevent/"),
    ("admin gateway events", "/admin/statecore/gatewayevent/"),
)
# With --audit (a year of decisions in the audit log): a busy reviewer's replies, and a
# name with many events but no decisions.
AUDIT_PAGES = (
    ("/history/?reviewer=dana", "/history/?reviewer=dana"),
    ("/history/?reviewer=sender", "/history/?reviewer=sender"),
)
TIMED_REQUESTS = 3
ADMIN_USERNAME = "bench-admin"


def import_with_command(path: Path) -> dict:
    """`manage.py import_state path` in a child: wall time, exit code and peak RSS.

    The peak is the whole process's, as a server would see it; the same command
    on an empty state, measured first, says how much of it is Python and Django."""
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.json"
        empty.write_bytes(b"{}")
        baseline = _run_import(empty)
    return _run_import(path) | {"baseline_rss_bytes": baseline["peak_rss_bytes"]}


def _run_import(path: Path) -> dict:
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "import_state", str(path), "--actor", "bench"],
        cwd=REPO_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    # wait4 gives this child's own rusage, not the maximum over every child so far.
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    return {
        "seconds": elapsed,
        "exit_code": child.returncode,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports kilobytes
        "file_bytes": path.stat().st_size,
        "output": out.read().decode("utf-8", "replace")[-2000:],
    }


# A year of decisions beside the messages: the state file holds no audit log, so each
# handled reply is given the events a busy shop's would have (its draft added, decided
# by one of four reviewers, and sent or failed by the sender): 1.26 million rows.
REVIEWERS = ("dana", "sam", "ali", "fatima")


def add_a_year_of_decisions() -> int:
    """One INSERT ... SELECT per kind of event, the same SQL on both databases."""
    from django.db import connection, transaction

    handled = "status IN ('approved', 'rejected', 'sent', 'failed')"
    reviewer = (
        "CASE id % 4 "
        + " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(REVIEWERS))
        + " END"
    )
    decision = "CASE WHEN status = 'rejected' THEN 'reject' ELSE 'approve' END"
    decided = "CASE WHEN status = 'rejected' THEN 'rejected' ELSE 'approved' END"
    sent = "CASE WHEN status = 'sent' THEN 'mark_sent' ELSE 'mark_failed' END"
    events = [
        ("'add'", "''", "'pending_approval'", "'assistant'", "'api'", handled),
        (decision, "'pending_approval'", decided, reviewer, "'web'", handled),
        (sent, "'approved'", "status", "'sender'", "'worker'", "status IN ('sent', 'failed')"),
    ]
    columns = "message_id, action, from_status, to_status, actor, source, note, detail, created_at"
    added = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for action, before, after, actor, source, which in events:
            cursor.execute(
                f"INSERT INTO statecore_auditevent ({columns}) "
                f"SELECT message_id, {action}, {before}, {after}, {actor}, {source}, '', '{{}}', "
                f"COALESCE(status_updated_at, timestamp) FROM statecore_message "
                f"WHERE {which} AND COALESCE(status_updated_at, timestamp) IS NOT NULL"
            )
            added += cursor.rowcount
    return added


def _analyze(vendor: str) -> None:
    """PostgreSQL's autovacuum analyses a table soon after a bulk load; do it now so the
    timed plans are the ones a running server would choose."""
    if vendor != "postgresql":
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def _get(client, url: str) -> None:
    answer = client.get(url)
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}")


def time_page(client, url: str) -> dict:
    """Median server time of TIMED_REQUESTS after a warm-up, and the queries of one more."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _get(client, url)
    times, cpu = [], []
    for _ in range(TIMED_REQUESTS):
        start, start_cpu = time.perf_counter(), time.process_time()
        _get(client, url)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    return {
        "seconds": statistics.median(times),
        "times": times,
        "cpu": cpu,
        "queries": len(captured),
    }


def time_pages(pages_asked=PAGES) -> dict[str, dict]:
    environment.collect_static()
    client = _client()
    pages = {}
    for label, url in pages_asked:
        print(f"    {label}", file=sys.stderr, flush=True)
        try:
            pages[label] = {"url": url} | time_page(client, url)
        except Exception as exc:  # one page failing must not hide the others' figures
            pages[label] = {"url": url, "error": str(exc) or type(exc).__name__}
    return pages


def run(state_file: Path, database_url: str | None, *, audit: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="whatsapp-bench-big-"))
    db = environment.make_database(workdir, database_url)
    result: dict = {"database": db.vendor}
    try:
        environment.set_environment(db, workdir)
        environment.start_django()
        from django.db import connections

        connections.close_all()  # the import's child gets the database to itself
        print(f"  {db.vendor}: import_state", file=sys.stderr, flush=True)
        result["import"] = import_with_command(state_file)
        if result["import"]["exit_code"] != 0:
            result["error"] = "import_state failed:\n" + result["import"]["output"]
            return result
        if audit:
            print(f"  {db.vendor}: a year of decisions in the audit log", file=sys.stderr)
            result["audit_events"] = add_a_year_of_decisions()
        _analyze(db.vendor)
        print(f"  {db.vendor}: pages", file=sys.stderr, flush=True)
        result["pages"] = time_pages(PAGES + AUDIT_PAGES if audit else PAGES)
    except Exception as exc:
        traceback.print_exc()
        result["error"] = str(exc) or type(exc).__name__
    finally:
        from django.db import connections

        connections.close_all()
        db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_file", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--database-url", help="PostgreSQL; SQLite (a scratch file) when absent")
    parser.add_argument("--audit", action="store_true", help="add a year of decisions first")
    args = parser.parse_args(argv)
    result = run(args.state_file, args.database_url, audit=args.audit)
    args.result.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
