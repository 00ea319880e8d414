"""The receiving loop against the stand-in of the scripts' service, over real HTTP."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from statecore import clock, lifecycle, rootstate, session, whatsapp
from statecore.models import AuditEvent, GatewayState, Message, Source, Status
from statecore.receiving import WATCH_EVERY, Receiver, gap_sentence
from statecore.state_manager import StateManager
from statecore.whatsapp import GatewayUnavailable
from statecore.whatsapp.wwebjs import WwebjsGateway
from tests.session_helpers import REPO, child_env, manage, use_gateway, valid_session

STORED_KEYS = [
    "id",
    "from",
    "fromName",
    "body",
    "timestamp",
    "isGroup",
    "chatName",
    "type",
    "hasMedia",
    "receivedAt",
]


def _prepare(settings, tmp_path, fake):
    settings.ASSISTANT = ""
    valid_session(settings, tmp_path)
    use_gateway(fake.url)
    return fake


@pytest.fixture
def fake(db, settings, tmp_path, fake_gateway):
    """The stand-in as api_endpoint, a valid session, no assistant."""
    return _prepare(settings, tmp_path, fake_gateway)


@pytest.fixture
def gateway(fake):
    with whatsapp.gateway(status_timeout=5.0) as adapter:
        yield adapter


class Said(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def receiver(gateway) -> Receiver:
    return Receiver(gateway, say=Said())


def incoming() -> list[dict]:
    return [m.data for m in Message.objects.filter(status=Status.INCOMING).in_list_order()]


def stored_ids() -> list[str]:
    return [m["id"] for m in incoming()]


def audit(action: str):
    return AuditEvent.objects.filter(action=action)


# --- Messages in ------------------------------------------------------------------------


def test_three_messages_are_stored_once_each_and_marked_processed(fake, gateway):
    sent = [fake.add_customer_message(f"Message {n}", name=f"Customer {n}") for n in range(3)]

    summary = receiver(gateway).run_once()

    assert (summary.stored, summary.marked, summary.already_stored) == (3, 3, 0)
    ids = [m["id"] for m in sent]
    assert stored_ids() == ids
    for message, given in zip(incoming(), sent, strict=True):
        # The object as the old watcher logged it: the service's fields, as given.
        assert list(message) == STORED_KEYS
        assert message == {key: given[key] for key in STORED_KEYS}
    assert fake.processed_ids() == ids
    adds = audit("add").filter(message_id__in=ids)
    assert {(e.actor, e.source, e.to_status) for e in adds} == {
        ("receiver", Source.GATEWAY, Status.INCOMING)
    }
    assert adds.count() == 3
    assert rootstate.statistics()["total_incoming"] == 3


def test_a_second_run_adds_none(fake, gateway):
    for n in range(3):
        fake.add_customer_message(f"Message {n}")
    worker = receiver(gateway)
    worker.run_once()

    summary = worker.run_once()

    assert (summary.stored, summary.already_stored, summary.marked) == (0, 0, 0)
    assert Message.objects.count() == 3
    assert fake.calls()["processed"] == 3
    assert audit("add").count() == 3


def test_a_failed_mark_after_storing_adds_no_duplicate_and_is_marked_next_round(
    fake, gateway, monkeypatch
):
    ids = [fake.add_customer_message(f"Message {n}")["id"] for n in range(3)]
    real_mark = WwebjsGateway.mark_processed
    failures = iter([True])

    def mark_once_failing(self, message_id):
        if next(failures, False):
            raise GatewayUnavailable("the gateway did not answer (ReadTimeout)")
        return real_mark(self, message_id)

    monkeypatch.setattr(WwebjsGateway, "mark_processed", mark_once_failing)
    worker = receiver(gateway)

    first = worker.run_once()
    assert first.stored == 3 and first.marked == 0
    assert "ReadTimeout" in first.mark_error
    assert fake.processed_ids() == []

    second = worker.run_once()
    assert (second.stored, second.already_stored, second.marked) == (0, 3, 3)
    assert stored_ids() == ids
    assert fake.processed_ids() == ids
    assert audit("add").count() == 3


def test_a_crash_between_storing_and_marking_is_healed_by_the_next_round(
    fake, gateway, monkeypatch
):
    """The process dies (any exception) after the message was stored, before the mark."""
    message_id = fake.add_customer_message("Hello")["id"]
    real_mark = WwebjsGateway.mark_processed
    crashes = iter([True])

    def crash_once(self, mid):
        if next(crashes, False):
            raise KeyboardInterrupt("killed")
        return real_mark(self, mid)

    monkeypatch.setattr(WwebjsGateway, "mark_processed", crash_once)
    with pytest.raises(KeyboardInterrupt):
        receiver(gateway).run_once()
    assert stored_ids() == [message_id] and fake.processed_ids() == []

    # A new process, as after a restart.
    summary = receiver(gateway).run_once()
    assert (summary.stored, summary.already_stored, summary.marked) == (0, 1, 1)
    assert Message.objects.filter(message_id=message_id).count() == 1
    assert fake.processed_ids() == [message_id]


def test_a_message_stored_by_another_receiver_meanwhile_is_only_marked(fake, gateway, monkeypatch):
    """Between this round's dedupe query and its add, another receiver stored it."""
    message_id = fake.add_customer_message("Hello")["id"]
    real_add = lifecycle.add_message

    def other_receiver_first(data, status, **who):
        real_add(dict(data), status, actor="other receiver", source=Source.GATEWAY)
        return real_add(data, status, **who)

    monkeypatch.setattr(lifecycle, "add_message", other_receiver_first)
    summary = receiver(gateway).run_once()

    assert (summary.stored, summary.already_stored, summary.refused) == (0, 1, {})
    assert fake.processed_ids() == [message_id]
    assert Message.objects.get(message_id=message_id).status == Status.INCOMING


