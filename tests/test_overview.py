"""The overview's figures, each checked against a state built by hand."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from statecore import rootstate, stats
from statecore.models import AuditEvent, Heartbeat, Message, StateRoot, Status
from statecore.statefile.columns import dumps_compact, message_columns

pytestmark = pytest.mark.django_db

_ids = itertools.count(1)


def local(text: str) -> datetime:
    """An aware moment from a naive local time, as the scripts write them."""
    return timezone.make_aware(datetime.fromisoformat(text))


NOW = local("2026-11-25T10:30:00")


def naive(moment: datetime) -> str:
    return timezone.localtime(moment).replace(tzinfo=None).isoformat()


def message(status: str, *, at: datetime | None, reply_to: str = "", mid: str = "") -> Message:
    """A stored message made directly, without the lifecycle (no audit event)."""
    n = next(_ids)
    data = {"id": mid or f"m{n}", "body": f"text {n}"}
    if at is not None:
        data["timestamp"] = naive(at)
    if reply_to:
        data.update(recipient="923001234567", original_message_id=reply_to)
    else:
        data["from"] = "923001234567@c.us"
    return Message.objects.create(position=n, **message_columns(data, status))


def event(action: str, mid: str, at: datetime, actor: str = "ayesha") -> AuditEvent:
    return AuditEvent.objects.create(
        message_id=mid, action=action, actor=actor, source="web", created_at=at
    )


def test_counts_per_status_and_both_rates_come_from_the_messages():
    for status, n in {
        Status.INCOMING: 3,
        Status.PENDING_APPROVAL: 2,
        Status.APPROVED: 1,
        Status.REJECTED: 2,
        Status.SENT: 3,
        Status.FAILED: 1,
    }.items():
        for _ in range(n):
            message(
                status, at=NOW - timedelta(hours=1), reply_to="" if status == "incoming" else "x"
            )
    result = stats.overview(NOW)
    assert result.counts == {
        "incoming": 3,
        "pending_approval": 2,
        "approved": 1,
        "rejected": 2,
        "sent": 3,
        "failed": 1,
    }
    assert (result.success.part, result.success.whole, result.success.percent) == (3, 4, "75.0%")
    # let through (approved 1 + sent 3 + failed 1) of decided (5 + rejected 2)
    assert (result.approval.part, result.approval.whole, result.approval.percent) == (5, 7, "71.4%")


def test_rates_without_any_decided_reply_are_not_a_number():
    result = stats.overview(NOW)
    assert result.success.value is None and result.success.percent == "n/a"
    assert result.approval.value is None


def test_totals_are_the_counters_carried_from_the_file_not_the_messages():
    rootstate.get_root()
    StateRoot.objects.filter(pk=1).update(
        total_incoming=1200, total_sent=900, total_failed=12, total_approved=930, total_rejected=40
    )
    message(Status.SENT, at=NOW, reply_to="x")
    totals = stats.overview(NOW).totals
    assert {k: totals[k] for k in rootstate.COUNTERS} == {
        "total_incoming": 1200,
        "total_sent": 900,
        "total_failed": 12,
        "total_approved": 930,
        "total_rejected": 40,
    }


def test_draft_to_decision_waits_over_the_last_seven_days():
    for minutes in range(1, 11):  # waits of 1..10 minutes
        drafted = NOW - timedelta(hours=minutes)
        reply = message(Status.APPROVED, at=drafted, reply_to="x")
        action = "approve" if minutes % 2 else "reject"
        event(action, reply.message_id, drafted + timedelta(minutes=minutes))
    old = message(Status.APPROVED, at=NOW - timedelta(days=9), reply_to="x")
    event("approve", old.message_id, NOW - timedelta(days=8))  # outside the window
    auto = message(Status.APPROVED, at=NOW - timedelta(days=2), reply_to="x")
    event("approve", auto.message_id, NOW - timedelta(hours=1), actor="auto")  # the automation
    event("approve", "gone", NOW - timedelta(hours=1))  # the message is no longer stored
    event("mark_sent", auto.message_id, NOW - timedelta(minutes=5))  # not a decision
    waits = stats.overview(NOW).decision_waits
    assert waits.count == 10
    assert waits.median == timedelta(minutes=5, seconds=30)
    assert waits.p90 == timedelta(minutes=9)
    assert waits.capped is False


def test_approval_to_sent_waits_start_at_the_latest_approval():
    simple = message(Status.SENT, at=NOW - timedelta(hours=5), reply_to="x")
    event("approve", simple.message_id, NOW - timedelta(hours=2))
    event("mark_sent", simple.message_id, NOW - timedelta(hours=2) + timedelta(seconds=20))
    undone = message(Status.SENT, at=NOW - timedelta(hours=5), reply_to="x")
    event("approve", undone.message_id, NOW - timedelta(hours=3))
    event("undo", undone.message_id, NOW - timedelta(hours=3) + timedelta(seconds=5))
    event("approve", undone.message_id, NOW - timedelta(hours=1))
    event("mark_sent", undone.message_id, NOW - timedelta(hours=1) + timedelta(seconds=40))
    retried = message(Status.SENT, at=NOW - timedelta(hours=5), reply_to="x")
    event("approve", retried.message_id, NOW - timedelta(minutes=30))
    event("mark_failed", retried.message_id, NOW - timedelta(minutes=29))
    event("retry", retried.message_id, NOW - timedelta(minutes=10))
    event("mark_sent", retried.message_id, NOW)  # waited 30 minutes since its approval
    imported = message(Status.SENT, at=NOW - timedelta(hours=5), reply_to="x")
    event("mark_sent", imported.message_id, NOW - timedelta(minutes=1))  # approved before import
    waits = stats.overview(NOW).send_waits
    assert waits.count == 3
    assert waits.median == timedelta(seconds=40)
    assert waits.p90 == timedelta(minutes=30)


def test_percentiles_are_of_the_most_recent_waits_only(monkeypatch):
    monkeypatch.setattr(stats, "MAX_WAITS", 3)
    for minutes in (1, 2, 3, 50):  # the 50-minute wait is the oldest decision
        reply = message(Status.APPROVED, at=NOW - timedelta(hours=1, minutes=minutes), reply_to="x")
        event("approve", reply.message_id, NOW - timedelta(hours=1) - timedelta(seconds=minutes))
    waits = stats.overview(NOW).decision_waits
    assert (waits.count, waits.capped) == (3, True)
    assert waits.p90 < timedelta(minutes=50)


def test_percentile_is_nearest_rank():
    assert stats.percentile(list(range(1, 11)), 90) == 9
    assert stats.percentile([7], 90) == 7
    assert stats.percentile(list(range(1, 101)), 90) == 90


def test_messages_per_hour_cover_every_hour_of_the_week():
    message(Status.INCOMING, at=local("2026-11-25T09:05:00"))
    message(Status.INCOMING, at=local("2026-11-25T09:59:59"))
    message(Status.PENDING_APPROVAL, at=local("2026-11-25T09:10:00"), reply_to="x")
    message(Status.SENT, at=local("2026-11-24T23:00:00"), reply_to="x")
    message(Status.INCOMING, at=local("2026-11-18T11:00:00"))  # the first hour of the window
    message(Status.INCOMING, at=local("2026-11-18T10:59:59"))  # just before it
    message(Status.INCOMING, at=NOW + timedelta(minutes=10))  # a clock in the future
    message(Status.INCOMING, at=None)  # no timestamp at all
    hours = stats.overview(NOW).hours
    assert len(hours) == 168
    assert hours[0].start == local("2026-11-18T11:00:00")
    assert hours[-1].start == local("2026-11-25T10:00:00")
    by_start = {h.start: (h.received, h.replies) for h in hours}
    assert by_start[local("2026-11-25T09:00:00")] == (2, 1)
    assert by_start[local("2026-11-24T23:00:00")] == (0, 1)
    assert by_start[local("2026-11-18T11:00:00")] == (1, 0)
    assert sum(h.total for h in hours) == 5


def test_hours_follow_the_local_clock_in_a_half_hour_zone():
    with timezone.override(ZoneInfo("Asia/Kolkata")):
        now = timezone.make_aware(datetime(2026, 11, 25, 10, 30))
        message(Status.INCOMING, at=timezone.make_aware(datetime(2026, 11, 25, 9, 45)))
        hours = stats.messages_per_hour(now)
        assert hours[-2].start == timezone.make_aware(datetime(2026, 11, 25, 9, 0))
        assert (hours[-2].received, hours[-1].received) == (1, 0)


def test_hours_follow_the_local_clock_across_a_change_of_summer_time():
    zone = ZoneInfo("America/New_York")  # 2026-03-08 02:00 became 03:00
    with timezone.override(zone):
        now = datetime(2026, 3, 10, 12, 30, tzinfo=zone)
        message(Status.INCOMING, at=datetime(2026, 3, 8, 4, 15, tzinfo=zone))
        message(Status.INCOMING, at=datetime(2026, 3, 8, 1, 15, tzinfo=zone))
        hours = {h.start: h.received for h in stats.messages_per_hour(now)}
        assert hours[datetime(2026, 3, 8, 4, 0, tzinfo=zone)] == 1
        assert hours[datetime(2026, 3, 8, 1, 0, tzinfo=zone)] == 1
        assert sum(hours.values()) == 2


def test_the_oldest_pending_reply_is_the_one_drafted_first():
    message(Status.PENDING_APPROVAL, at=NOW - timedelta(minutes=5), reply_to="x")
    oldest = message(Status.PENDING_APPROVAL, at=NOW - timedelta(hours=3), reply_to="x")
    message(Status.PENDING_APPROVAL, at=None, reply_to="x")
    message(Status.APPROVED, at=NOW - timedelta(days=3), reply_to="x")
    assert stats.overview(NOW).oldest_pending.pk == oldest.pk


def test_no_pending_reply_and_no_heartbeat():
    result = stats.overview(NOW)
    assert result.oldest_pending is None
    assert result.heartbeat is None


def test_the_session_verdict_and_the_senders_heartbeat(settings, tmp_path):
    settings.WHATSAPP_SESSION_BASE = tmp_path
    (tmp_path / ".wwebjs_auth").mkdir()
    rootstate.get_root()
    session = {
        "authenticated": True,
        "session_valid": True,
        "requires_qr": False,
        "last_validation": naive(NOW - timedelta(minutes=10)),
        "validation_interval_minutes": 30,
        "session_path": ".wwebjs_auth",
    }
    StateRoot.objects.filter(pk=1).update(session=dumps_compact(session))
    Heartbeat.objects.create(
        name="sender", beat_at=NOW - timedelta(seconds=30), detail={"waiting": 4}
    )
    result = stats.overview(NOW)
    assert result.session.valid and result.session.verdict == "Session valid"
    assert result.heartbeat.detail["waiting"] == 4
    later = stats.overview(NOW + timedelta(minutes=25))
    assert not later.session.valid
    assert "older than 30 minutes" in later.session.verdict


# --- A constant number of queries ----------------------------------------------------


def bulk_state(n: int) -> None:
    """n messages over the week in every status, and their decisions and sends,
    inserted in bulk (not through the lifecycle one by one)."""
    rootstate.get_root()
    statuses = Status.values
    rows, events = [], []
    for i in range(n):
        status = statuses[i % len(statuses)]
        at = NOW - timedelta(minutes=(i * 7) % (7 * 24 * 60))
        mid = f"bulk{i}"
        data = {"id": mid, "body": f"text {i}", "timestamp": naive(at)}
        if status != Status.INCOMING:
            data.update(recipient="923001234567", original_message_id=f"bulk{i - 1}")
        rows.append(Message(position=i, **message_columns(data, status)))
        if status in (Status.APPROVED, Status.SENT, Status.REJECTED):
            action = "reject" if status == Status.REJECTED else "approve"
            events.append(
                AuditEvent(message_id=mid, action=action, actor="a", source="web", created_at=at)
            )
        if status == Status.SENT:
            events.append(
                AuditEvent(
                    message_id=mid,
                    action="mark_sent",
                    actor="w",
                    source="worker",
                    created_at=at + timedelta(seconds=30),
                )
            )
    Message.objects.bulk_create(rows, batch_size=2000)
    AuditEvent.objects.bulk_create(events, batch_size=2000)
    Heartbeat.objects.update_or_create(name="sender", defaults={"beat_at": NOW})


def _queries_of_overview() -> int:
    with CaptureQueriesContext(connection) as queries:
        stats.overview(NOW)
    return len(queries)


def test_the_overview_takes_the_same_few_queries_for_10_and_10000_messages():
    bulk_state(10)
    small = _queries_of_overview()
    Message.objects.all().delete()
    bulk_state(10_000)
    assert Message.objects.count() == 10_000
    assert _queries_of_overview() == small == 7


# --- The page ------------------------------------------------------------------------


@pytest.fixture
def reviewer(client, django_user_model):
    user = django_user_model.objects.create_user("ayesha", password="x")
    client.force_login(user)
    return user


def test_the_overview_needs_a_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_the_page_shows_each_figure_of_a_state_built_by_hand(client, reviewer):
    now = timezone.now()
    rootstate.get_root()
    # A file whose statistics never had total_failed; total_sent counted on from 900.
    StateRoot.objects.filter(pk=1).update(
        statistics='{"total_sent": 5}', total_sent=900, total_failed=None
    )
    message(Status.INCOMING, at=now - timedelta(hours=2))
    oldest = message(Status.PENDING_APPROVAL, at=now - timedelta(hours=3), reply_to="x")
    Message.objects.filter(pk=oldest.pk).update(body="<b>Your order</b> is ready")
    message(Status.PENDING_APPROVAL, at=now - timedelta(minutes=5), reply_to="x")
    for _ in range(3):
        message(Status.SENT, at=now - timedelta(hours=1), reply_to="x")
    message(Status.FAILED, at=now - timedelta(hours=1), reply_to="x")
    rejected = message(Status.REJECTED, at=now - timedelta(minutes=40), reply_to="x")
    event("reject", rejected.message_id, now - timedelta(minutes=10))  # waited 30 min
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="ov-n" data-status="pending_approval">2</span>' in html
    assert '<span class="ov-n" data-status="sent">3</span>' in html
    assert '<strong id="ov-success">75.0%</strong>' in html
    assert "sent ÷ (sent + failed) = 3 ÷ 4" in html
    assert '<strong id="ov-approval">80.0%</strong>' in html  # 4 let through of 5 decided
    assert '<td data-counter="sent">900</td>' in html
    assert '<td data-counter="failed">not counted</td>' in html
    assert "<td>30 min</td>" in html  # median and 90th percentile of the one decision
    card = f'<a href="/queue/{oldest.pk}/">'
    assert card in html
    assert "&lt;b&gt;Your order&lt;/b&gt; is ready" in html
    assert "waiting <strong>3 h</strong>" in html
    assert "Last beat: never." in html
    assert html.count('class="ov-bar-received"') == 1  # one hour with received messages
    assert html.count('class="ov-bar-replies"') >= 2


def test_the_page_has_no_inline_script_or_style(client, reviewer):
    message(Status.INCOMING, at=timezone.now())
    html = client.get("/").content.decode()
    assert "<svg" in html
    for tag in html.split("<script")[1:]:
        assert tag.lstrip().startswith("src=") or " src=" in tag.split(">")[0]
    assert " style=" not in html and "<style" not in html


def test_the_senders_heartbeat_is_shown_with_its_age(client, reviewer):
    Heartbeat.objects.create(
        name="sender", beat_at=timezone.now() - timedelta(seconds=20), detail={"waiting": 4}
    )
    html = client.get("/").content.decode()
    assert '<dd id="ov-waiting">4</dd>' in html
    assert "(20 s ago)" in html
    assert "is the sender running?" not in html
    Heartbeat.objects.filter(name="sender").update(beat_at=timezone.now() - timedelta(hours=1))
    assert "is the sender running?" in client.get("/").content.decode()


def test_state_file_links_only_for_staff_with_the_permissions(client, reviewer):
    assert "/state/download/" not in client.get("/").content.decode()
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(*Permission.objects.filter(codename="export_state"))
    html = client.get("/").content.decode()
    assert "/state/download/" in html and "/state/upload/" not in html


def test_the_page_takes_the_same_queries_for_10_and_10000_messages(
    client, reviewer, django_assert_num_queries
):
    bulk_state(10)
    with CaptureQueriesContext(connection) as small:
        assert client.get("/").status_code == 200
    Message.objects.all().delete()
    bulk_state(10_000)
    with django_assert_num_queries(len(small)):
        response = client.get("/")
    assert response.status_code == 200
