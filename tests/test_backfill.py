"""Backfill (statecore/backfill.py): what a lost webhook missed, asked back chat by chat.

Against a fake client object here (the rules: which chats, since when, how often, what
a failure does); against the WAHA and Evolution stand-ins over real HTTP in
tests/test_receiving_webhook_kinds.py.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from statecore import backfill, clock, inbound, lifecycle
from statecore.backfill import (
    ACTIVE,
    CHAT_EVERY,
    MAX_CHATS_PER_ROUND,
    MAX_FAILURES_PER_ROUND,
    OVERLAP,
    RECENT,
    Backfiller,
)
from statecore.models import AuditEvent, Message, Source, Status
from statecore.whatsapp import (
    DEDUPE_WINDOW,
    Account,
    GatewayUnavailable,
    InboundMessage,
    State,
    Traits,
)
from statecore.whatsapp import Status as GatewayStatus

pytestmark = pytest.mark.django_db


# --- A fake client: the Gateway protocol's backfill side, in memory ----------------------


@dataclass
class FakeClient:
    """What a WAHA or Evolution client offers the receiving loop, with knobs."""

    kind: str = "waha"
    traits: Traits = Traits(has_webhooks=True, can_read_back=True, can_backfill=True)
    address: str = "http://127.0.0.1:1 (session default)"
    status_timeout: float = 5.0
    send_timeout: float = 30.0
    # Each chat's messages as the gateway keeps them.
    chats: dict[str, list[InboundMessage]] = field(default_factory=dict)
    # (chat, since) of every recent_messages call, in order.
    asked: list[tuple[str, datetime]] = field(default_factory=list)
    # chat -> the exception its listing raises ("*" for every chat).
    failing: dict[str, BaseException] = field(default_factory=dict)
    said: GatewayStatus = GatewayStatus(State.READY, "WhatsApp is connected", code="WORKING")
    status_calls: int = 0

    def keep(self, message: InboundMessage) -> InboundMessage:
        self.chats.setdefault(message.chat, []).append(message)
        return message

    def recent_messages(self, chat: str, since: datetime) -> list[InboundMessage]:
        self.asked.append((chat, since))
        failure = self.failing.get(chat) or self.failing.get("*")
        if failure is not None:
            raise failure
        return [m for m in self.chats.get(chat, []) if m.received_at >= since]

    def asked_chats(self) -> list[str]:
        return [chat for chat, _ in self.asked]

    def status(self) -> GatewayStatus:
        self.status_calls += 1
        return self.said

    def account(self) -> Account:
        return Account(number="923009876543", name="Shop")

    def pull_messages(self):
        raise AssertionError("a gateway that pushes is never pulled")

    def mark_processed(self, message_id: str):
        raise AssertionError("a gateway that pushes is never marked")

    def close(self) -> None:
        pass


_ids = iter(range(1, 10**6))


def customer_message(
    chat: str, body: str = "Hello", *, at: datetime | None = None, message_id: str = ""
) -> InboundMessage:
    """A customer's message as an adapter gives it (the stored object on the watcher's keys)."""
    at = at or clock.now()
    message_id = message_id or f"3EB0{next(_ids):08X}"
    return InboundMessage(
        id=message_id,
        chat=chat,
        sender_name="Ayesha",
        text=body,
        received_at=at,
        stored={
            "id": message_id,
            "from": chat,
            "fromName": "Ayesha",
            "body": body,
            "timestamp": int(at.timestamp()),
            "isGroup": chat.endswith("@g.us"),
        },
    )


def delivered(client: FakeClient, chat: str, body: str = "Hello", **kw) -> InboundMessage:
    """A message the gateway has and whose webhook arrived: stored as the webhook stores it."""
    message = client.keep(customer_message(chat, body, **kw))
    assert inbound.store_message(message) == "stored"
    return message


def lost(client: FakeClient, chat: str, body: str = "Are you open?", **kw) -> InboundMessage:
    """A message the gateway has and whose webhook never came."""
    return client.keep(customer_message(chat, body, **kw))


class Said(list):
    def __call__(self, line: str) -> None:
        self.append(line)


class Clock:
    """clock.now() under the test's hand."""

    def __init__(self, monkeypatch):
        self.at = clock.now()
        monkeypatch.setattr(clock, "now", lambda: self.at)

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@pytest.fixture
def now(monkeypatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def backfiller(client: FakeClient, *, caught_up: bool = True) -> Backfiller:
    """A backfiller; `caught_up`: its catch-up after the session came back is done."""
    worker = Backfiller(client, say=Said())
    if not caught_up:
        worker.session_back()
    return worker


CHAT = "923001234567@c.us"


def chat(n: int) -> str:
    return f"9230012{n:05d}@c.us"


# --- What is stored ------------------------------------------------------------------------


def test_a_message_whose_webhook_was_lost_is_stored_once(client, now):
    delivered(client, CHAT, "Hi", at=now.at - timedelta(minutes=3))
    missing = lost(client, CHAT, "Are you open?", at=now.at - timedelta(minutes=1))
    worker = backfiller(client)

    summary = worker.run_once()

    assert (summary.chats, summary.stored, summary.already_stored) == (1, 1, 1)
    stored = Message.objects.get(message_id=missing.id)
    assert stored.status == Status.INCOMING
    assert stored.data == missing.stored
    add = AuditEvent.objects.get(action="add", message_id=missing.id)
    assert (add.actor, add.source) == ("backfill", Source.GATEWAY)

    now.advance(CHAT_EVERY)
    again = worker.run_once()
    assert (again.chats, again.stored, again.already_stored) == (1, 0, 2)
    assert Message.objects.filter(message_id=missing.id).count() == 1


def test_the_dedupe_is_on_the_id_the_webhook_stored(client, now):
    """The gateway lists the very message the webhook stored: nothing new."""
    message = delivered(client, CHAT, at=now.at - timedelta(minutes=1))
    summary = backfiller(client).run_once()
    assert (summary.stored, summary.already_stored) == (0, 1)
    assert Message.objects.filter(message_id=message.id).count() == 1


def test_our_own_messages_and_status_updates_are_not_stored(client, now):
    delivered(client, CHAT, at=now.at - timedelta(minutes=5))
    mine = customer_message(CHAT, "Our reply", at=now.at - timedelta(minutes=4))
    client.keep(dataclasses.replace(mine, from_me=True))
    # Listed with the chat by a gateway that mixes them in.
    status = customer_message("status@broadcast", "My holiday", at=now.at)
    client.chats[CHAT].append(status)

    summary = backfiller(client).run_once()

    assert (summary.stored, summary.refused) == (0, {})
    assert not Message.objects.filter(message_id__in=[mine.id, status.id]).exists()


def test_status_updates_stored_by_a_script_are_not_a_chat_to_ask(client, now):
    lifecycle.add_message(
        dict(customer_message("status@broadcast", "My holiday", at=now.at).stored),
        Status.INCOMING,
        actor="script",
        source=Source.API,
    )
    backfiller(client, caught_up=False).run_once()
    assert client.asked == []


def test_a_message_the_state_file_refuses_does_not_stop_the_others_and_is_tried_once(
    client, now, caplog
):
    delivered(client, CHAT, at=now.at - timedelta(minutes=5))
    bad = lost(client, CHAT, "a NUL \x00 inside", at=now.at - timedelta(minutes=3))
    good = lost(client, CHAT, "fine", at=now.at - timedelta(minutes=2))
    worker = backfiller(client)

    with caplog.at_level(logging.WARNING):
        summary = worker.run_once()

    assert summary.stored == 1 and list(summary.refused) == [bad.id]
    assert "NUL" in summary.refused[bad.id]
    assert Message.objects.filter(message_id=good.id).exists()
    now.advance(CHAT_EVERY)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = worker.run_once()
    assert again.refused == {} and again.stored == 0
    assert not any(bad.id in r.getMessage() for r in caplog.records)


# --- Which chats, since when ---------------------------------------------------------------


def test_since_is_the_chats_newest_stored_message_minus_the_overlap(client, now):
    delivered(client, CHAT, at=now.at - timedelta(minutes=50))
    newest = delivered(client, CHAT, at=now.at - timedelta(minutes=30))
    delivered(client, chat(2), at=now.at - timedelta(minutes=40))

    backfiller(client).run_once()

    since = dict(client.asked)
    assert since[CHAT] == newest.received_at.replace(microsecond=0) - OVERLAP
    assert since[chat(2)] == (now.at - timedelta(minutes=40)).replace(microsecond=0) - OVERLAP


def test_a_message_lost_just_before_the_newest_stored_one_is_found_within_the_overlap(client, now):
    missing = lost(client, CHAT, "first", at=now.at - timedelta(minutes=6))
    delivered(client, CHAT, "second", at=now.at - timedelta(minutes=5))
    assert backfiller(client).run_once().stored == 1
    assert Message.objects.filter(message_id=missing.id).exists()


def test_since_is_never_older_than_the_dedupe_window(client, now, monkeypatch):
    # Only reachable with a longer RECENT than the dedupe window: a receipt that old is
    # forgotten, so a listing before it could store what was settled otherwise.
    monkeypatch.setattr(backfill, "RECENT", timedelta(days=30))
    delivered(client, CHAT, at=now.at - timedelta(days=10))
    backfiller(client, caught_up=False).run_once()
    assert client.asked == [(CHAT, now.at - DEDUPE_WINDOW)]


def test_every_round_asks_the_chats_active_recently_and_no_other(client, now):
    delivered(client, chat(1), at=now.at - timedelta(minutes=10))
    delivered(client, chat(2), at=now.at - ACTIVE + timedelta(minutes=1))
    delivered(client, chat(3), at=now.at - ACTIVE - timedelta(minutes=1))
    delivered(client, chat(4), at=now.at - RECENT - timedelta(minutes=1))

    backfiller(client).run_once()

    assert client.asked_chats() == [chat(1), chat(2)]


def test_after_the_session_comes_back_every_chat_of_the_last_day_is_asked_once(client, now):
    delivered(client, chat(1), at=now.at - timedelta(minutes=10))
    delivered(client, chat(3), at=now.at - timedelta(hours=20))
    delivered(client, chat(4), at=now.at - RECENT - timedelta(minutes=1))
    missed = lost(client, chat(3), "while you were away", at=now.at - timedelta(hours=19))
    worker = backfiller(client, caught_up=False)

    summary = worker.run_once()
    assert client.asked_chats() == [chat(1), chat(3)]
    assert summary.stored == 1 and summary.catching_up == 0
    assert Message.objects.filter(message_id=missed.id).exists()

    # Caught up: the quiet chat is not asked again; the active one after CHAT_EVERY.
    now.advance(CHAT_EVERY)
    worker.run_once()
    assert client.asked_chats() == [chat(1), chat(3), chat(1)]


def test_the_session_coming_back_again_starts_the_clocks_afresh(client, now):
    delivered(client, CHAT, at=now.at - timedelta(minutes=10))
    worker = backfiller(client)
    worker.run_once()
    worker.run_once()
    assert client.asked_chats() == [CHAT]

    worker.session_back()
    worker.run_once()
    assert client.asked_chats() == [CHAT, CHAT]


# --- How often -----------------------------------------------------------------------------


def test_a_chat_is_asked_at_most_every_chat_every(client, now):
    delivered(client, CHAT, at=now.at - timedelta(minutes=1))
    worker = backfiller(client)
    worker.run_once()
    now.advance(CHAT_EVERY - timedelta(seconds=1))
    assert worker.run_once().chats == 0
    now.advance(timedelta(seconds=1))
    assert worker.run_once().chats == 1
    assert client.asked_chats() == [CHAT, CHAT]


def test_at_most_so_many_chats_a_round_most_recent_first_the_rest_next_round(client, now):
    many = MAX_CHATS_PER_ROUND + 3
    for n in range(many):
        delivered(client, chat(n), at=now.at - timedelta(minutes=n + 1))
    worker = backfiller(client)

    first = worker.run_once()
    assert first.chats == MAX_CHATS_PER_ROUND
    assert client.asked_chats() == [chat(n) for n in range(MAX_CHATS_PER_ROUND)]

    second = worker.run_once()
    assert second.chats == 3
    assert sorted(client.asked_chats()) == sorted(chat(n) for n in range(many))


def test_a_chat_that_falls_out_of_the_last_day_is_no_longer_caught_up(client, now):
    delivered(client, CHAT, at=now.at - RECENT + timedelta(minutes=3))
    client.failing[CHAT] = GatewayUnavailable("HTTP 500")
    worker = backfiller(client, caught_up=False)
    assert worker.run_once().catching_up == 1

    now.advance(CHAT_EVERY)
    assert worker.run_once().catching_up == 0
    assert len(client.asked) == 1


def test_catching_up_drains_over_rounds_and_then_ends(client, now):
    quiet = MAX_CHATS_PER_ROUND + 2
    for n in range(quiet):
        delivered(client, chat(n), at=now.at - timedelta(hours=5, minutes=n))
    worker = backfiller(client, caught_up=False)

    assert worker.run_once().catching_up == 2
    assert worker.run_once().catching_up == 0
    assert len(set(client.asked_chats())) == quiet == len(client.asked)
    now.advance(CHAT_EVERY)
    assert worker.run_once().chats == 0  # quiet chats are not asked once caught up


# --- Failures ------------------------------------------------------------------------------


def test_one_chat_failing_does_not_stop_the_others_and_is_said_once(client, now):
    for n in range(3):
        delivered(client, chat(n), at=now.at - timedelta(minutes=n + 1))
    missing = lost(client, chat(2), at=now.at)
    client.failing[chat(0)] = GatewayUnavailable("the gateway did not answer (ReadTimeout)")
    worker = backfiller(client)

    summary = worker.run_once()

    assert client.asked_chats() == [chat(0), chat(1), chat(2)]
    assert summary.failed_chats == 1 and "ReadTimeout" in summary.error
    assert Message.objects.filter(message_id=missing.id).exists()
    now.advance(CHAT_EVERY)
    worker.run_once()
    assert sum("Could not backfill" in line for line in worker.say) == 1

    del client.failing[chat(0)]
    now.advance(CHAT_EVERY)
    worker.run_once()
    assert "The gateway lists chats' messages again." in worker.say


def test_a_failed_chat_is_asked_again_after_chat_every_not_every_round(client, now):
    delivered(client, CHAT, at=now.at - timedelta(minutes=1))
    client.failing[CHAT] = GatewayUnavailable("HTTP 500")
    worker = backfiller(client)
    worker.run_once()
    worker.run_once()
    assert len(client.asked) == 1
    now.advance(CHAT_EVERY)
    worker.run_once()
    assert len(client.asked) == 2


def test_a_failed_chat_stays_to_catch_up(client, now):
    delivered(client, CHAT, at=now.at - timedelta(hours=5))
    missing = lost(client, CHAT, at=now.at - timedelta(hours=4))
    client.failing[CHAT] = GatewayUnavailable("HTTP 500")
    worker = backfiller(client, caught_up=False)
    assert worker.run_once().catching_up == 1

    del client.failing[CHAT]
    now.advance(CHAT_EVERY)
    summary = worker.run_once()
    assert (summary.stored, summary.catching_up) == (1, 0)
    assert Message.objects.filter(message_id=missing.id).exists()


def test_a_round_stops_asking_after_so_many_failures(client, now):
    for n in range(MAX_CHATS_PER_ROUND):
        delivered(client, chat(n), at=now.at - timedelta(minutes=n + 1))
    client.failing["*"] = GatewayUnavailable("the gateway did not answer (ConnectError)")
    worker = backfiller(client)

    summary = worker.run_once()

    assert len(client.asked) == MAX_FAILURES_PER_ROUND == summary.failed_chats
    # The rest were not asked, so they are due next round.
    worker.run_once()
    assert len(client.asked) == 2 * MAX_FAILURES_PER_ROUND


def test_a_gateway_that_cannot_list_turns_backfill_off_said_once(client, now):
    delivered(client, chat(1), at=now.at - timedelta(minutes=1))
    delivered(client, chat(2), at=now.at - timedelta(minutes=2))
    client.failing["*"] = NotImplementedError("waha")
    worker = backfiller(client)

    summary = worker.run_once()
    worker.session_back()
    later = worker.run_once()

    assert len(client.asked) == 1
    assert "cannot list a chat's messages" in summary.off
    assert str(later).startswith("backfill off: ")
    assert sum("No backfill" in line for line in worker.say) == 1
