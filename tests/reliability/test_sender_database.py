"""The sender outlives its database: `send_approved --loop` keeps running through a
lost connection and a 30-second outage, and the work resumes, each reply sent and
recorded once.

On PostgreSQL the sender's backend is terminated mid-loop (`pg_terminate_backend`,
as a restart, a failover or a pooler timeout does), then a TCP proxy on loopback
between the sender and PostgreSQL is stopped for 30 seconds. On SQLite the outage is
another process holding the write lock for 30 seconds (longer than the 20 s busy
timeout), so the sender's rounds fail with "database is locked".
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from django.db import connection

from statecore import clock, lifecycle, rootstate
from statecore.models import AuditEvent, Message, Source, Status
from tests.factories import make_reply
from tests.reliability.processes import kill
from tests.reliability.tcp_proxy import TcpProxy
from tests.session_helpers import child_env, manage, use_gateway, valid_session

OUTAGE_SECONDS = 30


def _wait_until(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the sender died (exit {proc.returncode}) waiting for {what}"
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _sent(msg: Message) -> bool:
    return Message.objects.get(pk=msg.pk).status == Status.SENT


def _approve() -> Message:
    reply = make_reply(Status.PENDING_APPROVAL)
    lifecycle.approve(reply.message_id, actor="dana", source=Source.WEB)
    return reply


def _terminate_other_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            manage("send_approved", "--loop", "--send-timeout", "5"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.django_db(transaction=True)
def test_the_sender_outlives_its_database_and_sends_each_reply_once(
    settings, tmp_path, fake_gateway
):
    settings.APPROVAL_GRACE_SECONDS = 0
    valid_session(settings, tmp_path)
    use_gateway(fake_gateway.url)
    rootstate.update_part(
        "watcher_config",
        lambda old: {**(old or {}), "poll_interval_seconds": 1},
        actor="test",
        source=Source.API,
        action="set",
    )
    db = connection.settings_dict
    postgres = connection.vendor == "postgresql"
    proxy = None
    extra = {"SEND_MIN_INTERVAL_SECONDS": "0", "APPROVAL_GRACE_SECONDS": "0"}
    if postgres:
        proxy = TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))).start()
        extra["DATABASE_URL"] = (
            f"postgres://{db['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
        )
    log = tmp_path / "sender.log"
    proc = _start(child_env(tmp_path, **extra), log)
    holder = None
    try:
        first = _approve()
        _wait_until(lambda: _sent(first), 30, proc, "the first reply to be sent")

        if postgres:
            # The server ends the sender's connection between two rounds.
            assert _terminate_other_backends() >= 1
            second = _approve()
            _wait_until(lambda: _sent(second), 30, proc, "a reply after the backend was ended")

        # The outage: nothing reaches the database for 30 seconds.
        if postgres:
            proxy.stop()
            third = _approve()
        else:
            # Held out of the sender's reach until the lock is taken (no race with it).
            third = _approve()
            Message.objects.filter(pk=third.pk).update(claimed_by="test", claimed_at=clock.now())
            holder = sqlite3.connect(db["NAME"], timeout=30)
            holder.execute("BEGIN EXCLUSIVE")
        time.sleep(OUTAGE_SECONDS)
        assert proc.poll() is None, "the sender died during the outage"
        if postgres:
            proxy.start()
        else:
            holder.rollback()
            holder.close()
            holder = None
            Message.objects.filter(pk=third.pk).update(claimed_by="", claimed_at=None)
        _wait_until(lambda: _sent(third), 60, proc, "the reply approved during the outage")
        assert proc.poll() is None
    finally:
        if holder is not None:
            holder.close()
        kill(proc)
        if proxy is not None:
            proxy.stop()

    output = log.read_text(errors="replace")
    # The rounds did fail (the outage was real) and the loop carried on.
    assert "this round failed; trying again next round" in output
    replies = [first, third] + ([second] if postgres else [])
    for reply in replies:
        assert [c.number for c in fake_gateway.delivered()].count(reply.recipient) == 1
        assert (
            AuditEvent.objects.filter(message_id=reply.message_id, action="mark_sent").count() == 1
        )
    assert len(fake_gateway.delivered()) == len(replies)