def test_a_status_update_is_marked_processed_and_not_stored(fake, gateway):
    status = fake.add_customer_message("My holiday photo", sender="status@broadcast")
    customer = fake.add_customer_message("Hello")

    summary = receiver(gateway).run_once()

    assert summary.status_updates == 1 and summary.stored == 1
    assert stored_ids() == [customer["id"]]
    assert not Message.objects.filter(message_id=status["id"]).exists()
    assert sorted(fake.processed_ids()) == sorted([status["id"], customer["id"]])


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert('x')</script><b>bold</b> &amp; <img src=x onerror=alert(1)>",
        "😀👍🏽 مرحبا שלום 你好 \u200f",
        "",
        "line one\nline two\r\n\ttabbed  ",
    ],
    ids=["html", "emoji", "empty", "whitespace"],
)
def test_bodies_are_stored_as_given_text(fake, gateway, body):
    given = fake.add_customer_message(
        body, type="image" if not body else "chat", has_media=not body
    )

    receiver(gateway).run_once()

    msg = Message.objects.get(message_id=given["id"])
    assert msg.data["body"] == body
    assert msg.body == body
    assert json.loads(msg.raw)["hasMedia"] is (not body)


def test_group_and_hidden_number_messages_are_stored(fake, gateway):
    group = fake.add_customer_message(
        "In the group", sender="120363041234567890@g.us", chat_name="Shop friends"
    )
    lid = fake.add_customer_message("Hidden", sender="185802933125190@lid")

    receiver(gateway).run_once()

    stored = {m.message_id: m for m in Message.objects.all()}
    assert stored[group["id"]].data["from"] == "120363041234567890@g.us"
    assert stored[group["id"]].data["isGroup"] is True and stored[group["id"]].is_group
    assert stored[group["id"]].data["chatName"] == "Shop friends"
    assert stored[lid["id"]].data["from"] == "185802933125190@lid"
    assert not stored[lid["id"]].is_group
    assert sorted(fake.processed_ids()) == sorted([group["id"], lid["id"]])


def test_a_message_the_state_file_refuses_is_said_left_unmarked_and_the_others_go_on(
    fake, gateway, caplog
):
    good = fake.add_customer_message("Before")
    bad = fake.add_customer_message("a NUL \x00 inside")
    after = fake.add_customer_message("After")
    worker = receiver(gateway)

    with caplog.at_level(logging.WARNING, logger="statecore.receiving"):
        summary = worker.run_once()

    assert stored_ids() == [good["id"], after["id"]]
    assert list(summary.refused) == [bad["id"]]
    assert "NUL" in summary.refused[bad["id"]]
    assert fake.processed_ids() == [good["id"], after["id"]]
    warning = next(r.getMessage() for r in caplog.records if bad["id"] in r.getMessage())
    assert "NUL" in warning and "left unprocessed" in warning
    assert any(bad["id"] in line for line in worker.say)


