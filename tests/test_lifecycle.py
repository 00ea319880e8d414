"""The one lifecycle: every (from, to) pair of the six statuses, the verbs, and
the races it must win (threads here; processes in test_state_manager)."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection

from statecore import clock, lifecycle, rootstate, settings_store, statefile
from statecore.lifecycle import ALLOWED_MOVES, MessageNotFound, MoveRefused
from statecore.models import AuditEvent, Message, Source, Status
from tests.factories import make_reply

S = Status
PAIRS = list(itertools.product(S.values, S.values))
# How a message reaches each status through real moves, so "who moved it last" is known.
ROUTE = {
    S.INCOMING: [],
    S.PENDING_APPROVAL: [S.PENDING_APPROVAL],
    S.APPROVED: [S.PENDING_APPROVAL, S.APPROVED],
    S.REJECTED: [S.PENDING_APPROVAL, S.REJECTED],
    S.SENT: [S.PENDING_APPROVAL, S.APPROVED, S.SENT],
    S.FAILED: [S.PENDING_APPROVAL, S.APPROVED, S.FAILED],
}
COUNTER = {
    S.INCOMING: "total_incoming",
    S.APPROVED: "total_approved",
    S.REJECTED: "total_rejected",
    S.SENT: "total_sent",
    S.FAILED: "total_failed",
}


def message_in(status: str, mid: str = "m1") -> Message:
    lifecycle.add_message(
        {"id": mid, "from": "923001234567@c.us", "body": "Hi", "timestamp": "2026-11-24T08:00:25"},
        S.INCOMING,
        actor="watcher",
        source=Source.API,
    )
    for step in ROUTE[status]:
        lifecycle.move(mid, step, actor="bob", source=Source.ADMIN)
    return Message.objects.get(message_id=mid)


def test_the_table_holds_exactly_the_moves_of_the_design():
    assert set(ALLOWED_MOVES) == {
        (S.INCOMING, S.PENDING_APPROVAL),
        (S.PENDING_APPROVAL, S.APPROVED),
        (S.PENDING_APPROVAL, S.REJECTED),
        (S.APPROVED, S.SENT),
        (S.APPROVED, S.FAILED),
        (S.FAILED, S.APPROVED),
        (S.FAILED, S.SENT),
        (S.SENT, S.FAILED),
        (S.APPROVED, S.PENDING_APPROVAL),
        (S.REJECTED, S.PENDING_APPROVAL),
    }


@pytest.mark.parametrize("source, target", PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_of_statuses(db, source, target):
    msg = message_in(source)
    stats_before = rootstate.statistics()
    updated_before = json.loads(statefile.export_bytes())["metadata"]["last_updated"]
    events_before = AuditEvent.objects.count()
    if (source, target) in ALLOWED_MOVES:
        _assert_moved(msg, source, target, stats_before, updated_before, events_before)
    else:
        _assert_refused(msg, source, target, events_before)


def _assert_moved(msg, source, target, stats_before, updated_before, events_before):
    before = clock.now()
    returned = lifecycle.move(msg.message_id, target, actor="carol", source=Source.WEB)
    row = Message.objects.get(pk=msg.pk)
    assert returned.status == row.status == target
    assert row.status_changed_by == "carol"
    assert before <= row.status_updated_at <= clock.now()
    data = row.data
    assert data["status"] == target
    assert data["status_updated_at"] == clock.local_iso(row.status_updated_at)
    assert list(data)[:5] == ["id", "from", "body", "timestamp", "status"]
    assert data["timestamp"] == "2026-11-24T08:00:25"  # as it came
    # Counters: the target's total goes up by one (pending_approval counts nothing).
    stats = rootstate.statistics()
    expected = dict(stats_before)
    if target in COUNTER:
        expected[COUNTER[target]] += 1
    if target == S.SENT:
        assert stats["last_message_sent"] != stats_before["last_message_sent"]
        expected["last_message_sent"] = stats["last_message_sent"]
    assert stats == expected
    assert json.loads(statefile.export_bytes())["metadata"]["last_updated"] > updated_before
    # Exactly one audit row, naming the move.
    assert AuditEvent.objects.count() == events_before + 1
    event = AuditEvent.objects.latest("pk")
    assert (event.message_id, event.action, event.from_status, event.to_status) == (
        msg.message_id,
        ALLOWED_MOVES[(source, target)],
        source,
        target,
    )
    assert (event.actor, event.source) == ("carol", Source.WEB)


def _assert_refused(msg, source, target, events_before):
    exported = statefile.export_bytes()
    with pytest.raises(MoveRefused) as caught:
        lifecycle.move(msg.message_id, target, actor="carol", source=Source.WEB)
    refusal = caught.value
    assert (refusal.message_id, refusal.actual, refusal.wanted) == (msg.message_id, source, target)
    text = str(refusal)
    assert text.startswith(f"m1: cannot move to {target}: it is {source}")
    if source == S.INCOMING:  # never moved: nobody to name
        assert refusal.last_actor == "" and "moved by" not in text
    else:
        assert refusal.last_actor == "bob"
        assert f"(moved by bob at {clock.local_iso(msg.status_updated_at)})" in text
        assert refusal.last_changed_at == msg.status_updated_at
    assert statefile.export_bytes() == exported
    assert AuditEvent.objects.count() == events_before
    assert Message.objects.get(pk=msg.pk).status == source


def test_a_move_of_a_message_that_does_not_exist_says_so(db):
    with pytest.raises(MessageNotFound, match="nope: no such message"):
        lifecycle.approve("nope", actor="carol", source=Source.WEB)
    assert not AuditEvent.objects.exists()


def test_a_move_refuses_when_the_caller_saw_another_status(db):
    # The caller saw it approved; someone else failed it meanwhile: retry (failed
    # -> approved) would be allowed, but not from what the caller expected.
    message_in(S.FAILED)
    with pytest.raises(MoveRefused, match="it is failed"):
        lifecycle.move("m1", S.SENT, expected=[S.APPROVED], actor="carol", source=Source.WEB)


# --- The verbs ------------------------------------------------------------------

WHO = {"actor": "carol", "source": Source.WEB}


def test_approve_moves_a_draft_and_keeps_the_note(db):
    message_in(S.PENDING_APPROVAL)
    msg = lifecycle.approve("m1", note="looks fine", **WHO)
    assert msg.status == S.APPROVED
    assert AuditEvent.objects.latest("pk").note == "looks fine"


def test_approve_refuses_a_sent_message_naming_who_sent_it(db):
    message_in(S.SENT)
    with pytest.raises(
        MoveRefused, match=r"m1: cannot move to approved: it is sent \(moved by bob"
    ):
        lifecycle.approve("m1", **WHO)


def test_reject_keeps_the_reason(db):
    message_in(S.PENDING_APPROVAL)
    lifecycle.reject("m1", reason="wrong price", **WHO)
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.note) == ("reject", "wrong price")


def test_edit_and_approve_changes_the_body_and_keeps_both_texts(db):
    message_in(S.PENDING_APPROVAL)
    msg = lifecycle.edit_and_approve("m1", "Hello <b>there</b> 👋", **WHO)
    assert msg.body == msg.data["body"] == "Hello <b>there</b> 👋"
    assert list(msg.data) == ["id", "from", "body", "timestamp", "status", "status_updated_at"]
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.note) == ("approve", "edited")
    assert event.detail == {"original": "Hi", "edited": "Hello <b>there</b> 👋", "distance": 19}


@pytest.mark.parametrize(
    "text, problem", [("   \n", "is empty"), ("x" * (lifecycle.MAX_REPLY_LENGTH + 1), "over")]
)
def test_edit_and_approve_refuses_an_empty_or_overlong_text(db, text, problem):
    message_in(S.PENDING_APPROVAL)
    with pytest.raises(ValueError, match=problem):
        lifecycle.edit_and_approve("m1", text, **WHO)
    assert Message.objects.get(message_id="m1").status == S.PENDING_APPROVAL


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_undo_puts_its_deciders_decision_back_while_not_claimed(db, status):
    message_in(status)  # decided by bob
    msg = lifecycle.undo("m1", actor="bob", source=Source.WEB)
    assert msg.status == S.PENDING_APPROVAL
    assert AuditEvent.objects.latest("pk").action == "undo"


@pytest.mark.parametrize("status", [S.APPROVED, S.REJECTED])
def test_undo_of_someone_elses_decision_is_refused_but_reopen_is_not(db, status):
    message_in(status)  # decided by bob
    with pytest.raises(MoveRefused) as refused:
        lifecycle.undo("m1", **WHO)
    assert refused.value.code == lifecycle.Refusal.NOT_YOURS
    assert Message.objects.get(message_id="m1").status == status
    msg = lifecycle.reopen("m1", **WHO)
    assert msg.status == S.PENDING_APPROVAL
    assert AuditEvent.objects.latest("pk").action == "reopen"


def _claim(mid: str, worker: str = "sender-1") -> None:
    # What the sender's claim does: a guarded UPDATE setting the lease.
    now = clock.now()
    Message.objects.filter(message_id=mid).update(
        claimed_by=worker, claimed_at=now, lease_until=now + timedelta(minutes=5)
    )


@pytest.mark.parametrize(
    "undo",
    [
        pytest.param(lambda: lifecycle.undo("m1", actor="bob", source=Source.WEB), id="undo"),
        pytest.param(lambda: lifecycle.reopen("m1", **WHO), id="reopen"),
        pytest.param(lambda: lifecycle.move("m1", S.PENDING_APPROVAL, **WHO), id="move"),
    ],
)
def test_undo_or_reopen_is_refused_once_the_reply_is_claimed_for_sending(db, undo):
    message_in(S.APPROVED)
    _claim("m1")
    exported, events = statefile.export_bytes(), AuditEvent.objects.count()
    with pytest.raises(MoveRefused, match="it is approved .*; it has been claimed for sending"):
        undo()
    assert statefile.export_bytes() == exported
    assert AuditEvent.objects.count() == events
    assert Message.objects.get(message_id="m1").status == S.APPROVED


@pytest.mark.parametrize(
    "retry",
    [
        pytest.param(lambda: lifecycle.retry("m1", **WHO), id="verb"),
        pytest.param(lambda: lifecycle.move("m1", S.APPROVED, **WHO), id="move"),
    ],
)
def test_retry_approves_a_failed_reply_again_and_releases_the_lease(db, retry):
    message_in(S.APPROVED)
    _claim("m1")
    lifecycle.mark_failed(
        "m1", "Request timed out", worker="sender-1", actor="sender-1", source="worker"
    )
    retry()
    msg = Message.objects.get(message_id="m1")
    assert msg.status == S.APPROVED
    assert (msg.claimed_by, msg.claimed_at, msg.lease_until) == ("", None, None)
    assert AuditEvent.objects.latest("pk").action == "retry"


def test_retry_drops_the_old_error_from_the_stored_object(db):
    message_in(S.APPROVED)
    lifecycle.mark_failed("m1", "HTTP 500", **WHO)
    assert Message.objects.get(message_id="m1").data["error"] == "HTTP 500"
    msg = lifecycle.retry("m1", **WHO)
    assert "error" not in msg.data


def test_mark_failed_keeps_the_error_as_the_old_sender_did(db):
    message_in(S.APPROVED)
    msg = lifecycle.mark_failed("m1", "Number not on WhatsApp", **WHO)
    assert msg.data["error"] == "Number not on WhatsApp"
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.note, event.detail) == (
        "mark_failed",
        "Number not on WhatsApp",
        {"error": "Number not on WhatsApp"},
    )


def test_mark_sent_records_the_gateway_message_id(db):
    message_in(S.APPROVED)
    lifecycle.mark_sent("m1", gateway_message_id="true_9230@c.us_ABC", **WHO)
    assert AuditEvent.objects.latest("pk").detail == {"gateway_message_id": "true_9230@c.us_ABC"}


def test_a_worker_can_only_finish_a_reply_it_has_claimed(db):
    message_in(S.APPROVED)
    _claim("m1", "sender-1")
    with pytest.raises(MoveRefused, match="it is not claimed by sender-2"):
        lifecycle.mark_sent("m1", worker="sender-2", actor="sender-2", source=Source.WORKER)
    with pytest.raises(MoveRefused, match="it is not claimed by sender-2"):
        lifecycle.mark_failed("m1", "x", worker="sender-2", actor="sender-2", source=Source.WORKER)
    lifecycle.mark_sent("m1", worker="sender-1", actor="sender-1", source=Source.WORKER)
    assert Message.objects.get(message_id="m1").status == S.SENT


def test_confirm_sent_moves_a_failed_reply_to_sent(db):
    message_in(S.FAILED)
    msg = lifecycle.confirm_sent("m1", note="customer got it", **WHO)
    assert msg.status == S.SENT
    assert AuditEvent.objects.latest("pk").action == "confirm_sent"


def test_submit_moves_an_incoming_message_to_pending(db):
    message_in(S.INCOMING)
    assert lifecycle.submit("m1", **WHO).status == S.PENDING_APPROVAL


def test_clear_list_empties_one_list_audited_with_the_ids(db):
    message_in(S.SENT, "a")
    message_in(S.SENT, "b")
    message_in(S.INCOMING, "c")
    assert lifecycle.clear_list(S.SENT, **WHO) == 2
    assert list(Message.objects.values_list("message_id", flat=True)) == ["c"]
    event = AuditEvent.objects.latest("pk")
    assert (event.action, event.from_status, event.detail) == (
        "clear_list",
        "sent",
        {"ids": ["a", "b"]},
    )


# --- Adding messages ------------------------------------------------------------


def test_add_message_stores_the_object_and_counts_it(db):
    data = {"id": "in1", "from": "923001234567@c.us", "body": "Hi"}
    msg = lifecycle.add_message(data, S.INCOMING, actor="watcher", source=Source.API)
    assert "timestamp" in data  # added to the caller's dict, as the old code did
    assert msg.data == data and list(msg.data)[-1] == "timestamp"
    assert msg.chat == "923001234567" and msg.timestamp is not None
    stats = rootstate.statistics()
    assert stats["total_incoming"] == 1
    received = clock.parse_timestamp(stats["last_message_received"])
    assert abs((clock.now() - received).total_seconds()) < 60
    event = AuditEvent.objects.get()
    assert (event.action, event.to_status, event.actor) == ("add", "incoming", "watcher")


def test_add_message_keeps_a_timestamp_the_caller_gave(db):
    data = {"id": "in1", "timestamp": 1764000000}
    lifecycle.add_message(data, S.INCOMING, actor="watcher", source=Source.API)
    assert Message.objects.get().data == {"id": "in1", "timestamp": 1764000000}


def test_add_message_with_an_id_already_stored_raises_and_stores_no_second_copy(db):
    message_in(S.SENT)
    exported, events = statefile.export_bytes(), AuditEvent.objects.count()
    with pytest.raises(ValueError, match="m1: a message with this id is already stored"):
        lifecycle.add_message({"id": "m1"}, S.PENDING_APPROVAL, actor="a", source=Source.API)
    assert Message.objects.filter(message_id="m1").count() == 1
    assert statefile.export_bytes() == exported
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    "data, problem",
    [
        ({"body": "no id"}, "message_data needs a string 'id'"),
        ({"id": 7}, "message_data needs a string 'id'"),
        ({"id": "x" * 501}, "id: longer than 500 characters"),
        ({"id": "a", "body": "nul\x00"}, "body: holds a NUL character"),
        ({"id": "a", "body": "\ud800"}, "body: holds a lone surrogate"),
        ({"id": "a", "isGroup": "yes"}, "isGroup: expected true or false"),
        (
            {"id": "a", "status": "sent"},
            "status: is 'sent' but the message is in the 'incoming' list",
        ),
        ({"id": "a", "x": float("nan")}, "x: NaN is not a JSON number"),
        ({"id": "a", "x": [float("inf")]}, r"x\[0\]: a number too large to store"),
    ],
)
def test_add_message_refuses_what_an_import_would_refuse(db, data, problem):
    exported = statefile.export_bytes()
    with pytest.raises(ValueError, match=problem):
        lifecycle.add_message(data, S.INCOMING, actor="a", source=Source.API)
    assert statefile.export_bytes() == exported
    assert not AuditEvent.objects.exists()


def test_with_human_in_the_loop_off_a_draft_is_approved_at_once_by_auto(db):
    statefile.import_bytes(b'{"human_in_the_loop": false}', actor="t", source=Source.COMMAND)
    msg = lifecycle.add_message(
        {"id": "r1", "body": "Hi"}, S.PENDING_APPROVAL, actor="assistant", source=Source.API
    )
    assert msg.status == S.APPROVED and msg.status_changed_by == "auto"
    events = list(
        AuditEvent.objects.filter(message_id="r1")
        .order_by("pk")
        .values_list("action", "actor", "to_status")
    )
    assert events == [("add", "assistant", "pending_approval"), ("approve", "auto", "approved")]
    assert rootstate.statistics()["total_approved"] == 1


def test_with_human_in_the_loop_off_a_draft_is_never_stored_pending(db, monkeypatch):
    # The add and the automatic approval are one transaction: if the approval
    # fails, nothing was added (no reviewer ever saw it pending).
    statefile.import_bytes(b'{"human_in_the_loop": false}', actor="t", source=Source.COMMAND)
    exported = statefile.export_bytes()

    def failing_approve(*args, **kwargs):
        raise MoveRefused("r1", actual=S.REJECTED, wanted=S.APPROVED, last_actor="dana")

    monkeypatch.setattr(lifecycle, "approve", failing_approve)
    with pytest.raises(MoveRefused):
        lifecycle.add_message({"id": "r1"}, S.PENDING_APPROVAL, actor="a", source=Source.API)
    assert statefile.export_bytes() == exported
    assert not Message.objects.exists()


def test_with_human_in_the_loop_off_incoming_messages_stay_incoming(db):
    statefile.import_bytes(b'{"human_in_the_loop": false}', actor="t", source=Source.COMMAND)
    msg = lifecycle.add_message({"id": "i1"}, S.INCOMING, actor="watcher", source=Source.API)
    assert msg.status == S.INCOMING


@pytest.mark.parametrize("file", [b"{}", b'{"human_in_the_loop": true}'])
def test_with_human_in_the_loop_on_or_missing_a_draft_waits(db, file):
    statefile.import_bytes(file, actor="t", source=Source.COMMAND)
    msg = lifecycle.add_message(
        {"id": "r1"}, S.PENDING_APPROVAL, actor="assistant", source=Source.API
    )
    assert msg.status == S.PENDING_APPROVAL


# --- Races --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_reviewers_racing_on_one_draft_make_exactly_one_move():
    message_in(S.PENDING_APPROVAL)
    events_before = AuditEvent.objects.count()
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def reviewer(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            verb = lifecycle.approve if n % 2 else lifecycle.reject
            try:
                verb("m1", actor=f"reviewer-{n}", source=Source.WEB)
                result = f"moved by reviewer-{n}"
            except MoveRefused as refusal:
                result = f"refused: {refusal.actual}"
            with lock:
                outcomes.append(result)
        finally:
            connection.close()

    threads = [threading.Thread(target=reviewer, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(outcomes) == 20
    moved = [o for o in outcomes if o.startswith("moved")]
    assert len(moved) == 1
    msg = Message.objects.get(message_id="m1")
    assert moved[0] == f"moved by {msg.status_changed_by}"
    assert sorted(set(outcomes) - set(moved)) == [f"refused: {msg.status}"]
    assert AuditEvent.objects.count() == events_before + 1
    stats = rootstate.statistics()
    assert stats["total_approved"] + stats["total_rejected"] == 1


# --- Refusal codes: what callers decide on ------------------------------------------


def test_each_refusal_carries_its_code(db):
    message_in(S.SENT, "sent1")
    with pytest.raises(MoveRefused) as no_such_move:
        lifecycle.move("sent1", S.PENDING_APPROVAL, actor="x", source=Source.API)
    assert no_such_move.value.code == lifecycle.Refusal.NOT_ALLOWED
    with pytest.raises(MoveRefused) as elsewhere:
        lifecycle.approve("sent1", actor="x", source=Source.API)
    assert elsewhere.value.code == lifecycle.Refusal.NOT_ALLOWED
    message_in(S.FAILED, "failed1")
    with pytest.raises(MoveRefused) as wrong:
        lifecycle.move(
            "failed1", S.APPROVED, expected=[S.PENDING_APPROVAL], actor="x", source=Source.API
        )
    assert wrong.value.code == lifecycle.Refusal.WRONG_STATUS
    with pytest.raises(MessageNotFound) as missing:
        lifecycle.approve("nope", actor="x", source=Source.API)
    assert missing.value.code == lifecycle.Refusal.NOT_FOUND


def test_undo_of_a_claimed_reply_is_refused_as_claimed(db):
    message_in(S.APPROVED, "c1")
    Message.objects.filter(message_id="c1").update(claimed_by="w1", claimed_at=clock.now())
    with pytest.raises(MoveRefused) as refused:
        lifecycle.undo("c1", actor="dana", source=Source.WEB)
    assert refused.value.code == lifecycle.Refusal.CLAIMED


def test_recording_a_reply_another_worker_holds_is_refused_as_not_claim_holder(db):
    message_in(S.APPROVED, "c2")
    Message.objects.filter(message_id="c2").update(claimed_by="w1", claimed_at=clock.now())
    with pytest.raises(MoveRefused) as refused:
        lifecycle.mark_sent("c2", actor="w2", source=Source.WORKER, worker="w2")
    assert refused.value.code == lifecycle.Refusal.NOT_CLAIM_HOLDER


# --- release: a held send lifts the claim and changes nothing else --------------------


def _claimed(mid: str, worker: str = "w1") -> Message:
    message_in(S.APPROVED, mid)
    now = clock.now()
    Message.objects.filter(message_id=mid).update(
        claimed_by=worker, claimed_at=now, lease_until=now + timedelta(minutes=5)
    )
    return Message.objects.get(message_id=mid)


def test_release_lifts_the_claim_and_keeps_status_time_order_and_counters(db):
    before = _claimed("h1")
    counters = rootstate.statistics()
    exported = statefile.export_bytes()
    lifecycle.release("h1", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    after = Message.objects.get(message_id="h1")
    assert after.status == S.APPROVED
    assert (after.claimed_by, after.claimed_at, after.lease_until) == ("", None, None)
    assert after.status_updated_at == before.status_updated_at
    assert after.position == before.position
    assert after.raw == before.raw
    assert rootstate.statistics() == counters
    assert statefile.export_bytes() == exported
    held = AuditEvent.objects.filter(message_id="h1", action="send_held")
    assert [(e.from_status, e.to_status, e.note) for e in held] == [
        (S.APPROVED, S.APPROVED, "not ready")
    ]


def test_a_reply_held_again_with_nothing_in_between_writes_no_second_row(db):
    _claimed("h2")
    lifecycle.release("h2", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    Message.objects.filter(message_id="h2").update(claimed_by="w1", claimed_at=clock.now())
    lifecycle.release("h2", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    assert AuditEvent.objects.filter(message_id="h2", action="send_held").count() == 1


def test_a_hold_after_another_action_is_a_new_hold(db):
    _claimed("h3")
    lifecycle.release("h3", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    lifecycle.reopen("h3", actor="dana", source=Source.WEB)
    lifecycle.approve("h3", actor="dana", source=Source.WEB)
    Message.objects.filter(message_id="h3").update(claimed_by="w1", claimed_at=clock.now())
    lifecycle.release("h3", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    assert AuditEvent.objects.filter(message_id="h3", action="send_held").count() == 2


def test_only_the_claim_holder_can_release(db):
    _claimed("h4", worker="w1")
    with pytest.raises(MoveRefused) as refused:
        lifecycle.release("h4", "not ready", worker="w2", actor="w2", source=Source.WORKER)
    assert refused.value.code == lifecycle.Refusal.NOT_CLAIM_HOLDER
    assert Message.objects.get(message_id="h4").claimed_by == "w1"
    assert not AuditEvent.objects.filter(message_id="h4", action="send_held").exists()


def test_a_reply_no_longer_approved_cannot_be_released(db):
    message_in(S.SENT, "h5")
    with pytest.raises(MoveRefused) as refused:
        lifecycle.release("h5", "not ready", worker="w1", actor="w1", source=Source.WORKER)
    assert refused.value.code == lifecycle.Refusal.WRONG_STATUS


# --- Every write in the core, once (issue 13) ---------------------------------------------


def test_a_move_rewrites_every_derived_column_of_a_changed_key(db):
    msg = make_reply(S.PENDING_APPROVAL)
    moved = lifecycle.move(
        msg.message_id,
        S.APPROVED,
        actor="t",
        source=Source.API,
        set_keys={"recipient": "923009998877@c.us", "original_message_id": "other"},
    )
    stored = Message.objects.get(pk=msg.pk)
    for row in (moved, stored):
        assert (row.recipient, row.chat, row.reply_to) == (
            "923009998877@c.us",
            "923009998877",
            "other",
        )


def _leased(msg, *, minutes: int) -> None:
    now = clock.now()
    Message.objects.filter(pk=msg.pk).update(
        claimed_by="w1", claimed_at=now, lease_until=now + timedelta(minutes=minutes)
    )


def test_mark_failed_unless_leased_refuses_a_reply_a_sender_holds_and_changes_nothing(db):
    held = make_reply(S.APPROVED)
    _leased(held, minutes=5)
    with pytest.raises(MoveRefused) as refused:
        lifecycle.mark_failed(
            held.message_id, "stuck", actor="t", source="admin", unless_leased=True
        )
    assert refused.value.code == lifecycle.Refusal.CLAIMED
    assert Message.objects.get(pk=held.pk).status == S.APPROVED
    assert not AuditEvent.objects.filter(message_id=held.message_id, action="mark_failed").exists()


def test_mark_failed_unless_leased_moves_a_reply_whose_lease_ran_out(db):
    stuck, free = make_reply(S.APPROVED), make_reply(S.APPROVED)
    _leased(stuck, minutes=-1)
    for msg in (stuck, free):
        lifecycle.mark_failed(
            msg.message_id, "stuck", actor="t", source="admin", unless_leased=True
        )
        assert Message.objects.get(pk=msg.pk).status == S.FAILED


def test_mark_failed_without_the_option_ignores_the_lease(db):
    """The sender records its own failure while it holds the lease."""
    held = make_reply(S.APPROVED)
    _leased(held, minutes=5)
    lifecycle.mark_failed(held.message_id, "boom", actor="w1", source="worker", worker="w1")
    assert Message.objects.get(pk=held.pk).status == S.FAILED


def test_edit_extra_keys_rewrites_the_object_and_audits_before_and_after(db):
    msg = make_reply(S.PENDING_APPROVAL, meta={"a": 1})
    assert lifecycle.edit_extra_keys(
        msg.message_id,
        {"meta": {"a": 2}, "tag": "x"},
        seen={"meta": {"a": 1}},
        actor="t",
        source="admin",
    )
    data = Message.objects.get(pk=msg.pk).data
    assert (data["meta"], data["tag"], data["body"]) == ({"a": 2}, "x", msg.body)
    event = AuditEvent.objects.get(message_id=msg.message_id, action=lifecycle.EDIT_EXTRA_KEYS)
    assert event.detail == {"before": {"meta": {"a": 1}}, "after": {"meta": {"a": 2}, "tag": "x"}}


def test_edit_extra_keys_refuses_a_stale_page_and_saves_nothing(db):
    msg = make_reply(S.PENDING_APPROVAL, meta={"a": 1})
    with pytest.raises(lifecycle.Conflict):
        lifecycle.edit_extra_keys(msg.message_id, {"meta": 3}, seen={}, actor="t", source="admin")
    assert Message.objects.get(pk=msg.pk).data["meta"] == {"a": 1}
    assert not AuditEvent.objects.filter(action=lifecycle.EDIT_EXTRA_KEYS).exists()


def test_edit_extra_keys_with_nothing_changed_writes_no_row(db):
    msg = make_reply(S.PENDING_APPROVAL, meta=1)
    assert not lifecycle.edit_extra_keys(
        msg.message_id, {"meta": 1}, seen={"meta": 1}, actor="t", source="admin"
    )
    assert not AuditEvent.objects.filter(action=lifecycle.EDIT_EXTRA_KEYS).exists()


def test_edit_extra_keys_refuses_a_key_the_dashboard_keeps(db):
    msg = make_reply(S.PENDING_APPROVAL)
    with pytest.raises(ValueError, match="status"):
        lifecycle.edit_extra_keys(
            msg.message_id, {"status": "sent"}, seen={}, actor="t", source="admin"
        )
    assert Message.objects.get(pk=msg.pk).status == S.PENDING_APPROVAL


def test_a_failure_is_uncertain_by_the_audit_rows_flag_not_the_errors_words(db):
    unknown, certain, worded = (make_reply(S.APPROVED) for _ in range(3))
    lifecycle.mark_failed(
        unknown.message_id,
        "timed out",
        actor="w",
        source="worker",
        detail={"outcome_unknown": True},
    )
    lifecycle.mark_failed(certain.message_id, "rejected by WhatsApp", actor="w", source="worker")
    lifecycle.mark_failed(worded.message_id, "outcome unknown?", actor="w", source="worker")
    assert lifecycle.last_failure_uncertain(unknown.message_id)
    assert not lifecycle.last_failure_uncertain(certain.message_id)
    assert not lifecycle.last_failure_uncertain(worded.message_id)
    assert not lifecycle.last_failure_uncertain(make_reply(S.SENT).message_id)


def test_a_delivery_failure_after_a_settled_uncertain_send_is_not_uncertain(db):
    msg = make_reply(S.APPROVED)
    lifecycle.mark_failed(
        msg.message_id, "timed out", actor="w", source="worker", detail={"outcome_unknown": True}
    )
    lifecycle.settle_sent(
        msg.message_id, gateway_message_id="g1", confirmed_by="echo", actor="g", source="gateway"
    )
    lifecycle.delivery_failed(msg.message_id, "undeliverable", actor="g", source="gateway")
    assert not lifecycle.last_failure_uncertain(msg.message_id)


def test_the_automation_approves_under_the_one_automatic_actor_name(db, settings):
    settings_store.update_settings({"human_in_the_loop": False}, actor="t", source="api")
    msg = make_reply(S.PENDING_APPROVAL)
    assert Message.objects.get(pk=msg.pk).status_changed_by == lifecycle.AUTOMATIC_ACTOR
