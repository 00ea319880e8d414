"""The reviewer queue (/queue/) and the overview (/) with 10,000 pending replies:
server time per request (Django's test client, signed in) and queries per
request, which must not grow with the queue (the same as with 10)."""

from __future__ import annotations

import statistics
import time

from tests.benchmarks import bench_data, environment
from tests.benchmarks.results import Figure, count, seconds

PAGES = ("/queue/", "/")
BIG, SMALL = 10_000, 10
REQUESTS = 50
TIME_GOAL = 0.025  # seconds per request (median)


def _client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="reviewer0"))
    return client


def _get(client, url: str):
    answer = client.get(url)
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answered HTTP {answer.status_code}, not a page")
    return answer


def _queries(client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    return len(captured)


def _times(client, url: str) -> tuple[list[float], list[float]]:
    for _ in range(3):  # warm caches: templates, the first connection
        _get(client, url)
    times, cpu = [], []
    for _ in range(REQUESTS):
        start, start_cpu = time.perf_counter(), time.process_time()
        _get(client, url)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


def _page(url: str, few: int) -> list[Figure]:
    client = _client()
    many = _queries(client, url)
    times, cpu = _times(client, url)
    median = statistics.median(times)
    size = f"{count(BIG)} pending"
    return [
        Figure(
            f"GET {url} server time",
            size,
            f"{seconds(median)} (median of {REQUESTS})",
            f"CPU {seconds(statistics.median(cpu))} (median); slowest {seconds(max(times))}",
            f"<= {seconds(TIME_GOAL)}",
            median <= TIME_GOAL,
            {"median": median, "times": times, "cpu": cpu},
        ),
        Figure(
            f"GET {url} queries",
            size,
            str(many),
            f"{few} with {SMALL} pending",
            f"the same as with {SMALL}",
            many == few,
            {"queries": many, "queries_small": few},
        ),
    ]


def _one_page(url: str, few: dict[str, int]) -> list[Figure]:
    try:
        return _page(url, few[url])
    except Exception as exc:  # one page missing must not hide the other's figures
        return [
            Figure(
                f"GET {url}", f"{count(BIG)} pending", f"could not run: {exc}", "", "runs", False
            )
        ]


def run() -> list[Figure]:
    environment.collect_static()
    bench_data.make_reviewers(1)
    bench_data.load_queue(SMALL)
    client = _client()
    few = {}
    for url in PAGES:
        try:
            few[url] = _queries(client, url)
        except Exception:
            few[url] = -1
    bench_data.load_queue(BIG)
    return [figure for url in PAGES for figure in _one_page(url, few)]
