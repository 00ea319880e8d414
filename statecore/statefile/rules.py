"""The types of STATE_FORMAT.md, and the walk that checks a parsed state
against them, collecting the place of every fault.

Used on whole files (parse.parse_state) and on single parts before
they are stored (a message added, a setting changed): what an import would
refuse never gets in another way.
"""

from __future__ import annotations

import json
import math
import re
from urllib.parse import urlsplit

from ..models import MAX_ID_LENGTH, Status
from .columns import dumps_compact

MAX_DEPTH = 64
INT64_MAX = 2**63 - 1
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONConstant:
    """What the parser gives for NaN/Infinity, so the walk can name where it was."""

    def __init__(self, text: str) -> None:
        self.text = text


class DuplicateKeys(dict):
    """What the parser gives for an object that had a key twice: the walk
    reports it with its place."""

    duplicates: list[str]


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    name = key if _IDENTIFIER.match(key) else json.dumps(key, ensure_ascii=False)
    if not _IDENTIFIER.match(key):
        return f"{path}[{name}]" if path else f"[{name}]"
    return f"{path}.{name}" if path else name


# Checks by expected type: each returns a problem or None.
def _is_bool(v):
    return None if v is True or v is False else "expected true or false"


def _is_str(v):
    return None if isinstance(v, str) else "expected a string"


def _is_str_or_null(v):
    return None if v is None or isinstance(v, str) else "expected a string or null"


def _is_time(v):
    if v is None or isinstance(v, str):
        return None
    if type(v) in (int, float):
        return None
    return "expected a timestamp (text or epoch seconds) or null"


def _is_count(v):
    if type(v) is not int:
        return "expected a whole number"
    if not 0 <= v <= INT64_MAX:
        return "expected a whole number from 0 to 2^63-1 (a 64-bit counter)"
    return None


def _is_positive_int(v):
    if type(v) is not int:
        return "expected a whole number"
    return None if 0 < v <= INT64_MAX else "expected a positive whole number"


def _is_non_negative_number(v):
    if type(v) not in (int, float):
        return "expected a number"
    return None if v >= 0 else "expected a number of 0 or more"


def _is_list(v):
    return None if isinstance(v, list) else "expected a list"


SESSION_RULES = {
    "authenticated": _is_bool,
    "session_valid": _is_bool,
    "requires_qr": _is_bool,
    "last_authenticated": _is_time,
    "last_validation": _is_time,
    "validation_interval_minutes": _is_positive_int,
    "session_path": _is_str,
    "invalidation_reason": _is_str_or_null,
    "invalidated_at": _is_time,
}
ACCOUNT_RULES = {
    "number": _is_str_or_null,
    "name": _is_str_or_null,
    "platform": _is_str_or_null,
    "last_updated": _is_time,
}
WATCHER_RULES = {
    "poll_interval_seconds": _is_positive_int,
    "auto_reply_enabled": _is_bool,
    "process_group_messages": _is_bool,
    "max_messages_per_poll": _is_positive_int,
}
RETRY_RULES = {
    "max_retries": _is_positive_int,
    "retry_delay_seconds": _is_non_negative_number,
    "exponential_backoff": _is_bool,
}
STATISTICS_RULES = {
    "total_incoming": _is_count,
    "total_sent": _is_count,
    "total_failed": _is_count,
    "total_approved": _is_count,
    "total_rejected": _is_count,
    "last_message_received": _is_time,
    "last_message_sent": _is_time,
}
METADATA_RULES = {"version": _is_str_or_null, "created_at": _is_time, "last_updated": _is_time}
MESSAGE_RULES = {
    "from": _is_str_or_null,
    "fromName": _is_str_or_null,
    "author": _is_str_or_null,
    "body": _is_str_or_null,
    "recipient": _is_str_or_null,
    "original_message_id": _is_str_or_null,
    "timestamp": _is_time,
    "isGroup": _is_bool,
    "status": _is_str,
    "status_updated_at": _is_time,
}
LOG_RULES = {
    "timestamp": _is_time,
    "recipient": _is_str_or_null,
    "message": _is_str_or_null,
    "status": _is_str_or_null,
    "message_id": _is_str_or_null,
    "error": _is_str_or_null,
}
TOP_OBJECTS = {
    "session": SESSION_RULES,
    "account_info": ACCOUNT_RULES,
    "watcher_config": WATCHER_RULES,
    "retry_config": RETRY_RULES,
    "statistics": STATISTICS_RULES,
    "metadata": METADATA_RULES,
}
TOP_VALUES = {
    "api_endpoint": _is_str,
    "human_in_the_loop": _is_bool,
    "incoming_messages": _is_list,
    "pending_replies": _is_list,
    "generated_replies": _is_list,
}


