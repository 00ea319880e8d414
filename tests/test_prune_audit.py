"""`manage.py prune_audit --before DATE` (issue 12, "Audit growth"): the one
deliberate exception to the append-only audit log, and itself audited."""

from __future__ import annotations

import getpass
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command

from statecore import clock
from statecore.models import AuditEvent, Source

KARACHI = ZoneInfo("Asia/Karachi")


@pytest.fixture(autouse=True)
def local_zone(settings, monkeypatch):
    # A zone away from UTC: the date bound is the start of the local day.
    settings.TIME_ZONE = "Asia/Karachi"
    monkeypatch.setattr(getpass, "getuser", lambda: "ops")


def event(action: str, at: datetime) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action, actor="ayesha", source=Source.WEB, created_at=at
    )


@pytest.fixture
def history(db) -> dict[str, AuditEvent]:
    return {
        "old_approve": event("approve", datetime(2025, 3, 1, 9, 0, tzinfo=KARACHI)),
        "old_reject": event("reject", datetime(2025, 12, 31, 23, 59, 59, tzinfo=KARACHI)),
        "old_approve_2": event("approve", datetime(2025, 6, 1, 12, 0, tzinfo=KARACHI)),
        "kept_midnight": event("approve", datetime(2026, 1, 1, 0, 0, tzinfo=KARACHI)),
        "kept_recent": event("import", clock.now() - timedelta(minutes=1)),
    }


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_audit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def remaining() -> set[int]:
    return set(AuditEvent.objects.exclude(action="prune_audit").values_list("pk", flat=True))


def test_prune_removes_the_events_before_the_local_day_and_keeps_the_rest(history):
    output = prune("--before", "2026-01-01")
    assert remaining() == {history["kept_midnight"].pk, history["kept_recent"].pk}
    assert output.splitlines() == [
        "Removed 3 audit events created before 2026-01-01T00:00:00.",
        "  approve: 2",
        "  reject: 1",
    ]


def test_prune_writes_an_audit_event_saying_what_it_removed(history):
    before = clock.now()
    prune("--before", "2026-01-01")
    row = AuditEvent.objects.get(action="prune_audit")
    assert (row.actor, row.source) == ("ops", Source.COMMAND)
    assert row.detail == {
        "removed": 3,
        "before": "2026-01-01T00:00:00",
        "by_action": {"approve": 2, "reject": 1},
    }
    assert "removed 3 audit events created before 2026-01-01T00:00:00" in row.note
    assert row.created_at >= before


def test_the_actor_is_prune_audit_when_the_os_user_is_unknown(history, monkeypatch):
    def unknown():
        raise OSError("no user name")

    monkeypatch.setattr(getpass, "getuser", unknown)
    prune("--before", "2026-01-01")
    assert AuditEvent.objects.get(action="prune_audit").actor == "prune_audit"


def test_a_moment_bound_is_taken_to_the_second(history):
    prune("--before", "2025-12-31T23:59:59")
    assert history["old_reject"].pk in remaining()
    assert history["old_approve_2"].pk not in remaining()


def test_dry_run_says_how_many_and_changes_nothing(history):
    events = set(AuditEvent.objects.values_list("pk", flat=True))
    output = prune("--before", "2026-01-01", "--dry-run")
    assert output.splitlines()[0] == (
        "3 audit events created before 2026-01-01T00:00:00 would be removed "
        "(dry run: nothing changed)."
    )
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == events


@pytest.mark.parametrize(
    ("ahead", "digits"), [(timedelta(days=1), 10), (timedelta(minutes=5), 16), (None, 10)]
)
def test_a_date_in_the_future_is_refused_naming_the_argument(history, ahead, digits):
    # Computed here, under the test's TIME_ZONE: "tomorrow", "in five minutes".
    given = clock.local_iso(clock.now() + ahead)[:digits] if ahead else "2999-01-01"
    events = set(AuditEvent.objects.values_list("pk", flat=True))
    with pytest.raises(CommandError, match="--before: .* is in the future"):
        prune("--before", given)
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == events


@pytest.mark.parametrize("given", ["yesterday", "2026-13-01", "01/02/2026", "", "2026-01-01T25:00"])
def test_an_unreadable_date_is_refused_naming_the_argument(history, given):
    events = set(AuditEvent.objects.values_list("pk", flat=True))
    with pytest.raises(CommandError, match="--before: .* is not a date"):
        prune("--before", given)
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == events


def test_the_date_is_required(db):
    with pytest.raises(CommandError, match="--before"):
        prune()


def test_a_failed_prune_removes_nothing(history, monkeypatch):
    # The deletion and its own audit row are one transaction.
    events = set(AuditEvent.objects.values_list("pk", flat=True))
    real_create = AuditEvent.objects.create

    def failing(**fields):
        if fields.get("action") == "prune_audit":
            raise RuntimeError("disk full")
        return real_create(**fields)

    monkeypatch.setattr(AuditEvent.objects, "create", failing)
    with pytest.raises(RuntimeError):
        prune("--before", "2026-01-01")
    assert set(AuditEvent.objects.values_list("pk", flat=True)) == events


def test_each_event_still_refuses_to_be_deleted(history):
    with pytest.raises(ValueError, match="append-only"):
        history["old_approve"].delete()