def test_the_dedupe_is_one_query_however_many_are_already_stored(fake, gateway):
    worker = receiver(gateway)
    worker.run_once()  # the first watch is done; the next rounds only pull

    def queries_of_a_round_with_already_stored(n: int) -> int:
        ids = [fake.add_customer_message(f"m{k}")["id"] for k in range(n)]
        for mid in ids:  # stored, not marked: as after a crash
            Message.objects.create(
                message_id=mid, status=Status.INCOMING, raw=json.dumps({"id": mid})
            )
        with CaptureQueriesContext(connection) as queries:
            summary = worker.run_once()
        assert summary.already_stored == n and summary.marked == n
        return len(queries)

    assert queries_of_a_round_with_already_stored(3) == queries_of_a_round_with_already_stored(40)


# --- The gateway's buffer and the last good poll -------------------------------------------


def test_each_good_poll_sets_last_poll_at_and_a_failed_one_does_not(fake, gateway):
    worker = receiver(gateway)
    worker.run_once()
    first = GatewayState.objects.get().last_poll_at
    assert first is not None

    fake.set_messages_failure("error500")
    summary = worker.run_once()
    worker.run_once()
    assert "HTTP 500" in summary.pull_error
    assert GatewayState.objects.get().last_poll_at == first
    # Said once, not every round.
    assert sum("Could not pull" in line for line in worker.say) == 1

    fake.set_messages_failure(None)
    worker.run_once()
    assert GatewayState.objects.get().last_poll_at > first
    assert GatewayState.objects.get().inbound_gap == ""


def test_a_full_buffer_is_recorded_as_a_gap_since_the_last_good_poll(fake, gateway, caplog):
    worker = receiver(gateway)
    worker.run_once()
    last_poll = GatewayState.objects.get().last_poll_at
    base = int(time.time()) - 600
    for n in range(105):  # the service keeps the last 100: five fell off
        fake.add_customer_message(f"m{n}", timestamp=base + n)
    oldest = min(datetime.fromisoformat(m["receivedAt"]) for m in fake.messages())

    with caplog.at_level(logging.WARNING, logger="statecore.receiving"):
        summary = worker.run_once()

    state = GatewayState.objects.get()
    expected = (
        "The gateway's buffer was full: messages received between "
        f"{clock.local_iso(last_poll)[:19].replace('T', ' ')} and "
        f"{clock.local_iso(oldest)[:19].replace('T', ' ')} may have been lost."
    )
    assert summary.gap == state.inbound_gap == expected
    assert state.inbound_gap_at is not None
    assert state.last_poll_at > last_poll
    assert expected in [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert summary.stored == 100


def test_an_answer_of_99_is_no_gap(fake, gateway):
    for n in range(99):
        fake.add_customer_message(f"m{n}")
    summary = receiver(gateway).run_once()
    assert summary.gap == "" and GatewayState.objects.get().inbound_gap == ""
    assert summary.stored == 99


def test_the_gap_without_an_earlier_poll_says_so():
    oldest = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    text = gap_sentence(None, oldest)
    assert text.startswith("The gateway's buffer was full: messages received before ")
    assert clock.local_iso(oldest)[:16].replace("T", " ") in text
    assert "no earlier good poll" in text


# --- Watching the session --------------------------------------------------------------


def test_the_watch_records_a_qr_then_not_ready_then_ready(fake, gateway):
    worker = receiver(gateway)
    before = audit("session_invalid").count()

    qr = fake.show_qr("2@AbCdEf==,stand-in-qr")
    worker.run_once()  # the first round always asks
    state = GatewayState.objects.get()
    assert (state.state, state.qr) == ("needs_qr", qr)
    stored = rootstate.session_data()
    assert stored["requires_qr"] is True and stored["session_valid"] is False
    assert audit("session_invalid").count() == before + 1

    calls = fake.calls()["status"]
    worker.run_once()  # the same QR again: asked again (not valid), no audit row
    assert fake.calls()["status"] == calls + 1
    assert audit("session_invalid").count() == before + 1
    assert GatewayState.objects.get().repeats == 1

    fake.go_not_ready()
    worker.run_once()
    state = GatewayState.objects.get()
    assert (state.state, state.qr) == ("disconnected", "")
    assert audit("session_invalid").count() == before + 2
    worker.run_once()
    assert audit("session_invalid").count() == before + 2

    fake.scan()
    worker.run_once()
    assert GatewayState.objects.get().state == "ready"
    stored = rootstate.session_data()
    assert stored["session_valid"] is True and stored["requires_qr"] is False
    assert any("ready" in line.lower() for line in worker.say)


def test_while_all_is_well_status_is_asked_every_minute_only(fake, gateway, monkeypatch):
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start)
    worker = receiver(gateway)

    assert worker.run_once().watched  # the first round always asks
    assert not worker.run_once().watched
    assert fake.calls()["status"] == 1

    monkeypatch.setattr(clock, "now", lambda: start + WATCH_EVERY - timedelta(seconds=1))
    assert not worker.run_once().watched
    monkeypatch.setattr(clock, "now", lambda: start + WATCH_EVERY)
    assert worker.run_once().watched
    assert fake.calls()["status"] == 2
    assert fake.calls()["messages"] == 4  # every round pulls


