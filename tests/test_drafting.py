"""Drafting: the ASSISTANT hook, called by the receiving loop, against the stand-in gateway."""

from __future__ import annotations

import re
import sys
import time
import types
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from statecore import clock, drafting, lifecycle, rootstate, whatsapp
from statecore.drafting import Drafter, load_assistant
from statecore.models import AuditEvent, DraftAttempt, Message, Source, Status
from statecore.receiving import Receiver
from statecore.standin_assistant import REPLY as STANDIN_REPLY
from statecore.standin_assistant import draft_reply as standin_draft_reply
from statecore.state_manager import StateManager
from tests.session_helpers import REPO, use_gateway, valid_session

HERE = "tests.test_drafting"

# --- Assistants the tests name in ASSISTANT ------------------------------------------------

CALLS: list[dict] = []


def text_assistant(message: dict) -> str:
    CALLS.append(message)
    return f"Thanks {message['fromName']}, we will answer soon."


def silent_assistant(message: dict) -> None:
    CALLS.append(message)
    return None


def failing_assistant(message: dict) -> str:
    CALLS.append(message)
    raise RuntimeError("the model is down")


LATE: list[str] = []


def slow_assistant(message: dict) -> str:
    CALLS.append(message)
    time.sleep(3)
    LATE.append(message["id"])
    return "a late answer"


def number_assistant(message: dict) -> int:
    CALLS.append(message)
    return 42


def blank_assistant(message: dict) -> str:
    CALLS.append(message)
    return "  \n "


def script_racing_assistant(message: dict) -> str:
    """A script drafts the same message (the same id) while the assistant thinks."""
    CALLS.append(message)
    StateManager(actor="script").add_message(
        {
            "id": f"reply_{message['id']}",
            "recipient": "923001234567",
            "body": "From the script",
            "original_message_id": message["id"],
        },
        "pending_approval",
    )
    return "From the assistant"


def script_other_id_assistant(message: dict) -> str:
    """A script drafts the same message under its own id while the assistant thinks."""
    CALLS.append(message)
    StateManager(actor="script").add_message(
        {
            "id": f"script_{message['id']}",
            "recipient": "923001234567",
            "body": "From the script",
            "original_message_id": message["id"],
        },
        "pending_approval",
    )
    return "From the assistant"


def nul_assistant(message: dict) -> str:
    CALLS.append(message)
    return "a NUL \x00 the state file cannot hold"


def flaky_assistant(message: dict) -> str:
    CALLS.append(message)
    if len(CALLS) == 1:
        raise TimeoutError("the model took too long")
    return "Second time lucky"


NOT_CALLABLE = "a string"


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()
    LATE.clear()


def _prepare(settings, tmp_path, fake, assistant: str = "text_assistant"):
    settings.ASSISTANT = f"{HERE}.{assistant}"
    settings.ASSISTANT_TIMEOUT_SECONDS = 60
    valid_session(settings, tmp_path)
    use_gateway(fake.url)
    return fake


@pytest.fixture
def fake(db, settings, tmp_path, fake_gateway):
    return _prepare(settings, tmp_path, fake_gateway)


@pytest.fixture
def fake_tx(transactional_db, settings, tmp_path, fake_gateway):
    return _prepare(settings, tmp_path, fake_gateway)


@pytest.fixture
def gateway(fake_gateway):
    with whatsapp.gateway() as adapter:
        yield adapter


def watcher(**changes) -> None:
    rootstate.update_part(
        "watcher_config", lambda old: {**old, **changes}, actor="t", source=Source.API, action="set"
    )


def reply_to(message_id: str) -> Message | None:
    return Message.objects.filter(reply_to=message_id).first()


def attempt(message_id: str) -> DraftAttempt:
    return DraftAttempt.objects.get(message_id=message_id)


# --- A text, None -----------------------------------------------------------------------


def test_a_text_becomes_a_drafted_reply_pending_approval(fake, gateway):
    message = fake.add_customer_message("Do you deliver?", name="Ayesha")
    summary = Receiver(gateway).run_once()

    assert summary.drafting.drafted == 1
    reply = Message.objects.get(message_id=f"reply_{message['id']}")
    assert reply.status == Status.PENDING_APPROVAL
    data = reply.data
    assert list(data) == ["id", "recipient", "body", "original_message_id", "timestamp"]
    assert data["recipient"] == "923001234567"  # `from` without the @ part
    assert data["body"] == "Thanks Ayesha, we will answer soon."
    assert data["original_message_id"] == message["id"]
    assert clock.parse_timestamp(data["timestamp"]) is not None
    add = AuditEvent.objects.get(message_id=reply.message_id, action="add")
    assert (add.actor, add.source) == ("assistant", Source.WORKER)
    # The assistant got the message as stored.
    assert CALLS == [Message.objects.get(message_id=message["id"]).data]

    Receiver(gateway).run_once()
    assert len(CALLS) == 1
    assert Message.objects.filter(reply_to=message["id"]).count() == 1


