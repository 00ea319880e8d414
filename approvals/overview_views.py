"""The overview at `/`: how the automation is doing, in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from statecore import learning, stats, window
from statecore.models import DraftAttempt, Status

from .access import EXPORT, IMPORT, may, signed_in
from .present import age

# The chart's drawing box (SVG user units; CSS scales it to the page).
CHART_WIDTH = 840
CHART_HEIGHT = 160
AXIS_HEIGHT = 18
# A sender that has not beaten for this long is probably not running (it beats every few seconds).


@dataclass(frozen=True)
class Bar:
    x: str
    width: str
    received_y: str
    received_height: str
    replies_y: str
    replies_height: str
    label: str


@dataclass(frozen=True)
class Tick:
    x: str
    text_x: str
    label: str


def _n(value: float) -> str:
    """An SVG coordinate: plain digits and a dot, whatever the locale."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def chart(hours: list[stats.Hour]) -> dict:
    """Stacked bars per hour (received below, replies drafted above), computed
    here so the template only draws rectangles."""
    peak = max((hour.total for hour in hours), default=0)
    scale = CHART_HEIGHT / peak if peak else 0
    step = CHART_WIDTH / max(len(hours), 1)
    bars, ticks = [], []
    for index, hour in enumerate(hours):
        x = index * step
        received = hour.received * scale
        replies = hour.replies * scale
        if hour.total:
            bars.append(
                Bar(
                    x=_n(x),
                    width=_n(max(step - 1, 1)),
                    received_y=_n(CHART_HEIGHT - received),
                    received_height=_n(received) if hour.received else "",
                    replies_y=_n(CHART_HEIGHT - received - replies),
                    replies_height=_n(replies) if hour.replies else "",
                    label=f"{hour.start:%a %d %b, %H}:00: {hour.received} received, "
                    f"{hour.replies} replies drafted",
                )
            )
        if hour.start.hour == 0:
            ticks.append(Tick(x=_n(x), text_x=_n(x + 3), label=f"{hour.start:%a %d}"))
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT + AXIS_HEIGHT,
        "plot_height": CHART_HEIGHT,
        "label_y": CHART_HEIGHT + AXIS_HEIGHT - 4,
        "peak": peak,
        "bars": bars,
        "ticks": ticks,
        "received": sum(hour.received for hour in hours),
        "replies": sum(hour.replies for hour in hours),
    }


def duration(value: timedelta | None) -> str:
    """A wait as people say it (45 s, 12 min, 3 h 20 min, 2 d 4 h), as the queue says it."""
    return "n/a" if value is None else age(value.total_seconds())


def _waits(title: str, what: str, waits: stats.Waits) -> dict:
    return {
        "title": title,
        "what": what,
        "count": waits.count,
        "median": duration(waits.median),
        "p90": duration(waits.p90),
        "capped": waits.capped,
    }


def lost_to_window(now: datetime) -> dict | None:
    """Replies lost to Cloud's 24-hour window: failed ones whose error says so, in the
    last 7 days (when they failed) and all stored now; one query. None (no query) when
    the gateway has no window."""
    if not window.applies():
        return None
    return window.lost_to_window().aggregate(
        week=Count("pk", filter=Q(status_updated_at__gte=now - stats.WINDOW)),
        stored=Count("pk"),
    )


# --- Learning from the reviewers' decisions (statecore/learning.py) ---------------------


@dataclass(frozen=True)
class LearningRow:
    who: str  # "" for everyone's row
    decided: int
    drafted: stats.Rate
    edited: stats.Rate
    rejected: stats.Rate
    median_edit: str
    unmeasured: int  # edits saved before their size was kept
    reasons: list[tuple[str, int]]


def _characters(value: float | None) -> str:
    if value is None:
        return "n/a"
    shown = f"{value:.1f}".removesuffix(".0")
    return f"{shown} character{'' if value == 1 else 's'}"


def _learning_row(who: str, tally: learning.Tally) -> LearningRow:
    decided = tally.decided
    return LearningRow(
        who=who,
        decided=decided,
        drafted=stats.Rate(tally.drafted, decided),
        edited=stats.Rate(tally.edited, decided),
        rejected=stats.Rate(tally.rejected, decided),
        median_edit=_characters(tally.median_edit),
        unmeasured=tally.edited - len(tally.sizes),
        reasons=tally.top_reasons,
    )


def learning_section(found: learning.Learning) -> dict:
    """The tables of the overview's learning section: everyone, then each reviewer."""
    return {
        "periods": [
            {
                "days": period.days,
                "rows": [
                    _learning_row("", period.everyone),
                    *(_learning_row(name, tally) for name, tally in period.reviewers),
                ],
            }
            for period in found.periods
        ],
        "suggestions": found.suggestions,
        "threshold": found.threshold,
        "capped": found.capped,
        "max_decisions": learning.MAX_DECISIONS,
    }


@signed_in
@require_safe
def overview(request: HttpRequest) -> HttpResponse:
    figures = stats.overview()
    heartbeat = figures.heartbeat
    silent = figures.sender_stopped
    context = {
        "o": figures,
        "statuses": [(status, figures.counts[status.value]) for status in Status],
        "counters": [
            (name.removeprefix("total_"), figures.totals.get(name))
            for name in (
                "total_incoming",
                "total_approved",
                "total_rejected",
                "total_sent",
                "total_failed",
            )
        ],
        "waits": [
            _waits("Draft to decision", "decisions by a person", figures.decision_waits),
            _waits("Approval to sent", "replies sent", figures.send_waits),
        ],
        "chart": chart(figures.hours),
        "drafting_failed": DraftAttempt.objects.filter(outcome=DraftAttempt.Outcome.FAILED).count(),
        "lost_to_window": lost_to_window(figures.now),
        "sender_silent": silent,
        "heartbeat_age": duration(figures.now - heartbeat.beat_at) if heartbeat else None,
        "oldest_wait": duration(figures.now - figures.oldest_pending.timestamp)
        if figures.oldest_pending and figures.oldest_pending.timestamp
        else None,
        "can_export": may(request.user, EXPORT),
        "can_import": may(request.user, IMPORT),
        # The banner's verdict, already worked out above: the context processor's own
        # would read the state's row a second time.
        "session_banner": figures.session,
        "learning": learning_section(learning.summary(figures.now)),
    }
    return render(request, "approvals/overview.html", context)