class _Walker:
    """One pass over the parsed state, collecting (place, problem)."""

    def __init__(self, errors: list[tuple[str, str]], *, check_text: bool) -> None:
        self.errors = errors
        self.check_text = check_text
        self.containers = 0  # objects and lists met by value(): the import's limits

    def fail(self, path: str, problem: str) -> None:
        self.errors.append((path or "(top level)", problem))

    def state(self, state: object) -> None:
        if not isinstance(state, dict):
            self.fail("", "expected a JSON object at the top level")
            self.value("", state, 0)
            return
        self._keys("", state)
        for key, value in state.items():
            self.top(key, value)

    def top(self, key: str, value: object) -> None:
        """One top-level key's value."""
        path = join("", key)
        if key in TOP_OBJECTS:
            self.object(path, value, TOP_OBJECTS[key])
        elif key == "messages":
            self.messages(path, value)
        elif key == "message_log":
            self.entries(path, value, LOG_RULES, "log entry")
        else:
            rule = TOP_VALUES.get(key)
            problem = rule(value) if rule else None
            if problem:
                self.fail(path, problem)
            self.value(path, value, 1)

    def object(self, path: str, value: object, rules: dict, depth: int = 1) -> None:
        if not isinstance(value, dict):
            self.fail(path, "expected an object")
            self.value(path, value, depth)
            return
        self._keys(path, value)
        check_text = self.check_text
        for key, item in value.items():
            rule = rules.get(key)
            if rule is not None:
                problem = rule(item)
                if problem and not isinstance(item, JSONConstant):
                    self.fail(join(path, key), problem)
            # Most values are plain scalars with nothing more to check: skip the
            # path building and the call (the walk covers 100,000 messages).
            kind = type(item)
            if kind is str:
                if not check_text:
                    continue
            elif kind is int or kind is bool or item is None:
                continue
            self.value(join(path, key), item, depth + 1)

    def messages(self, path: str, value: object) -> None:
        if not isinstance(value, dict):
            self.fail(path, "expected an object of six lists")
            self.value(path, value, 1)
            return
        self._keys(path, value)
        for name, items in value.items():
            self.status_list(path, name, items)

    def status_list(self, path: str, name: str, items: object) -> None:
        """One list of `messages` (path: the path of `messages`)."""
        list_path = join(path, name)
        if name not in Status.values:
            self.fail(list_path, f"not a status: the lists are {', '.join(Status.values)}")
        if not isinstance(items, list):
            self.fail(list_path, "expected a list of messages")
            self.value(list_path, items, 2)
            return
        for index, obj in enumerate(items):
            self.message(f"{list_path}[{index}]", obj, name)

    def message(self, path: str, obj: object, list_name: str) -> None:
        if not isinstance(obj, dict):
            self.fail(path, "expected a message object")
            self.value(path, obj, 3)
            return
        mid = obj.get("id")
        if not isinstance(mid, str):
            self.fail(
                join(path, "id"),
                "expected a string" if "id" in obj else "missing: every message needs a string id",
            )
        elif not mid:
            self.fail(join(path, "id"), "expected a non-empty string")
        elif len(mid) > MAX_ID_LENGTH:
            self.fail(join(path, "id"), f"longer than {MAX_ID_LENGTH} characters")
        status = obj.get("status")
        if isinstance(status, str) and status != list_name and list_name in Status.values:
            self.fail(
                join(path, "status"), f"is {status!r} but the message is in the {list_name!r} list"
            )
        self.object(path, obj, MESSAGE_RULES, depth=3)

    def entries(self, path: str, value: object, rules: dict, what: str) -> None:
        if not isinstance(value, list):
            self.fail(path, "expected a list")
            self.value(path, value, 1)
            return
        for index, entry in enumerate(value):
            self.entry(f"{path}[{index}]", entry, rules, what)

    def entry(self, path: str, entry: object, rules: dict, what: str) -> None:
        if not isinstance(entry, dict):
            self.fail(path, f"expected a {what} object")
            self.value(path, entry, 2)
        else:
            self.object(path, entry, rules, depth=2)

    def _keys(self, path: str, obj: dict) -> None:
        if isinstance(obj, DuplicateKeys):
            for key in obj.duplicates:
                self.fail(join(path, key), "the same key appears twice in one object")
        if self.check_text:
            for key in obj:
                problem = _unstorable(key)
                if problem:
                    self.fail(join(path, key), f"a key {problem}")

    def value(self, path: str, value: object, depth: int) -> None:
        """Generic checks for any value: constants, NUL, numbers, nesting."""
        if isinstance(value, str):
            problem = _unstorable(value) if self.check_text else None
            if problem:
                self.fail(path, problem)
        elif isinstance(value, float):
            if math.isnan(value):  # only from Python: a file's NaN is a JSONConstant
                self.fail(path, "NaN is not a JSON number")
            elif math.isinf(value):
                self.fail(path, "a number too large to store")
        elif isinstance(value, JSONConstant):
            self.fail(path, f"{value.text} is not a JSON number")
        elif isinstance(value, dict | list):
            self.containers += 1
            if depth > MAX_DEPTH:
                self.fail(path, f"nesting too deep (over {MAX_DEPTH} levels)")
                return
            if isinstance(value, dict):
                self._keys(path, value)
                for key, item in value.items():
                    self.value(join(path, key), item, depth + 1)
            else:
                for index, item in enumerate(value):
                    self.value(f"{path}[{index}]", item, depth + 1)


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which cannot be stored"
    if _SURROGATE.search(text):
        return "holds a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def check_state(state: object, *, check_text: bool) -> list[tuple[str, str]]:
    """Every fault of a parsed state file. `check_text`: search the strings for
    a NUL or a lone surrogate (only an escape in the file can put one there)."""
    errors: list[tuple[str, str]] = []
    _Walker(errors, check_text=check_text).state(state)
    return errors