def test_with_human_in_the_loop_off_the_draft_is_approved_at_once(fake, gateway):
    rootstate.update_part(
        "human_in_the_loop", lambda _old: False, actor="t", source=Source.API, action="set"
    )
    message = fake.add_customer_message("Hello")

    Receiver(gateway).run_once()

    reply = reply_to(message["id"])
    assert reply.status == Status.APPROVED
    approve = AuditEvent.objects.get(message_id=reply.message_id, action="approve")
    assert approve.actor == "auto"


def test_none_is_recorded_once_and_never_asked_again(fake, settings, gateway):
    settings.ASSISTANT = f"{HERE}.silent_assistant"
    message = fake.add_customer_message("ok thanks")
    worker = Receiver(gateway)

    for _ in range(3):
        worker.run_once()

    assert len(CALLS) == 1
    row = attempt(message["id"])
    assert (row.outcome, row.attempts, row.error) == ("no_reply", 1, "")
    assert reply_to(message["id"]) is None


# --- Failures: retried after about 1, 5 and 30 minutes, then failed ----------------------------


@pytest.mark.parametrize("assistant", ["failing_assistant", "number_assistant", "blank_assistant"])
def test_a_failure_is_retried_after_1_5_and_30_minutes_then_failed(
    fake, settings, gateway, monkeypatch, assistant, client, django_user_model
):
    settings.ASSISTANT = f"{HERE}.{assistant}"
    message = fake.add_customer_message("Hello")
    start = clock.now()
    at = {"now": start}
    monkeypatch.setattr(clock, "now", lambda: at["now"])
    worker = Receiver(gateway)

    def round_at(moment: datetime) -> None:
        at["now"] = moment
        worker.run_once()

    round_at(start)
    row = attempt(message["id"])
    assert (row.outcome, row.attempts, len(CALLS)) == ("retrying", 1, 1)
    assert row.next_try_at == start + timedelta(minutes=1)
    assert row.error

    expected_waits = [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30)]
    moment = start
    for number, wait in enumerate(expected_waits, start=2):
        round_at(moment + wait - timedelta(seconds=1))  # not yet
        assert len(CALLS) == number - 1
        moment += wait
        round_at(moment)
        assert len(CALLS) == number
    row = attempt(message["id"])
    assert (row.outcome, row.attempts, row.next_try_at) == ("failed", 4, None)

    round_at(moment + timedelta(hours=2))
    assert len(CALLS) == 4  # never asked again
    assert reply_to(message["id"]) is None

    user = django_user_model.objects.create_user("ayesha", password="x")
    client.force_login(user)
    html = client.get("/").content.decode()
    assert re.search(r'Drafting failed: <strong data-counter="drafting_failed">1</strong>', html)


def test_a_retry_that_succeeds_drafts_and_clears_the_attempt(fake, settings, gateway, monkeypatch):
    settings.ASSISTANT = f"{HERE}.flaky_assistant"
    message = fake.add_customer_message("Hello")
    start = clock.now()
    worker = Receiver(gateway)
    worker.run_once()
    assert attempt(message["id"]).outcome == "retrying"

    monkeypatch.setattr(clock, "now", lambda: start + timedelta(minutes=1, seconds=1))
    worker.run_once()

    assert reply_to(message["id"]).body == "Second time lucky"
    assert not DraftAttempt.objects.exists()


def test_the_error_says_what_went_wrong(fake, settings, gateway):
    settings.ASSISTANT = f"{HERE}.failing_assistant"
    message = fake.add_customer_message("Hello")
    Receiver(gateway).run_once()
    assert attempt(message["id"]).error == "the assistant raised RuntimeError: the model is down"

    settings.ASSISTANT = f"{HERE}.number_assistant"
    other = fake.add_customer_message("Hello again")
    Receiver(gateway).run_once()
    assert attempt(other["id"]).error == "the assistant returned a int, not text"

    settings.ASSISTANT = f"{HERE}.nul_assistant"
    third = fake.add_customer_message("And again")
    Receiver(gateway).run_once()
    row = attempt(third["id"])
    assert row.outcome == "retrying"
    assert row.error.startswith("the draft could not be stored: ") and "NUL" in row.error
    assert reply_to(third["id"]) is None


