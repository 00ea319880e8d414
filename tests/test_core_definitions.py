"""The core's single definitions: handled statuses, counts per status, when the sender
counts as stopped, and the settings and counters written through the core."""

from __future__ import annotations

from datetime import timedelta

import pytest

from statecore import clock, lifecycle, rootstate, settings_store, stats
from statecore.models import HANDLED, AuditEvent, Heartbeat, Message, Source, Status
from statecore.sending import HEARTBEAT_NAME, sender_stopped, silent_after
from tests.factories import make_incoming, make_reply

pytestmark = pytest.mark.django_db
S = Status


def test_handled_is_every_decided_or_sent_status_and_nothing_waiting():
    assert set(HANDLED) == {S.APPROVED, S.REJECTED, S.SENT, S.FAILED}
    for status in Status:
        make_reply(status) if status != S.INCOMING else make_incoming()
    assert set(Message.objects.handled().values_list("status", flat=True)) == set(HANDLED)


def test_counts_per_status_counts_each_status_and_names_the_empty_ones():
    make_reply(S.PENDING_APPROVAL)
    make_reply(S.PENDING_APPROVAL)
    make_reply(S.SENT)
    counts = Message.objects.counts_per_status()
    assert counts == {
        S.INCOMING: 3,
        S.PENDING_APPROVAL: 2,
        S.APPROVED: 0,
        S.REJECTED: 0,
        S.SENT: 1,
        S.FAILED: 0,
    }
    assert Message.objects.replies().counts_per_status()[S.INCOMING] == 0
    assert stats.overview().counts == counts


def _beat(ago: timedelta) -> Heartbeat:
    return Heartbeat.objects.create(name=HEARTBEAT_NAME, beat_at=clock.now() - ago)


def test_the_sender_counts_as_stopped_after_twelve_rounds_of_silence():
    assert silent_after() == timedelta(seconds=60)  # the default 5 s poll interval
    beat = _beat(timedelta(0))
    assert not sender_stopped(beat, beat.beat_at + timedelta(seconds=60))
    assert sender_stopped(beat, beat.beat_at + timedelta(seconds=61))
    assert sender_stopped(None, beat.beat_at)


def test_a_slower_poll_interval_gives_the_sender_longer_before_it_counts_as_stopped():
    settings_store.update_settings(
        {"watcher_config": {**rootstate.DEFAULT_WATCHER_CONFIG, "poll_interval_seconds": 30}},
        actor="t",
        source=Source.API,
    )
    assert silent_after() == timedelta(minutes=6)
    beat = _beat(timedelta(minutes=5))
    assert not sender_stopped(beat, clock.now())


def test_the_overview_says_the_sender_stopped_by_the_same_rule():
    _beat(timedelta(seconds=61))
    assert stats.overview().sender_stopped
    Heartbeat.objects.update(beat_at=clock.now())
    assert not stats.overview().sender_stopped


def test_decision_waits_leave_out_the_automatic_actor():
    msg = make_reply(S.PENDING_APPROVAL)
    lifecycle.approve(msg.message_id, actor=lifecycle.AUTOMATIC_ACTOR, source=Source.API)
    assert stats.decision_waits(clock.now()).count == 0
    other = make_reply(S.PENDING_APPROVAL)
    lifecycle.approve(other.message_id, actor="dana", source=Source.WEB)
    assert stats.decision_waits(clock.now()).count == 1


def test_update_settings_refuses_a_stale_page_and_saves_none_of_it():
    rootstate.get_root()
    seen = {
        key: rootstate.part(rootstate.get_root(), key) for key in ("api_endpoint", "retry_config")
    }
    rootstate.update_part(
        "retry_config", lambda _: {"max_retries": 5}, actor="x", source="api", action="x"
    )
    with pytest.raises(lifecycle.Conflict):
        settings_store.update_settings(
            {"api_endpoint": "http://gw:1/", "retry_config": {"max_retries": 2}},
            seen=seen,
            actor="t",
            source=Source.ADMIN,
        )
    assert rootstate.api_endpoint() == rootstate.DEFAULT_API_ENDPOINT
    assert not AuditEvent.objects.filter(action=settings_store.SET_CONFIG).exists()


def test_update_settings_refuses_what_an_import_would_refuse():
    with pytest.raises(ValueError):
        settings_store.update_settings(
            {"watcher_config": {"poll_interval_seconds": "fast"}}, actor="t", source=Source.API
        )
    assert not AuditEvent.objects.filter(action=settings_store.SET_CONFIG).exists()


def test_reset_counters_zeroes_every_counter_and_keeps_what_they_were():
    make_reply(S.SENT)
    before = rootstate.statistics()
    settings_store.reset_counters(actor="t", source=Source.ADMIN)
    after = rootstate.statistics()
    assert all(after[name] == 0 for name in rootstate.COUNTERS)
    assert all(after[name] is None for name in rootstate.LAST_TIMES)
    event = AuditEvent.objects.get(action=settings_store.RESET_COUNTERS)
    assert event.detail == {"before": before} and before["total_sent"] == 1