def check_json(value: object, *, check_text: bool) -> list[tuple[str, str]]:
    """The faults any JSON document is refused for, with no state-file types: NaN,
    a key twice, nesting, and (`check_text`) a NUL or a lone surrogate."""
    errors: list[tuple[str, str]] = []
    _Walker(errors, check_text=check_text).value("", value, 0)
    return errors


def validate_message(obj: object, status: str) -> list[tuple[str, str]]:
    """Problems of one message object as it would be stored in the `status` list."""
    errors: list[tuple[str, str]] = []
    _Walker(errors, check_text=True).message("", obj, status)
    return errors


def validate_setting(key: str, value: object) -> list[tuple[str, str]]:
    """Problems of one top-level setting as the admin or set_config would store it:
    the types an import checks, then the stricter rules of SETTING_ONLY_RULES."""
    errors: list[tuple[str, str]] = []
    walker = _Walker(errors, check_text=True)
    walker.state({key: value})
    rule = SETTING_ONLY_RULES.get(key)
    problem = rule(value) if rule is not None and not errors else None
    if problem:
        errors.append((join("", key), problem))
    return errors


# --- Stricter than a file: what a person or a script sets ------------------------------

MAX_URL_LENGTH = 2000


def gateway_url_problem(value: object) -> str | None:
    """The rule for `api_endpoint` wherever it is set (the admin, set_config): an
    http(s) URL with a host, as the gateway adapter needs it."""
    if not isinstance(value, str):
        return "expected a string"
    if len(value) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH:,} characters"
    try:
        parts = urlsplit(value)
        usable = (
            parts.scheme in ("http", "https")
            and bool(parts.hostname)
            and not any(c.isspace() for c in value)
        )
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        usable = False
    if not usable:
        return "expected an http(s) URL such as http://localhost:3000/api/whatsapp"
    return None


# An imported file keeps whatever api_endpoint it had (it still imports and
# round-trips byte for byte); only setting one is held to the rule.
SETTING_ONLY_RULES = {"api_endpoint": gateway_url_problem}

# What the Python API may add, in one value (a message object, an account_info,
# one setting). An import reads any size: STATE_FORMAT.md lets a body be very long.
MAX_OBJECT_KEYS = 256
# A body at its limit (65,536 characters) always fits: even written entirely as
# \u escapes it is 384 KiB of JSON.
MAX_VALUE_BYTES = 512 * 1024
MAX_PROBLEMS = 20  # named in one ValueError; a million wrong values need not all be listed
_SCALARS = (str, int, float, bool, type(None))


def api_value_problems(
    place: str, value: object, *, max_body: int | None = None
) -> list[tuple[str, str]]:
    """Problems of one value a script adds through the Python API, beyond its types:
    JSON values only, keys that are strings, at most MAX_OBJECT_KEYS keys in any one
    object, at most MAX_VALUE_BYTES of JSON in all, and, with `max_body`, a `body`
    text at most that long. `place` names the argument in each problem."""
    errors: list[tuple[str, str]] = []
    stack = [(place, value, 0)]
    while stack and len(errors) < MAX_PROBLEMS:
        path, item, depth = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if depth > MAX_DEPTH:
            errors.append((path, f"nesting too deep (over {MAX_DEPTH} levels)"))
        elif isinstance(item, dict):
            if len(item) > MAX_OBJECT_KEYS:
                errors.append(
                    (path, f"{len(item):,} keys; an object may have at most {MAX_OBJECT_KEYS}")
                )
                continue
            for key, inner in item.items():
                if not isinstance(key, str):
                    errors.append((f"{path}[{key!r}]", "a key must be a string"))
                else:
                    stack.append((join(path, key), inner, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", inner, depth + 1) for i, inner in enumerate(item))
        else:
            errors.append(
                (path, f"{type(item).__name__} is not a JSON value (object, list, text, number)")
            )
    body = value.get("body") if isinstance(value, dict) else None
    if max_body is not None and isinstance(body, str) and len(body) > max_body:
        errors.append(
            (join(place, "body"), f"{len(body):,} characters; a body may have at most {max_body:,}")
        )
    if not errors:
        try:
            size = len(dumps_compact(value).encode("utf-8", "surrogatepass"))
        except ValueError:  # an integer of more than 4,300 digits
            return [(place, "holds a number too long to write")]
        if size > MAX_VALUE_BYTES:
            errors.append((place, f"{size:,} bytes of JSON; at most {MAX_VALUE_BYTES // 1024} KiB"))
    return sorted(errors)