def test_a_timeout_is_dropped_retried_and_the_late_answer_never_stored(fake, settings, gateway):
    settings.ASSISTANT = f"{HERE}.slow_assistant"
    settings.ASSISTANT_TIMEOUT_SECONDS = 1
    message = fake.add_customer_message("Hello")

    started = time.monotonic()
    summary = Receiver(gateway).run_once()
    took = time.monotonic() - started

    assert 1 <= took < 2.5
    assert summary.drafting.retrying == 1
    row = attempt(message["id"])
    assert row.outcome == "retrying" and row.attempts == 1
    assert row.error == "the assistant gave no answer within 1 s"
    deadline = time.monotonic() + 10
    while not LATE and time.monotonic() < deadline:  # the late answer comes...
        time.sleep(0.1)
    assert LATE == [message["id"]]
    time.sleep(0.2)
    assert reply_to(message["id"]) is None  # ...and is dropped
    assert Message.objects.count() == 1


# --- Who is asked ----------------------------------------------------------------------------


def test_groups_are_skipped_unless_process_group_messages(fake, gateway):
    group = fake.add_customer_message("In the group", sender="120363041234567890@g.us")
    worker = Receiver(gateway)
    worker.run_once()
    assert CALLS == []

    watcher(process_group_messages=True)
    worker.run_once()
    assert [c["id"] for c in CALLS] == [group["id"]]
    reply = reply_to(group["id"])
    assert reply.data["recipient"] == "120363041234567890"


def test_with_auto_reply_off_nobody_is_asked(fake, gateway):
    watcher(auto_reply_enabled=False)
    message = fake.add_customer_message("Hello")

    summary = Receiver(gateway).run_once()

    assert summary.stored == 1 and CALLS == []
    assert "auto_reply_enabled" in summary.drafting.off
    assert not DraftAttempt.objects.exists()

    watcher(auto_reply_enabled=True)
    Receiver(gateway).run_once()
    assert reply_to(message["id"]) is not None


def test_at_most_max_messages_per_poll_calls_a_round_oldest_first(fake, gateway):
    watcher(max_messages_per_poll=2)
    base = int(time.time()) - 300
    # Arrival order differs from their times: oldest first means by timestamp.
    sent = [
        fake.add_customer_message(f"m{n}", timestamp=base + offset)
        for n, offset in enumerate([30, 10, 50, 20, 40])
    ]
    by_time = [m["id"] for m in sorted(sent, key=lambda m: m["timestamp"])]
    worker = Receiver(gateway)

    worker.run_once()
    assert [c["id"] for c in CALLS] == by_time[:2]
    worker.run_once()
    assert [c["id"] for c in CALLS] == by_time[:4]
    worker.run_once()
    worker.run_once()
    assert [c["id"] for c in CALLS] == by_time


def test_a_message_with_no_text_is_not_asked_and_recorded_once(fake, gateway):
    media = fake.add_customer_message("", type="image", has_media=True)
    blank = fake.add_customer_message("   \n")
    worker = Receiver(gateway)

    summary = worker.run_once()
    worker.run_once()

    assert CALLS == []
    assert summary.drafting.no_reply == 2
    for message in (media, blank):
        row = attempt(message["id"])
        assert (row.outcome, row.error, row.attempts) == ("no_reply", "no text to answer", 0)
    assert DraftAttempt.objects.count() == 2


def test_only_messages_of_the_last_24_hours_are_drafted(fake, gateway, monkeypatch):
    old = fake.add_customer_message("Old", timestamp=int(time.time()) - 25 * 3600)
    recent = fake.add_customer_message("Recent", timestamp=int(time.time()) - 23 * 3600)

    Receiver(gateway).run_once()

    assert [c["id"] for c in CALLS] == [recent["id"]]
    assert Message.objects.filter(message_id=old["id"]).exists()
    assert reply_to(old["id"]) is None
    assert drafting.DRAFT_MAX_AGE == timedelta(hours=24)


def test_a_status_update_stored_by_a_script_is_never_asked(fake, gateway):
    lifecycle.add_message(
        {"id": "status_1", "from": "status@broadcast", "body": "My photo", "isGroup": False},
        Status.INCOMING,
        actor="old watcher",
        source=Source.API,
    )
    Receiver(gateway).run_once()
    assert CALLS == []


