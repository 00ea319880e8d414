"""The count table (StatusCount): equal to COUNT(*) GROUP BY status after every kind of
write, in the writer's transaction, recomputed by `recount_messages`; and the figures
the queue's header and the overview show come from it."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from approvals import queue
from statecore import clock, lifecycle, stats, status_counts
from statecore.models import Message, Source, Status, StatusCount
from tests.benchmarks.generate import generate_state
from tests.factories import make_incoming, make_reply
from tests.query_data import bulk_state
from tests.test_webhook_endpoint import KINDS, deliver

API = {"actor": "dana", "source": Source.API}


def assert_in_step() -> dict[str, int]:
    """The table says what the rows say, for every status; returns the counts."""
    rows = status_counts.counted_rows()
    assert status_counts.stored_counts() == rows
    return rows


def test_the_migrations_leave_the_triggers_installed(db):
    assert status_counts.installed_triggers() == set(status_counts.TRIGGERS)


def test_an_added_message_is_counted(db):
    make_incoming()
    make_reply()
    make_reply(Status.SENT)
    counts = assert_in_step()
    assert (counts[Status.INCOMING], counts[Status.PENDING_APPROVAL], counts[Status.SENT]) == (
        3,
        1,
        1,
    )


MOVES = [
    ("approve", Status.PENDING_APPROVAL, lambda m: lifecycle.approve(m, **API)),
    ("reject", Status.PENDING_APPROVAL, lambda m: lifecycle.reject(m, **API)),
    ("edit", Status.PENDING_APPROVAL, lambda m: lifecycle.edit_and_approve(m, "New", **API)),
    ("mark_sent", Status.APPROVED, lambda m: lifecycle.mark_sent(m, **API)),
    ("mark_failed", Status.APPROVED, lambda m: lifecycle.mark_failed(m, "HTTP 500", **API)),
    ("retry", Status.FAILED, lambda m: lifecycle.retry(m, **API)),
    ("confirm_sent", Status.FAILED, lambda m: lifecycle.confirm_sent(m, **API)),
    ("reopen", Status.REJECTED, lambda m: lifecycle.reopen(m, **API)),
]


@pytest.mark.parametrize(("verb", "start", "do"), MOVES, ids=[m[0] for m in MOVES])
def test_each_lifecycle_move_moves_one_count(db, verb, start, do):
    msg = make_reply(start)
    make_reply(Status.SENT)  # a list the move does not touch
    before = assert_in_step()
    moved = do(msg.message_id)
    after = assert_in_step()
    assert after[start] == before[start] - 1
    assert after[moved.status] == before[moved.status] + 1


def test_a_write_without_a_status_change_leaves_the_counts(db):
    msg = make_reply()
    before = assert_in_step()
    Message.objects.filter(pk=msg.pk).update(body="edited", claimed_by="w1")
    assert assert_in_step() == before


def test_a_bulk_update_of_many_rows_is_counted_once_per_row(db):
    for _ in range(5):
        make_reply()
    Message.objects.filter(status=Status.PENDING_APPROVAL).update(status=Status.REJECTED)
    counts = assert_in_step()
    assert (counts[Status.PENDING_APPROVAL], counts[Status.REJECTED]) == (0, 5)


def test_clearing_a_list_and_deleting_messages_uncount_them(db):
    for _ in range(3):
        make_reply(Status.REJECTED)
    lifecycle.clear_list(Status.REJECTED, **API)
    counts = assert_in_step()
    assert counts[Status.REJECTED] == 0
    Message.objects.filter(status=Status.INCOMING).first().delete()
    assert assert_in_step()[Status.INCOMING] == 2


def test_an_import_replacing_the_state_recounts_every_list(db):
    from statecore import statefile

    make_reply(Status.FAILED)
    state = generate_state(300, seed=3)
    statefile.import_state(state, actor="dana", source=Source.COMMAND)
    counts = assert_in_step()
    assert counts == {status: len(state["messages"][status]) for status in Status.values}
    statefile.import_state(generate_state(40, seed=4), actor="dana", source=Source.COMMAND)
    assert sum(assert_in_step().values()) == 40


def test_a_bulk_writer_that_suspends_the_triggers_leaves_the_counts_right(db):
    make_reply(Status.SENT)
    with transaction.atomic(), status_counts.suspended():
        Message.objects.all().delete()
        make_reply(Status.FAILED)
        make_incoming()
    assert status_counts.installed_triggers() == set(status_counts.TRIGGERS)
    counts = assert_in_step()
    assert (counts[Status.SENT], counts[Status.FAILED], counts[Status.INCOMING]) == (0, 1, 2)


@pytest.mark.django_db(transaction=True)
def test_the_triggers_are_suspended_only_inside_a_transaction():
    if connection.vendor == "sqlite":
        with pytest.raises(RuntimeError):
            with status_counts.suspended():
                pass
    else:
        # PostgreSQL keeps its statement triggers: nothing suspended, nothing refused.
        with status_counts.suspended():
            make_reply()
        assert status_counts.installed_triggers() == set(status_counts.TRIGGERS)
        assert assert_in_step()[Status.PENDING_APPROVAL] == 1


def test_a_message_stored_by_the_webhook_is_counted(request, db):
    kind = KINDS["waha"]
    request.getfixturevalue(kind.fixture)
    assert deliver(kind, kind.message("Is the shop open?")).status_code == 200
    assert assert_in_step()[Status.INCOMING] == 1


def test_a_rolled_back_write_leaves_the_counts_as_they_were(db):
    msg = make_reply()
    before = assert_in_step()
    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.approve(msg.message_id, **API)
        make_incoming()
        assert status_counts.stored_counts()[Status.APPROVED] == 1  # seen inside
        raise RuntimeError("the caller gave up")
    assert assert_in_step() == before


def test_recount_corrects_a_wrong_table_and_reinstalls_the_triggers(db):
    make_reply()
    StatusCount.objects.filter(status=Status.INCOMING).update(n=99)
    StatusCount.objects.filter(status=Status.SENT).delete()
    status_counts.drop_triggers()
    out = StringIO()
    call_command("recount_messages", stdout=out)
    assert "incoming: 1 (was 99)" in out.getvalue()
    assert "1 count(s) corrected." in out.getvalue()
    assert status_counts.installed_triggers() == set(status_counts.TRIGGERS)
    assert StatusCount.objects.count() == len(Status.values)
    make_reply()  # counted again by the reinstalled triggers
    assert assert_in_step()[Status.PENDING_APPROVAL] == 2


def test_recount_says_so_when_nothing_was_wrong(db):
    make_reply()
    out = StringIO()
    call_command("recount_messages", stdout=out)
    assert "The counts were right already." in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_counting_survives_the_flush_of_a_test_database():
    """A transactional test empties every table (the count rows too): the next
    writes still count, from nothing."""
    make_reply()
    assert_in_step()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("counts_first", [True, False])
def test_a_flush_leaves_the_counts_right_whichever_table_it_empties_first(counts_first):
    """`manage.py flush` (and a test database's) deletes table after table in no fixed
    order: message rows deleted after the count rows must not leave negative counts."""
    make_reply()
    make_incoming()
    tables = [StatusCount, Message] if counts_first else [Message, StatusCount]
    with connection.cursor() as cursor:  # what flush runs, in one of its orders
        for model in tables:
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
    emit_post_migrate_signal(
        verbosity=0, interactive=False, db=connection.alias
    )  # flush's last step
    assert assert_in_step() == dict.fromkeys(Status.values, 0)
    make_reply()
    assert assert_in_step()[Status.PENDING_APPROVAL] == 1


# --- The figures people see -----------------------------------------------------------


def test_the_queue_header_and_the_overview_show_the_real_counts(rc):
    bulk_state(12)
    lifecycle.approve(Message.objects.pending().first().message_id, **API)
    real = assert_in_step()
    header = queue.status_counts(now=clock.now())
    assert {s: header[s] for s in queue.COUNTED} == {s: real[s] for s in queue.COUNTED}
    assert stats.overview().counts == real
    page = rc.get("/queue/").content.decode()
    assert f"{real[Status.PENDING_APPROVAL]}" in page


def test_whole_table_counts_read_the_count_table_not_the_messages(db):
    bulk_state(5)
    with CaptureQueriesContext(connection) as captured:
        counts = Message.objects.counts_per_status()
    assert counts == status_counts.counted_rows()
    (only,) = captured.captured_queries
    assert StatusCount._meta.db_table in only["sql"]
    assert Message._meta.db_table not in only["sql"]


def test_a_filtered_count_still_counts_its_rows(db):
    make_reply()
    make_reply(Status.SENT, body="invoice")
    StatusCount.objects.update(n=1000)  # wrong on purpose: a filter must not read it
    counts = Message.objects.filter(body="invoice").counts_per_status()
    assert counts[Status.SENT] == 1 and counts[Status.PENDING_APPROVAL] == 0


# --- Moves in opposite directions at once (PostgreSQL's row locks) --------------------


@pytest.mark.django_db(transaction=True)
def test_moves_in_opposite_directions_at_once_keep_the_counts_right():
    """Two connections at once, one moving pending -> rejected and the other rejected ->
    pending, twenty times: no update of a count is lost, and no deadlock (the count rows
    are locked in the order of their status, whichever way the move goes). SQLite's
    writers take turns (BEGIN IMMEDIATE waits for the other): they meet before it."""
    sqlite = connection.vendor == "sqlite"
    forward = [make_reply() for _ in range(20)]
    back = [make_reply(Status.REJECTED) for _ in range(20)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(messages, to_status):
        try:
            for msg in messages:
                if sqlite:
                    barrier.wait(timeout=10)
                with transaction.atomic():
                    if not sqlite:  # both transactions open at once
                        barrier.wait(timeout=10)
                    Message.objects.filter(pk=msg.pk).update(status=to_status)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(forward, Status.REJECTED)),
        threading.Thread(target=run, args=(back, Status.PENDING_APPROVAL)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    counts = assert_in_step()
    assert (counts[Status.PENDING_APPROVAL], counts[Status.REJECTED]) == (20, 20)
