"""Approvals over real HTTP: gunicorn with 2 workers, 4 signed-in reviewers
approving distinct replies as fast as they can for 10 seconds.

The clients' confirmations are checked against three records the server keeps
independently: the rows that moved, the audit events, the approved counter.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter

from tests.benchmarks import bench_data, environment
from tests.benchmarks.results import Figure, count
from tests.benchmarks.webserver import (
    Approvals,
    approve,
    cpu_seconds,
    free_port,
    sign_in,
    start_gunicorn,
    stop_gunicorn,
)

REVIEWERS = 4
SECONDS = 10.0
WORKERS = 2
QUEUE = 10_000
RATE_GOAL = 150  # approvals per second, on SQLite


def _reviewer(client, pks: list[int], seen: Approvals, start: threading.Barrier, stop_at: list):
    start.wait()
    for pk in pks:
        if time.perf_counter() >= stop_at[0]:
            break
        approve(client, pk, seen)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _records(names: list[str]) -> dict:
    from statecore import rootstate
    from statecore.models import AuditEvent, Message, Status

    moved = Message.objects.filter(status=Status.APPROVED, status_changed_by__in=names)
    return {
        "rows": moved.count(),
        "same_replies": set(moved.values_list("pk", flat=True)),
        "audit": AuditEvent.objects.filter(action="approve", actor__in=names, source="web").count(),
        "counter": rootstate.get_root().total_approved or 0,
    }


def run() -> list[Figure]:
    from statecore.models import Message

    environment.collect_static()
    bench_data.load_queue(QUEUE)
    names = bench_data.make_reviewers(REVIEWERS)
    pks = list(Message.objects.pending().order_by("pk").values_list("pk", flat=True))
    counter_before = _records(names)["counter"]
    port = free_port()
    server = start_gunicorn(port, dict(os.environ), workers=WORKERS)
    try:
        base = f"http://127.0.0.1:{port}"
        clients = [sign_in(base, name, bench_data.REVIEWER_PASSWORD) for name in names]
        seen = [Approvals() for _ in names]
        start, stop_at = threading.Barrier(REVIEWERS + 1), [0.0]
        threads = [
            threading.Thread(target=_reviewer, args=(c, pks[i::REVIEWERS], s, start, stop_at))
            for i, (c, s) in enumerate(zip(clients, seen, strict=True))
        ]
        for t in threads:
            t.start()
        cpu_before = cpu_seconds(server)
        stop_at[0] = time.perf_counter() + SECONDS
        began = time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        took = time.perf_counter() - began
        server_cpu = cpu_seconds(server) - cpu_before
        for c in clients:
            c.close()
    finally:
        stop_gunicorn(server)
    return _figures(seen, took, server_cpu, names, counter_before)


def _figures(
    seen: list[Approvals], took: float, server_cpu: float, names: list[str], counter_before: int
):
    from django.db import connection

    confirmed = [pk for s in seen for pk in s.confirmed]
    latencies = [t for s in seen for t in s.latencies]
    errors = Counter(e for s in seen for e in s.errors)
    records = _records(names)
    rise = records["counter"] - counter_before
    rate = len(confirmed) / took
    # The very replies the clients saw confirmed moved, and each move left its traces.
    same = records.pop("same_replies") == set(confirmed)
    agree = same and len(confirmed) == records["rows"] == records["audit"] == rise
    on_sqlite = connection.vendor == "sqlite"
    p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
    size = f"gunicorn {WORKERS} workers, {REVIEWERS} reviewers, {SECONDS:g} s"
    return [
        Figure(
            "approvals over HTTP",
            size,
            f"{rate:,.0f} approvals/s",
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
            f"server CPU {server_cpu / max(len(latencies), 1) * 1000:.1f} ms/request",
            f">= {RATE_GOAL}/s on SQLite" if on_sqlite else "",
            rate >= RATE_GOAL if on_sqlite else None,
            {
                "rate": rate,
                "confirmed": len(confirmed),
                "requests": len(latencies),
                "seconds": took,
                "p50": p50,
                "p99": p99,
                "server_cpu_seconds": server_cpu,
            },
        ),
        Figure(
            "HTTP errors",
            size,
            count(sum(errors.values())),
            ", ".join(f"{n} {kind}" for kind, n in errors.most_common()),
            "0",
            not errors,
            {"errors": dict(errors)},
        ),
        Figure(
            "approval records agree",
            size,
            f"confirmed {count(len(confirmed))} = rows {count(records['rows'])} = audit "
            f"{count(records['audit'])} = counter +{count(rise)}",
            "the same replies" if same else "NOT the replies the clients saw confirmed",
            "all equal",
            agree,
            {**records, "confirmed": len(confirmed), "counter_rise": rise},
        ),
    ]
