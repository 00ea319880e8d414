"""Learning from edits: the edit's size, the overview's figures, the auto suggestion.

Every figure is checked against a history built by hand with the lifecycle's verbs,
each at a chosen moment (the clock is set before each step)."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from statecore import chat_modes, clock, editdistance, learning, lifecycle
from statecore.editdistance import Distance, edit_distance
from statecore.learning import Outcome
from statecore.models import AuditEvent, Message, Source
from tests.factories import make_incoming, make_reply

pytestmark = pytest.mark.django_db

NOW = timezone.make_aware(datetime(2026, 11, 25, 10, 30))
_chats = itertools.count(1)


class Clock:
    """clock.now, set by the test: each step of a history happens when it says."""

    def __init__(self) -> None:
        self.at = NOW

    def __call__(self) -> datetime:
        return self.at

    def days_ago(self, days: float, seconds: int = 0) -> None:
        self.at = NOW - timedelta(days=days) + timedelta(seconds=seconds)


@pytest.fixture
def at(monkeypatch) -> Clock:
    moment = Clock()
    monkeypatch.setattr(clock, "now", moment)
    return moment


WEB = {"source": Source.WEB}


def draft(body: str = "Thanks, we will reply soon.", *, chat: str | None = None) -> str:
    number = chat or f"92311{next(_chats):07d}"
    return make_reply(incoming=make_incoming(number=number), body=body).message_id


def approve(mid: str, who: str) -> None:
    lifecycle.approve(mid, actor=who, **WEB)


def edit(mid: str, text: str, who: str) -> None:
    lifecycle.edit_and_approve(mid, text, actor=who, **WEB)


def reject(mid: str, who: str, reason: str = "") -> None:
    lifecycle.reject(mid, actor=who, reason=reason, **WEB)


def undo(mid: str, who: str) -> None:
    lifecycle.undo(mid, actor=who, **WEB)


def reopen(mid: str, who: str) -> None:
    lifecycle.reopen(mid, actor=who, **WEB)


# --- The edit distance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("same text", "same text", 0),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("Hello there", "Hello there!", 1),
        ("abc", "xyz", 3),
        ("ab", "ba", 2),  # a swap is two edits (Levenshtein, not Damerau)
        ("Thanks, we will reply soon.", "Thanks! We'll reply soon.", 5),
        ("café", "cafe", 1),
        ("cafe\u0301", "café", 0),  # the same letter, decomposed: NFC makes them equal
        ("Hi 👋", "Hi 👋🏽", 1),  # a skin-tone modifier is one code point more
        ("Привет, мир", "привет мир", 2),
        ("مرحبا", "مرحبًا", 1),
        ("日本語のテキスト", "日本のテキスト", 1),
        ("aaaa", "aaaaaaaa", 4),  # common prefix and suffix overlap
        ("abcXdef", "abcYdef", 1),
    ],
)
def test_edit_distance_on_a_table_of_pairs(a, b, expected):
    assert edit_distance(a, b) == Distance(expected, True)
    assert edit_distance(b, a) == Distance(expected, True)


def test_edit_distance_past_the_cap_is_an_upper_bound_and_says_so():
    a, b = "x" + "a" * 3000 + "x", "y" + "b" * 2000 + "y"
    assert edit_distance(a, b, max_cells=10_000) == Distance(3002, False)
    # The common prefix and suffix are not counted against the cap.
    long = "same " * 10_000
    assert edit_distance(long + "a" + long, long + "b" + long, max_cells=10) == Distance(1, True)


def test_edit_distance_at_the_cap_is_exact():
    assert edit_distance("abcd", "wxyz", max_cells=16) == Distance(4, True)
    assert edit_distance("abcd", "wxyz", max_cells=15) == Distance(4, False)


def test_an_edit_stores_its_distance_in_its_audit_row(at):
    mid = draft("Hello there")
    edit(mid, "Hello there!", "dana")
    event = AuditEvent.objects.get(message_id=mid, action="approve")
    assert event.detail == {"original": "Hello there", "edited": "Hello there!", "distance": 1}


def test_an_edit_too_long_to_measure_stores_an_upper_bound_flagged(at, monkeypatch):
    monkeypatch.setattr(editdistance, "MAX_CELLS", 4)
    mid = draft("abc")
    edit(mid, "xyz", "dana")
    detail = AuditEvent.objects.get(message_id=mid, action="approve").detail
    assert (detail["distance"], detail["distance_capped"]) == (3, True)


def test_a_second_edit_after_an_undo_or_a_reopen_measures_from_the_assistants_draft(at):
    mid = draft("abc")
    edit(mid, "abd", "dana")
    undo(mid, "dana")
    edit(mid, "abc!", "dana")  # 2 from "abd", 1 from the assistant's "abc"
    reopen(mid, "sam")
    edit(mid, "xbc", "sam")  # 2 from "abc!", 1 from "abc"
    rows = AuditEvent.objects.filter(message_id=mid, action="approve").order_by("pk")
    assert [event.detail for event in rows] == [
        {"original": "abc", "edited": "abd", "distance": 1},
        {"original": "abd", "edited": "abc!", "distance": 1},
        {"original": "abc!", "edited": "xbc", "distance": 1},
    ]


# --- The overview's figures ---------------------------------------------------------------


def build_history(at: Clock) -> None:
    """Two reviewers over 40 days; the expected figures are worked out in the tests."""
    at.days_ago(40)
    old = draft("Old")
    edit(old, "Older", "dana")  # outside both windows
    at.days_ago(20)
    moved = draft("Moved")
    approve(moved, "dana")
    at.days_ago(12)
    d11 = draft()
    reject(d11, "dana", "wrong price")
    at.days_ago(10)
    d10 = draft()
    approve(d10, "sam")
    at.days_ago(3)
    reopen(moved, "sam")
    reject(moved, "sam", "Too formal")  # decided again: counts in the last 7 days, as sam's
    d3 = draft("abc")
    edit(d3, "xyz", "sam")  # 3
    at.days_ago(2)
    d2 = draft("Hello there")
    edit(d2, "Hello there!", "dana")  # 1
    d5 = draft()
    reject(d5, "dana", "too FORMAL")
    d7 = draft("abcde")
    edit(d7, "vwxyz", "dana")  # 5
    undo(d7, "dana")
    approve(d7, "sam")  # the edited text stands: edited, by sam, 5
    at.days_ago(1)
    d1 = draft()
    approve(d1, "dana")
    d4 = draft()
    reject(d4, "sam", "  Too   formal ")
    d6 = draft()
    approve(d6, "dana")
    undo(d6, "dana")
    reject(d6, "dana", "Wrong price")  # counts once, as the rejection
    d8 = draft()
    approve(d8, "dana")
    undo(d8, "dana")  # pending again: not counted
    d9 = draft()
    approve(d9, lifecycle.AUTOMATIC_ACTOR)  # nobody reviewed it
    same = draft("Same")
    edit(same, "Same", "sam")  # an edit that kept the text: approved as drafted
    at.days_ago(0)


def figures(tally: learning.Tally) -> tuple:
    return (tally.drafted, tally.edited, tally.rejected, tally.median_edit, tally.top_reasons)


def test_every_learning_figure_of_a_hand_built_history(at, settings):
    settings.SUGGEST_AUTO_AFTER = 0
    build_history(at)
    week, month = learning.summary(NOW).periods
    assert (week.days, month.days) == (7, 30)
    assert figures(week.everyone) == (2, 3, 4, 3, [("too formal", 3), ("wrong price", 1)])
    assert [(name, figures(t)) for name, t in week.reviewers] == [
        ("sam", (1, 2, 2, 4, [("too formal", 2)])),
        ("dana", (1, 1, 2, 1, [("too formal", 1), ("wrong price", 1)])),
    ]
    assert figures(month.everyone) == (3, 3, 5, 3, [("too formal", 3), ("wrong price", 2)])
    assert [(name, figures(t)) for name, t in month.reviewers] == [
        ("sam", (2, 2, 2, 4, [("too formal", 2)])),
        ("dana", (1, 1, 3, 1, [("wrong price", 2), ("too formal", 1)])),
    ]
    assert week.everyone.decided == 9 and month.everyone.decided == 11


def test_the_figures_take_two_queries_whatever_the_history(at, django_assert_num_queries):
    # The decisions, and the chats already in `auto` (never suggested).
    build_history(at)
    with django_assert_num_queries(2):
        learning.summary(NOW)
    for _ in range(20):
        approve(draft(), "dana")
    with django_assert_num_queries(2):
        learning.summary(NOW)


def test_only_the_most_recent_decisions_are_read_and_the_cap_is_said(at, monkeypatch):
    for days in (3, 2, 1):
        at.days_ago(days)
        approve(draft(), "dana")
    monkeypatch.setattr(learning, "MAX_DECISIONS", 2)
    found, capped = learning.decisions(NOW, 30)
    assert capped is True and [d.at for d in found] == [
        NOW - timedelta(days=1),
        NOW - timedelta(days=2),
    ]
    assert learning.summary(NOW).capped is True


def test_an_edit_saved_before_sizes_were_kept_is_edited_but_not_measured(at, rc):
    mid = draft("abc")
    edit(mid, "xyz", "dana")
    event = AuditEvent.objects.get(message_id=mid, action="approve")
    AuditEvent.objects.filter(pk=event.pk).update(
        detail={"original": "abc", "edited": "xyz"}
    )  # the shape of an older row
    tally = learning.summary(NOW).periods[0].everyone
    assert (tally.edited, tally.sizes, tally.median_edit) == (1, [], None)
    everyone = cells(row_html(rc.get("/").content.decode(), "7", ""))
    assert everyone["median-edit"] == "n/a (1 not measured)"


def test_the_median_edit_of_an_even_count_is_the_mean_of_the_middle_two():
    tally = learning.Tally()
    for size in (4, 1, 10, 2):
        tally.add(learning.Decision("m", "dana", NOW, Outcome.EDITED, size, "", None))
    assert tally.median_edit == 3


def test_the_top_reasons_are_five_most_common_first_ties_by_text():
    tally = learning.Tally()
    for reason, n in {"f": 1, "e": 2, "d": 2, "c": 3, "b": 1, "a": 1, "  ": 4}.items():
        for _ in range(n):
            tally.add(learning.Decision("m", "x", NOW, Outcome.REJECTED, None, reason, None))
    assert tally.top_reasons == [("c", 3), ("d", 2), ("e", 2), ("a", 1), ("b", 1)]
    assert tally.rejected == 14  # a rejection without a reason is still a rejection


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  Too   formal ", "too formal"), ("STRASSE", "strasse"), ("Straße", "strasse"), ("", "")],
)
def test_a_reason_is_trimmed_and_case_folded(text, expected):
    assert learning.normalised_reason(text) == expected


# --- The suggestion for `auto` ----------------------------------------------------------------


def run_of(at: Clock, chat: str, steps: str) -> None:
    """Drafts of one chat decided one after the other: a = as drafted, e = edited, r = rejected."""
    for step in steps:
        at.at += timedelta(minutes=1)
        mid = draft("Draft", chat=chat)
        if step == "a":
            approve(mid, "dana")
        elif step == "e":
            edit(mid, "Edited", "dana")
        else:
            reject(mid, "dana", "no")


def test_a_chat_is_suggested_for_auto_after_n_unedited_approvals_running(at, settings):
    settings.SUGGEST_AUTO_AFTER = 3
    at.days_ago(5)
    run_of(at, "923009990001", "aa")  # N-1: no
    run_of(at, "923009990002", "aaa")  # N: yes
    run_of(at, "923009990003", "aaeaa")  # an edit resets the run
    run_of(at, "923009990004", "raaaa")  # a rejection before the run does not count
    run_of(at, "923009990005", "aaar")  # the latest was rejected
    assert learning.summary(NOW).suggestions == [
        learning.AutoSuggestion("923009990004", 4),
        learning.AutoSuggestion("923009990002", 3),
    ]


def test_decisions_nobody_reviewed_neither_extend_nor_end_a_run(at, settings):
    settings.SUGGEST_AUTO_AFTER = 2
    at.days_ago(5)
    run_of(at, "923009990006", "a")
    approve(draft(chat="923009990006"), lifecycle.AUTOMATIC_ACTOR)
    assert learning.summary(NOW).suggestions == []
    run_of(at, "923009990006", "a")
    assert learning.summary(NOW).suggestions == [learning.AutoSuggestion("923009990006", 2)]


def test_no_suggestion_when_the_setting_is_0_or_the_chat_is_skipped(at, settings):
    at.days_ago(5)
    run_of(at, "923009990007", "aaa")
    found, _ = learning.decisions(NOW, 30)
    assert learning.suggest_auto(found, threshold=0) == []
    assert learning.suggest_auto(found, threshold=3, skip={"923009990007"}) == []
    assert learning.suggest_auto(found, threshold=3) == [learning.AutoSuggestion("923009990007", 3)]


def test_a_chat_already_in_auto_is_not_suggested(at, settings):
    settings.SUGGEST_AUTO_AFTER = 2
    at.days_ago(5)
    run_of(at, "923009990009", "aa")
    run_of(at, "923009990010", "aa")
    chat_modes.set_mode("923009990009", "auto", actor="dana", source="web")
    assert learning.summary(NOW).suggestions == [learning.AutoSuggestion("923009990010", 2)]


def test_a_suggestion_changes_nothing(at, settings):
    settings.SUGGEST_AUTO_AFTER = 1
    at.days_ago(1)
    run_of(at, "923009990008", "a")
    before = (Message.objects.count(), AuditEvent.objects.count())
    with CaptureQueriesContext(connection) as queries:
        assert learning.summary(NOW).suggestions
    assert all(q["sql"].lstrip().upper().startswith("SELECT") for q in queries)
    assert (Message.objects.count(), AuditEvent.objects.count()) == before


# --- The overview page -------------------------------------------------------------------


def row_html(html: str, table: str, who: str) -> str:
    section = html.split(f'id="ov-learning-{table}"', 1)[1].split("</table>", 1)[0]
    for row in section.split("<tr")[1:]:
        if f"<bdi>{who}</bdi>" in row or (who == "" and "All reviewers" in row):
            return row
    raise AssertionError(f"no row for {who!r} in the {table}-day table")


def cells(row: str) -> dict[str, str]:
    return {
        name: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()
        for name, text in re.findall(r'<td data-figure="([^"]+)">(.*?)</td>', row, re.S)
    }


def test_the_overview_shows_every_learning_figure(at, settings, rc):
    settings.SUGGEST_AUTO_AFTER = 3
    build_history(at)
    at.days_ago(1)
    run_of(at, "923009990002", "aaa")
    at.days_ago(0)
    html = rc.get("/").content.decode()
    assert cells(row_html(html, "7", "")) == {
        "decided": "12",
        "drafted": "41.7% (5)",
        "edited": "25.0% (3)",
        "rejected": "33.3% (4)",
        "median-edit": "3 characters",
        "reasons": "too formal (3) wrong price (1)",
    }
    assert cells(row_html(html, "7", "sam")) == {
        "decided": "5",
        "drafted": "20.0% (1)",
        "edited": "40.0% (2)",
        "rejected": "40.0% (2)",
        "median-edit": "4 characters",
        "reasons": "too formal (2)",
    }
    assert cells(row_html(html, "30", "dana"))["reasons"] == "wrong price (2) too formal (1)"
    assert cells(row_html(html, "30", "dana"))["median-edit"] == "1 character"
    assert '<strong data-run="923009990002">3</strong>' in html
    assert "?q=923009990002" in html


def test_the_overview_shows_reviewers_and_reasons_as_text(at, rc):
    reject(draft(), "dana", "<script>alert(1)</script>")
    html = rc.get("/").content.decode()
    assert '<q dir="auto">&lt;script&gt;alert(1)&lt;/script&gt;</q> (1)' in html
    assert "<script>alert" not in html


def test_the_overview_says_when_nothing_was_decided_and_the_suggestion_is_off(at, settings, rc):
    settings.SUGGEST_AUTO_AFTER = 0
    html = rc.get("/").content.decode()
    assert cells(row_html(html, "7", ""))["drafted"] == "n/a (0)"
    assert "(<code>SUGGEST_AUTO_AFTER</code> is 0)" in html