# --- Two drafters ------------------------------------------------------------------------------


def test_a_script_drafting_the_same_id_meanwhile_counts_as_done(fake_tx, settings, gateway):
    settings.ASSISTANT = f"{HERE}.script_racing_assistant"
    message = fake_tx.add_customer_message("Hello")

    summary = Receiver(gateway).run_once()

    assert summary.drafting.drafted == 1
    reply = Message.objects.get(reply_to=message["id"])
    assert reply.body == "From the script"
    assert not DraftAttempt.objects.exists()
    Receiver(gateway).run_once()
    assert len(CALLS) == 1


def test_a_draft_stored_by_another_drafter_at_the_last_moment_counts_as_done(
    fake, gateway, monkeypatch
):
    """Between the re-check and the add, another drafter stored `reply_<id>`."""
    message = fake.add_customer_message("Hello")
    real_add = lifecycle.add_message

    def other_drafter_first(data, status, **who):
        real_add({**data, "body": "From the other drafter"}, status, actor="other", source="api")
        return real_add(data, status, **who)

    monkeypatch.setattr(lifecycle, "add_message", other_drafter_first)
    summary = Receiver(gateway).run_once()

    assert summary.drafting.drafted == 1 and summary.drafting.retrying == 0
    assert reply_to(message["id"]).body == "From the other drafter"
    assert not DraftAttempt.objects.exists()


def test_a_script_drafting_under_its_own_id_meanwhile_keeps_one_draft(fake_tx, settings, gateway):
    settings.ASSISTANT = f"{HERE}.script_other_id_assistant"
    message = fake_tx.add_customer_message("Hello")

    Receiver(gateway).run_once()

    assert [m.body for m in Message.objects.filter(reply_to=message["id"])] == ["From the script"]


def test_the_second_draft_for_the_same_message_is_refused_by_its_id(fake, gateway):
    message = fake.add_customer_message("Hello")
    Receiver(gateway).run_once()
    with pytest.raises(ValueError, match="already stored"):
        StateManager(actor="script").add_message(
            {
                "id": f"reply_{message['id']}",
                "recipient": "923001234567",
                "body": "again",
                "original_message_id": message["id"],
            },
            "pending_approval",
        )


# --- get_undrafted_messages -------------------------------------------------------------------


def _incoming(mid: str, body: str = "Hello") -> dict:
    data = {"id": mid, "from": "923001234567@c.us", "fromName": "C", "body": body}
    lifecycle.add_message(data, Status.INCOMING, actor="t", source=Source.API)
    return Message.objects.get(message_id=mid).data


def test_get_undrafted_messages(db):
    a = _incoming("a")
    _incoming("b")
    _incoming("c")
    d = _incoming("d")
    _incoming("e")
    lifecycle.add_message(
        {"id": "reply_b", "recipient": "923001234567", "body": "x", "original_message_id": "b"},
        Status.PENDING_APPROVAL,
        actor="t",
        source=Source.API,
    )
    now = clock.now()
    DraftAttempt.objects.create(message_id="c", outcome="no_reply", updated_at=now)
    DraftAttempt.objects.create(
        message_id="d", outcome="retrying", attempts=1, next_try_at=now, updated_at=now
    )
    DraftAttempt.objects.create(message_id="e", outcome="failed", attempts=4, updated_at=now)
    manager = StateManager(actor="script")

    assert manager.get_undrafted_messages() == [a, d]
    assert manager.get_undrafted_messages(limit=1) == [a]
    assert manager.get_undrafted_messages(limit=0) == []
    assert manager.get_undrafted_messages(limit=10) == [a, d]
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="limit"):
            manager.get_undrafted_messages(limit=bad)


# --- ASSISTANT itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("no_such_module.draft_reply", "cannot import"),
        (f"{HERE}.no_such_function", "cannot import"),
        ("draft_reply", "cannot import"),
        (f"{HERE}.NOT_CALLABLE", "not a function"),
    ],
)
def test_an_assistant_that_cannot_be_used_stops_the_loop_at_its_start(fake, settings, path, why):
    settings.ASSISTANT = path
    with pytest.raises(ImproperlyConfigured) as refused:
        Receiver(whatsapp.gateway())
    assert str(refused.value).startswith("ASSISTANT: ")
    assert repr(path) in str(refused.value) and why in str(refused.value)
    with pytest.raises(ImproperlyConfigured):
        load_assistant(path)


