"""What the Python API refuses (issue 12, "Drafts and API input"): every wrong
type and every over-large value is a ValueError naming the argument or the place,
and nothing is stored; what an import reads keeps its own, wider limits."""

from __future__ import annotations

import contextlib
import json
import re

import pytest
from django.core.exceptions import ValidationError

from statecore import lifecycle, statefile
from statecore.admin_forms import check_api_endpoint
from statecore.models import AuditEvent, Message, Source, Status
from statecore.state_manager import MessageStatus, StateManager
from statecore.statefile.rules import MAX_OBJECT_KEYS, MAX_VALUE_BYTES


@pytest.fixture
def manager(db) -> StateManager:
    return StateManager(actor="script")


@contextlib.contextmanager
def refused(match: str):
    """The call raises a ValueError whose text holds `match`, and nothing changes."""
    exported, events = statefile.export_bytes(), AuditEvent.objects.count()
    with pytest.raises(ValueError, match=re.escape(match)):
        yield
    assert statefile.export_bytes() == exported
    assert AuditEvent.objects.count() == events


# --- Drafts and message objects ---------------------------------------------------------


def test_add_message_refuses_a_body_over_the_web_edits_limit(manager):
    limit = lifecycle.MAX_REPLY_LENGTH
    with refused("message_data.body: 20,000,000 characters; a body may have at most 65,536"):
        manager.add_message({"id": "r1", "body": "x" * 20_000_000}, MessageStatus.PENDING_APPROVAL)
    with refused(f"message_data.body: {limit + 1:,} characters"):
        manager.add_message({"id": "r1", "body": "x" * (limit + 1)}, "pending_approval")
    # At the limit, even written as \u escapes in the stored JSON, it fits the size cap.
    manager.add_message({"id": "r1", "body": "\x01" * limit}, MessageStatus.PENDING_APPROVAL)
    assert Message.objects.get(message_id="r1").body == "\x01" * limit


def test_add_message_refuses_an_object_of_too_many_keys(manager):
    huge = {"id": "m1", **{f"k{i}": i for i in range(200_000)}}
    with refused("message_data: 200,001 keys; an object may have at most 256"):
        manager.add_message(huge, MessageStatus.INCOMING)
    nested = {"id": "m1", "meta": {f"k{i}": i for i in range(MAX_OBJECT_KEYS + 1)}}
    with refused("message_data.meta: 257 keys"):
        manager.add_message(nested, MessageStatus.INCOMING)
    widest = {"id": "m1", **{f"k{i}": i for i in range(MAX_OBJECT_KEYS - 1)}}
    manager.add_message(widest, MessageStatus.INCOMING)
    assert len(manager.get_messages(MessageStatus.INCOMING)[0]) == MAX_OBJECT_KEYS + 1  # timestamp


def test_add_message_refuses_an_object_over_512_kib_of_json(manager):
    big = {"id": "m1", "meta": "é" * (MAX_VALUE_BYTES // 2)}  # 2 bytes each in UTF-8
    with refused("message_data: 524,3"):
        manager.add_message(big, MessageStatus.INCOMING)
    with refused("bytes of JSON; at most 512 KiB"):
        manager.add_message({"id": "m1", "meta": ["y" * 1000] * 600}, MessageStatus.INCOMING)
    manager.add_message({"id": "m1", "meta": "é" * 200_000}, MessageStatus.INCOMING)


def test_an_import_keeps_reading_what_the_api_refuses(db):
    # STATE_FORMAT.md: a body can be very long; an odd api_endpoint is a string.
    state = {
        "api_endpoint": "not a url",
        "messages": {
            "pending_approval": [
                {"id": "long", "body": "x" * 100_000},
                {"id": "wide", **{f"k{i}": i for i in range(300)}},
            ]
        },
    }
    data = json.dumps(state, indent=2, ensure_ascii=False).encode()
    statefile.import_bytes(data, actor="t", source=Source.COMMAND)
    assert statefile.export_bytes() == data


# --- api_endpoint: one rule for the admin and set_config -----------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.com/api",
        "not a url",
        "localhost:3000",
        "http://",
        "http://gw:port/api",
        "http://[::1",
        "http://gw /api",
        "http://gw/" + "a" * 2000,
    ],
)
def test_set_config_refuses_an_api_endpoint_the_admin_refuses(manager, value):
    with refused("api_endpoint: "):
        manager.set_config("api_endpoint", value)
    with refused("api_endpoint: "):
        manager.update_config({"human_in_the_loop": False, "api_endpoint": value})
    with pytest.raises(ValidationError, match="api_endpoint: "):
        check_api_endpoint(value)


