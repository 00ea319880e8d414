"""Every page at any volume: the same number of queries with 10 messages as with
10,000 (no query per row), no COUNT(*) of a whole list to paginate it (past
statecore.paging.COUNT_CAP a list says "10,000+"), and deep pages that still open."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from approvals import queue
from statecore import paging
from statecore.models import AuditEvent, Message, Status
from statecore.paging import CountedPaginator
from tests.query_data import CYCLE, bulk_state

# Sizes in messages: bulk_state(n) writes about 2.25 messages per reply.
SIZES = (10, 10_000)
PAGES = [
    "/",
    "/queue/",
    "/queue/?kind=direct",
    "/queue/?waited=1",
    "/queue/?page=3",
    "/history/",
    "/history/?status=sent",
    "/history/?reviewer=bulk",
    "/history/?page=3",
    "/history/?status=failed&page=2",
    "/session/",
    "/admin/statecore/message/",
    "/admin/statecore/message/?status__exact=sent",
    "/admin/statecore/message/?p=3",
    "/admin/statecore/message/?chat_kind=group&status__exact=incoming",
    "/admin/statecore/auditevent/",
    "/admin/statecore/gatewayevent/",
    "/admin/statecore/logentry/",
]


@pytest.fixture
def boss(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.org", "pw"))
    return client


def _grow_to(messages: int) -> None:
    """Add bulk replies (and what they answer) until the table holds about `messages`,
    a reply in every status at least."""
    missing = messages - Message.objects.count()
    if missing > 0:
        bulk_state(max(len(CYCLE), missing * 4 // 9))


def _queries(client: Client, url: str) -> list[str]:
    client.get(url)  # caches warm (the root row, the session), as on a second visit
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("url", PAGES)
def test_each_page_takes_the_same_queries_at_every_size(boss, url):
    counts = {}
    for size in SIZES:
        _grow_to(size)
        counts[size] = len(_queries(boss, url))
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("url", PAGES)
def test_no_page_counts_a_whole_list_of_messages(boss, url):
    """A COUNT of the message table reads the count table, a range of an index, or
    a LIMITed subquery; never every row of a list, and never GROUP BY status."""
    bulk_state(20)
    for sql in _queries(boss, url):
        if 'FROM "statecore_message"' not in sql or "COUNT(" not in sql:
            continue
        assert 'GROUP BY "statecore_message"."status"' not in sql, sql
        bounded = "LIMIT" in sql or '"timestamp" <' in sql or '"timestamp" >=' in sql
        assert bounded, sql


# --- "10,000+" ---------------------------------------------------------------------------


@pytest.fixture
def small_cap(monkeypatch):
    """A cap of 20 and pages of 5, so "past the cap" takes a few dozen rows."""
    from django.contrib import admin

    monkeypatch.setattr(paging, "COUNT_CAP", 20)
    monkeypatch.setattr(queue, "PAGE_SIZE", 5)
    for model in (Message, AuditEvent):
        monkeypatch.setattr(admin.site._registry[model], "list_per_page", 5)


def test_a_deep_page_past_the_cap_opens_and_counts_to_its_end(boss, small_cap):
    bulk_state(60)
    page = boss.get("/history/", {"reviewer": "bulk", "page": 7}).content.decode()
    assert "Page 7 · 35+ replies" in page  # not sent back to page 4 of "20+"
    last = boss.get("/history/", {"reviewer": "bulk", "page": 10}).content.decode()
    assert "Page 10 of 10 · 48 replies" in last and "Older →" not in last


ROW_BY_ROW = [
    pytest.param("/history/", {"q": "answer"}, "replies", id="history-search"),
    pytest.param("/queue/", {"q": "answer"}, "waiting", id="queue-search"),
    pytest.param("/queue/", {"kind": "direct"}, "waiting", id="queue-kind"),
    pytest.param("/history/", {"reviewer": "bulk"}, "replies", id="history-reviewer"),
]


@pytest.mark.parametrize(("path", "params", "noun"), ROW_BY_ROW)
def test_a_list_filtered_row_by_row_counts_only_as_far_as_its_page(
    boss, small_cap, path, params, noun
):
    # A search or a chat kind is tested on each row as the list is walked: counting
    # past the page would walk past it (at a million messages, ten times the page's time).
    bulk_state(150)  # 30 pending drafts, 120 handled replies: each answers "Answer n"
    assert f"Page 1 · 5+ {noun}" in boss.get(path, params).content.decode()
    assert f"Page 3 · 15+ {noun}" in boss.get(path, params | {"page": 3}).content.decode()


def test_an_unfiltered_history_shows_the_exact_count_from_the_count_table(boss, small_cap):
    bulk_state(60)
    page = boss.get("/history/").content.decode()
    assert "Page 1 of 10 · 48 replies" in page


def test_an_unfiltered_queue_shows_the_exact_count_from_the_count_table(boss, small_cap):
    bulk_state(150)  # 30 pending drafts
    assert "Page 1 of 6 · 30 waiting" in boss.get("/queue/").content.decode()


def test_the_admin_list_past_the_cap_says_so_and_the_whole_list_its_total(boss, small_cap):
    bulk_state(60)
    total = Message.objects.count()
    filtered = boss.get("/admin/statecore/message/", {"status__exact": "incoming"})
    assert "20+ messages" in filtered.content.decode()
    whole = boss.get("/admin/statecore/message/").content.decode()
    assert f"{total:,} messages" in whole


def test_an_admin_search_counts_only_as_far_as_its_page(boss, small_cap):
    bulk_state(60)  # every reply answers "Answer n"
    searched = boss.get("/admin/statecore/message/", {"q": "answer"}).content.decode()
    assert "5+ messages" in searched  # a page of 5, and more: not counted to the cap of 20


def test_the_admin_audit_list_past_the_cap_says_so(boss, small_cap):
    bulk_state(60)
    assert AuditEvent.objects.count() > 20
    assert "20+ audit events" in boss.get("/admin/statecore/auditevent/").content.decode()


# --- The pager itself --------------------------------------------------------------------


def test_the_pager_uses_a_count_it_is_told():
    pages = CountedPaginator(list(range(5)), 2, count=120_000)
    assert (pages.count, pages.num_pages, pages.count_label) == (120_000, 60_000, "120,000")


def test_the_pager_counts_to_the_cap_and_then_says_more():
    pages = CountedPaginator(list(range(100)), 10, cap=25)
    page = pages.get_page(2)
    assert (pages.count, pages.capped, pages.count_label) == (26, True, "25+")
    assert page.has_next() and pages.num_pages == 3  # the third: at least one more row


def test_the_pager_counts_as_far_as_a_deep_page_asked():
    pages = CountedPaginator(list(range(100)), 10, cap=25)
    page = pages.get_page(7)
    assert (page.number, pages.count_label, page.has_next()) == (7, "70+", True)


def test_the_pager_counts_exactly_a_list_shorter_than_what_was_asked():
    pages = CountedPaginator(list(range(30)), 10, cap=25)
    page = pages.get_page(9)  # past the end: the last page, as Django's get_page does
    assert (page.number, pages.count, pages.capped, pages.count_label) == (3, 30, False, "30")


def test_an_absurdly_deep_page_is_the_last_one_not_an_error(boss):
    bulk_state(6)
    for url in ("/history/", "/queue/"):
        page = boss.get(url, {"q": "Answer", "page": "9" * 20})
        assert page.status_code == 200
        assert "Answer " in page.content.decode()  # the one page there is, with its replies


def test_the_pager_counts_a_queryset_through_a_limit_in_the_lists_own_order(db):
    # In the list's order the database reads the rows the pages read and stops where
    # they would; in any order it may start from the rows the list holds least of.
    bulk_state(4)
    pages = CountedPaginator(Message.objects.order_by("-timestamp"), 2, cap=3)
    with CaptureQueriesContext(connection) as captured:
        assert pages.count == 4
    (sql,) = [q["sql"] for q in captured.captured_queries]
    assert "LIMIT 4" in sql and 'ORDER BY "statecore_message"."timestamp" DESC' in sql
    assert pages.capped and Message.objects.filter(status=Status.INCOMING).count() > 3