def test_without_assistant_nothing_drafts(fake, settings, gateway):
    settings.ASSISTANT = ""
    fake.add_customer_message("Hello")
    summary = Receiver(gateway).run_once()
    assert summary.drafting is None and Drafter.from_settings() is None
    assert not Message.objects.filter(status=Status.PENDING_APPROVAL).exists()


def test_the_standin_assistant_drafts_a_labelled_canned_reply(fake, settings, gateway):
    settings.ASSISTANT = "statecore.standin_assistant.draft_reply"
    message = fake.add_customer_message("Hello")
    Receiver(gateway).run_once()
    assert reply_to(message["id"]).body == STANDIN_REPLY
    assert STANDIN_REPLY.startswith("STAND-IN assistant:")
    assert standin_draft_reply({"body": ""}) is None
    assert standin_draft_reply({"body": " "}) is None
    assert standin_draft_reply({}) is None


# --- The README's wrapper of the scripts' WhatsAppAssistant --------------------------------------


class StandInWhatsAppAssistant:
    """The scripts' assistant as SEED_API.md describes its contract, with a canned text."""

    def __init__(self, process_group_messages: bool = False):
        self.process_group_messages = process_group_messages
        self.history: dict[str, list[str]] = {}
        self.calls: list[dict] = []

    def process_message(self, message_data: dict) -> dict | None:
        self.calls.append(message_data)
        if message_data.get("isGroup") and not self.process_group_messages:
            return None
        body = message_data.get("body") or ""
        if not body.strip():  # empty, or media only
            return None
        sender = message_data["from"]
        self.history.setdefault(sender, []).append(body)
        return {
            "recipient": sender.split("@")[0],
            "message": f"Assistant: you wrote {body!r}",
            "original_message_id": message_data["id"],
            "generated_at": datetime.now().isoformat(),
        }


def readme_wrapper() -> str:
    """The Python block that follows `<!-- assistant-wrapper -->` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split("<!-- assistant-wrapper -->", 1)[1]
    match = re.match(r"\s*```python\n(.*?)```", after, re.S)
    assert match, "README.md: a ```python block must follow <!-- assistant-wrapper -->"
    return match.group(1)


@pytest.fixture
def readme_assistant(monkeypatch):
    """The README's wrapper as a module `readme_assistant`, over a stand-in `whatsapp_assistant`."""
    seed = types.ModuleType("whatsapp_assistant")
    seed.WhatsAppAssistant = StandInWhatsAppAssistant
    monkeypatch.setitem(sys.modules, "whatsapp_assistant", seed)
    module = types.ModuleType("readme_assistant")
    module.__file__ = str(Path(REPO / "README.md"))
    exec(compile(readme_wrapper(), "README.md", "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, "readme_assistant", module)
    return module


def test_the_readme_wrapper_is_five_lines_of_code():
    code = [line for line in readme_wrapper().splitlines() if line.strip()]
    assert len(code) == 5
    assert code[0] == "from whatsapp_assistant import WhatsAppAssistant"


def test_the_readme_wrapper_drafts_through_the_scripts_assistant(
    readme_assistant, fake, settings, gateway
):
    settings.ASSISTANT = "readme_assistant.draft_reply"
    watcher(process_group_messages=True)
    text = fake.add_customer_message("Is the shop open?")
    group = fake.add_customer_message("Group chat", sender="120363041234567890@g.us")

    summary = Receiver(gateway).run_once()

    reply = reply_to(text["id"])
    assert reply.body == "Assistant: you wrote 'Is the shop open?'"
    assert reply.data["recipient"] == "923001234567"
    # The seed's assistant wants no reply for a group: recorded once.
    assert attempt(group["id"]).outcome == "no_reply"
    assert summary.drafting.drafted == 1 and summary.drafting.no_reply == 1
    calls = readme_assistant._assistant.calls
    assert [c["id"] for c in calls] == [text["id"], group["id"]]
    Receiver(gateway).run_once()
    assert len(readme_assistant._assistant.calls) == 2


def test_a_stopping_loop_asks_no_more_after_the_call_in_flight(fake, gateway):
    for n in range(3):
        fake.add_customer_message(f"m{n}")
    worker = Receiver(gateway)
    assert worker.drafter.stop is worker.stop  # SIGTERM stops the drafting too
    asked = []

    def assistant(message: dict) -> str:
        asked.append(message["id"])
        worker.stop.set()  # the signal comes while the assistant thinks
        return "ok"

    worker.drafter.assistant = assistant
    summary = worker.run_once()

    assert summary.stored == 3
    assert len(asked) == 1 and summary.drafting.drafted == 1