@pytest.mark.parametrize(
    "value", ["http://localhost:3000/api/whatsapp", "https://gw.example.com", "http://10.0.0.5:80"]
)
def test_set_config_and_the_admin_accept_the_same_urls(manager, value):
    check_api_endpoint(value)
    manager.set_config("api_endpoint", value)
    assert manager.get_config("api_endpoint") == value


# --- The session -----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["false", "true", "", None, 2, -1, 1.0, [True]])
def test_update_session_status_refuses_anything_but_a_flag(manager, flag):
    with refused("authenticated: expected True or False (or 1 or 0)"):
        manager.update_session_status(flag)
    assert manager.get_session_info()["authenticated"] is False


@pytest.mark.parametrize(
    ("flag", "logged_in"), [(True, True), (1, True), (False, False), (0, False)]
)
def test_update_session_status_takes_true_false_and_one_zero(manager, flag, logged_in):
    manager.update_session_status(not logged_in)
    manager.update_session_status(flag)
    assert manager.get_session_info()["authenticated"] is logged_in
    assert manager.requires_qr_scan() is not logged_in


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ("923001234567", "account_info: expected a dict or None"),
        ({"number": 923001234567}, "account_info.number: expected a string or null"),
        ({f"k{i}": i for i in range(300)}, "account_info: 300 keys"),
    ],
)
def test_update_session_status_refuses_a_wrong_account_info(manager, account, problem):
    with refused(problem):
        manager.update_session_status(True, account)


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        (None, "reason: expected a non-empty string saying why, got None"),
        (42, "reason: expected a non-empty string"),
        ("  ", "reason: expected a non-empty string"),
        ("x" * 2001, "reason: 2,001 characters; a reason may have at most 2,000"),
    ],
)
def test_mark_session_invalid_refuses_a_reason_that_is_not_text(manager, reason, problem):
    manager.update_session_status(True)
    with refused(problem):
        manager.mark_session_invalid(reason)
    assert manager.get_session_info()["session_valid"] is True


# --- Keys, values and the other arguments ------------------------------------------------------


def test_a_key_that_is_not_a_string_is_named(manager):
    with refused("key: expected a top-level key (a string), got 1"):
        manager.get_config(1)
    with refused("key: expected a top-level key (a string), got 1"):
        manager.set_config(1, "x")
    with refused("updates: the key 1 is not a string"):
        manager.update_config({"human_in_the_loop": False, 1: "x"})
    with refused("custom.a[1]: a key must be a string"):
        manager.set_config("custom", {"a": {1: "x"}})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({f"k{i}": i for i in range(200_000)}, "custom: 200,000 keys; an object may have at most"),
        ("x" * (MAX_VALUE_BYTES + 1), "custom: 524,291 bytes of JSON; at most 512 KiB"),
        ({"a": {1, 2}}, "custom.a: set is not a JSON value"),
        (object(), "custom: object is not a JSON value"),
    ],
)
def test_set_config_refuses_a_value_no_file_could_hold(manager, value, problem):
    with refused(problem):
        manager.set_config("custom", value)


def test_update_config_refuses_what_is_not_a_dict(manager):
    with refused("updates: expected a dict of top-level keys, got [('human_in_the_loop', False)]"):
        manager.update_config([("human_in_the_loop", False)])


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda m: m.add_message("not a dict", "incoming"), "message_data: expected a dict"),
        (lambda m: m.add_message({"id": "a"}, "archived"), "status: expected a MessageStatus"),
        (lambda m: m.add_message({"id": "a"}, 3), "status: expected a MessageStatus"),
        (lambda m: m.move_message(1, "incoming", "pending_approval"), "message_id: expected a"),
        (lambda m: m.move_message("a", "inbox", "pending_approval"), "from_status: expected"),
        (lambda m: m.move_message("a", "incoming", None), "to_status: expected a MessageStatus"),
        (lambda m: m.get_messages("incoming", limit="3"), "limit: expected a whole number"),
        (lambda m: m.get_messages("incoming", limit=True), "limit: expected a whole number"),
        (lambda m: m.get_messages("queue"), "status: expected a MessageStatus"),
        (lambda m: m.clear_messages(None), "status: expected a MessageStatus"),
        (lambda m: m.export_state(3), "output_file: expected a path"),
        (lambda m: StateManager(actor=5), "actor: expected a name of 1 to 150 characters"),
        (lambda m: StateManager(actor="x" * 151), "actor: expected a name of 1 to 150"),
    ],
)
def test_every_wrong_argument_is_a_value_error_naming_it(manager, call, problem):
    manager.add_message({"id": "a"}, MessageStatus.INCOMING)
    with refused(problem):
        call(manager)
    assert Message.objects.get().status == Status.INCOMING