def test_an_invalid_stored_session_is_watched_every_round(fake, gateway):
    worker = receiver(gateway)
    worker.run_once()
    rootstate.update_part(
        "session",
        lambda old: {**old, "last_validation": None},
        actor="t",
        source=Source.API,
        action="set",
    )
    # The gateway says ready: the stale validation is renewed on this very round.
    assert worker.run_once().watched
    assert rootstate.session_data()["last_validation"] is not None
    assert not worker.run_once().watched


def test_a_session_marked_valid_while_the_gateway_last_said_not_ready_is_still_watched(
    fake, gateway
):
    worker = receiver(gateway)
    fake.go_not_ready()
    worker.run_once()
    assert GatewayState.objects.get().state == "disconnected"
    # A script says the session is fine; the gateway has not said "ready" since.
    StateManager(actor="script").update_session_status(True)
    assert session.check(session.current()).valid

    assert worker.run_once().watched
    fake.scan()
    assert worker.run_once().watched
    assert GatewayState.objects.get().state == "ready"
    assert not worker.run_once().watched


def test_a_gateway_that_does_not_answer_status_is_said_once_and_messages_still_come(fake, gateway):
    worker = receiver(gateway)
    fake.go_not_ready()  # not ready: watched every round
    worker.run_once()
    fake.set_status_failure("drop")
    fake.add_customer_message("Still here")

    first = worker.run_once()
    second = worker.run_once()

    assert first.watched and second.watched and first.watch_error
    assert first.stored == 1
    assert sum("did not answer /status" in line for line in worker.say) == 1
    fake.set_status_failure(None)
    worker.run_once()
    assert "The gateway answers again." in worker.say


# --- The command ---------------------------------------------------------------------------


def test_receive_messages_once_prints_a_summary(fake, capsys):
    fake.add_customer_message("One")
    fake.add_customer_message("Status", sender="status@broadcast")

    call_command("receive_messages")

    out = capsys.readouterr().out
    assert f"Receiver using the wwebjs gateway at {fake.url}; no ASSISTANT" in out
    assert "1 stored, 0 already stored, 1 Status updates skipped, 2 marked processed" in out
    assert Message.objects.count() == 1


def test_receive_messages_fails_when_the_gateway_cannot_be_pulled(fake, capsys):
    fake.set_messages_failure("error500")
    with pytest.raises(CommandError, match="could not be pulled"):
        call_command("receive_messages")


def test_receive_messages_refuses_an_assistant_it_cannot_import(fake, settings):
    settings.ASSISTANT = "no_such_module.draft_reply"
    with pytest.raises(CommandError, match="ASSISTANT.*no_such_module.draft_reply"):
        call_command("receive_messages")
    assert fake.calls()["messages"] == 0


@pytest.fixture
def fake_tx(transactional_db, settings, tmp_path, fake_gateway):
    return _prepare(settings, tmp_path, fake_gateway)


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_receive_messages_loop_stores_drafts_and_stops_on_sigterm(fake_tx, tmp_path):
    rootstate.update_part(
        "watcher_config",
        lambda old: {**old, "poll_interval_seconds": 1},
        actor="t",
        source=Source.API,
        action="set",
    )
    child = subprocess.Popen(
        manage("receive_messages", "--loop"),
        cwd=REPO,
        env=child_env(tmp_path, ASSISTANT="statecore.standin_assistant.draft_reply"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert child.stdout.readline().startswith("Receiver using the wwebjs gateway")
        message = fake_tx.add_customer_message("Do you deliver on Sundays?")
        reply_id = f"reply_{message['id']}"
        _wait_for(lambda: Message.objects.filter(message_id=reply_id).exists(), "the draft")
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            output = child.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            child.kill()
            output = child.communicate()[0]
            pytest.fail(f"receive_messages --loop did not stop on SIGTERM:\n{output}")

    assert child.returncode == 0, output
    assert "Receiver stopped." in output
    assert fake_tx.processed_ids() == [message["id"]]
    reply = Message.objects.get(message_id=reply_id)
    assert reply.status == Status.PENDING_APPROVAL
    assert reply.body.startswith("STAND-IN assistant:")
