"""The shared loop runner: a `--loop` lives through anything one round throws.

Run on SQLite and on PostgreSQL (DATABASE_URL): the database connection is
really closed (or, on PostgreSQL, killed by the server) under a round.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import psycopg
import pytest
from django.db import Error as DatabaseError
from django.db import OperationalError, connection

from statecore import loops, whatsapp
from statecore.models import Message, Source, Status
from statecore.receiving import Receiver
from statecore.sending import Sender
from tests.factories import make_reply
from tests.session_helpers import use_gateway, valid_session

FAST = 0.01


@pytest.fixture
def fake(transactional_db, settings, tmp_path, fake_gateway, monkeypatch):
    """Committed for real (the loop closes connections: no test transaction can wrap it)."""
    settings.ASSISTANT = ""
    settings.APPROVAL_GRACE_SECONDS = 0
    settings.SEND_MIN_INTERVAL_SECONDS = 0
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    monkeypatch.setattr(loops, "FALLBACK_INTERVAL_SECONDS", FAST)
    return fake_gateway


def _interval_failing_first():
    calls = {"n": 0}

    def interval() -> float:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("could not read watcher_config: the database went away")
        return FAST

    return interval


def _kill_connection() -> None:
    """The database side ends this connection, as a restart or an idle timeout does."""
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
        settings = connection.settings_dict
        with psycopg.connect(
            dbname=settings["NAME"],
            user=settings["USER"] or "postgres",
            host=settings["HOST"] or "127.0.0.1",
            port=settings["PORT"] or 5432,
            password=settings["PASSWORD"] or None,
            autocommit=True,
        ) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        connection.connection.close()


# Only PostgreSQL has a server to end the connection; SQLite's is closed under it instead.
LOSSES = ["closed"] + (
    ["killed_by_the_server"] if os.environ.get("DATABASE_URL", "").startswith("postgres") else []
)


@pytest.mark.parametrize("how", LOSSES)
def test_the_receiver_loop_lives_through_a_lost_connection_and_carries_on(
    fake, monkeypatch, caplog, how
):
    first = fake.add_customer_message("Before the database went away")
    monkeypatch.setattr(loops, "poll_interval", _interval_failing_first())
    with whatsapp.gateway() as gateway:
        worker = Receiver(gateway)
        real_pull = gateway.pull_messages
        rounds = {"n": 0}

        def pull_then_lose_the_database():
            messages = real_pull()
            if rounds["n"] == 1:
                # Under the round: pulled, and the database connection goes before storing.
                if how == "closed":
                    connection.connection.close()
                else:
                    _kill_connection()
            return messages

        gateway.pull_messages = pull_then_lose_the_database
        real_round = worker.run_once
        later: dict = {}

        def one_round():
            rounds["n"] += 1
            if rounds["n"] == 2:
                raise OperationalError("server closed the connection unexpectedly")
            if rounds["n"] == 3:
                later.update(fake.add_customer_message("After it came back"))
            summary = real_round()
            if rounds["n"] >= 3 and summary.stored + summary.already_stored == 0:
                worker.stop.set()
            return summary

        worker.run_once = one_round
        watchdog = threading.Timer(60, worker.stop.set)
        watchdog.start()
        try:
            with caplog.at_level(logging.ERROR, logger="statecore.loops"):
                worker.run_forever()
        finally:
            watchdog.cancel()

    failed = [r for r in caplog.records if "receiver: this round failed" in r.getMessage()]
    assert len(failed) == 2
    # The first failure is the lost connection itself, met by the database layer.
    assert isinstance(failed[0].exc_info[1], DatabaseError), failed[0].exc_info
    assert any("could not read the poll interval" in r.getMessage() for r in caplog.records)
    stored = set(
        Message.objects.filter(status=Status.INCOMING).values_list("message_id", flat=True)
    )
    assert stored == {first["id"], later["id"]}
    assert sorted(fake.processed_ids()) == sorted([first["id"], later["id"]])
    assert rounds["n"] >= 4


def test_the_sender_loop_lives_through_a_lost_connection_and_sends_once(fake, monkeypatch, caplog):
    reply = make_reply(Status.APPROVED)
    monkeypatch.setattr(loops, "poll_interval", _interval_failing_first())
    with whatsapp.gateway(send_timeout=15) as gateway:
        sender = Sender(gateway, sleep=lambda seconds: None)
        real_round = sender.run_once
        rounds = {"n": 0}

        def one_round():
            rounds["n"] += 1
            if rounds["n"] == 1:
                connection.ensure_connection()
                connection.connection.close()
            elif rounds["n"] == 2:
                raise OperationalError("could not connect to server: Connection refused")
            summary = real_round()
            if Message.objects.get(pk=reply.pk).status == Status.SENT:
                sender.stop.set()
            return summary

        sender.run_once = one_round
        watchdog = threading.Timer(60, sender.stop.set)
        watchdog.start()
        try:
            with caplog.at_level(logging.ERROR, logger="statecore.loops"):
                sender.run_forever()
        finally:
            watchdog.cancel()

    assert Message.objects.get(pk=reply.pk).status == Status.SENT
    assert [call.message for call in fake.delivered()] == [reply.body]
    assert sum("sender: this round failed" in r.getMessage() for r in caplog.records) == 2


def test_run_loop_stops_after_the_round_in_flight_and_does_not_wait_out_the_interval():
    stop = threading.Event()
    rounds = []

    def one_round():
        rounds.append(time.monotonic())
        stop.set()  # a signal during the round

    started = time.monotonic()
    failures = loops.run_loop(one_round, interval=lambda: 60, stop=stop, name="test")
    assert failures == 0 and len(rounds) == 1
    assert time.monotonic() - started < 5


def test_run_loop_counts_failed_rounds_and_keeps_going(caplog):
    stop = threading.Event()
    outcomes = [ValueError("one"), None, KeyError("two"), None]
    done = []

    def one_round():
        outcome = outcomes[len(done)]
        done.append(outcome)
        if len(done) == len(outcomes):
            stop.set()
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.ERROR, logger="statecore.loops"):
        failures = loops.run_loop(one_round, interval=lambda: 0, stop=stop, name="test")
    assert failures == 2 and len(done) == 4
    assert sum("test: this round failed" in r.getMessage() for r in caplog.records) == 2


def test_poll_interval_reads_watcher_config(db):
    from statecore import rootstate

    assert loops.poll_interval() == 5.0
    for value, expected in [(1, 1.0), (7, 7.0)]:
        rootstate.update_part(
            "watcher_config",
            lambda old, v=value: {**old, "poll_interval_seconds": v},
            actor="t",
            source=Source.API,
            action="set",
        )
        assert loops.poll_interval() == expected, value
