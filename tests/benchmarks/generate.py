"""Synthetic ``whatsapp_state.json`` files of any size, for benchmarks.

``generate_state(n, seed)`` builds the state a busy shop's scripts would have
written after ``n`` messages: about half customer messages in ``incoming``,
the other half drafted replies spread over the five other lists. Everything
comes from ``random.Random(seed)`` and a fixed start date, so the same
arguments always give the same bytes.

    python -m tests.benchmarks.generate 100000 /tmp/state.json [--seed 0]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

STATUSES = ("incoming", "pending_approval", "approved", "rejected", "sent", "failed")

# Share of all n messages per reply list; the rest (about half) is incoming.
REPLY_SHARES = {
    "pending_approval": 0.05,
    "approved": 0.01,
    "rejected": 0.08,
    "sent": 0.30,
    "failed": 0.06,
}

MESSAGE_LOG_LIMIT = 1000
_START = datetime(2026, 9, 1, 8, 0, 0)
_EPOCH = datetime(1970, 1, 1)

# "" too: some contacts have no name.
_NAMES = (*"Ayesha Bilal Farah Hina Usman Zainab Ivan Dana Jana Gustavo José Zoë".split(), "")
_NAMES += ("محمد", "فاطمة", "عمران", "李雷", "Ольга")
_BODIES = (
    "Hello! Is the shop open today?",
    "Can you send me the invoice for last month?",
    "Thanks, received 👍",
    "Please call me back when you can",
    "¿Tienen envío a Madrid?",
    "آپ کا آرڈر کب پہنچے گا؟",
    "مرحبا، هل المتجر مفتوح اليوم؟",
    "Order #4521 — 2× شال (shawl), 1× دوپٹہ 🧣",
    "<b>hi</b>",
    "<script>alert('x')</script> is this safe?",
    'He said "50% off" & <i>free</i> delivery?',
    "Path C:\\orders\\new and a tab\there",
    "line one\nline two\n\nline four",
    "👨\u200d👩\u200d👧 family pack available? 🎉🎉",
    "\u200fمرحبا\u200f hello mixed direction",
    "ok",
    "",
    "?",
    "Price?",
    "e\u0301 combining accent, and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
)
_REPLIES = (
    "Hi {name}, thanks for your message! We'll get back to you shortly.",
    "Hi {name}, yes we are open today from 10am to 8pm.",
    "Hi {name}, your invoice is on its way 📄",
    "السلام علیکم {name}، آپ کا آرڈر کل تک پہنچ جائے گا۔",
    "Hola {name}, sí, enviamos a Madrid en 3–5 días.",
    "Hi {name}, <b>20% off</b> this week only!",
)
_SEND_ERRORS = (
    "Not authenticated",
    "Request timed out",
    "HTTP 500: Internal Server Error",
    "Number not on WhatsApp",
    "Connection refused",
)


def _phone(rng: random.Random) -> str:
    return f"92300{rng.randrange(10**7):07d}"


def _timestamp(rng: random.Random, moment: datetime) -> str | int | float:
    """Mostly ISO text as the scripts write it; a few % epoch numbers."""
    roll = rng.random()
    if roll < 0.02:
        return int((moment - _EPOCH).total_seconds())
    if roll < 0.03:
        return round((moment - _EPOCH).total_seconds() + rng.random(), 3)
    if roll < 0.15:
        return moment.replace(microsecond=rng.randrange(1, 10**6)).isoformat()
    return moment.isoformat()


def _body(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.003:  # a pasted catalogue or a forwarded essay: multi-KB
        size = rng.randrange(2_000, 9_000)
        parts: list[str] = []
        while sum(map(len, parts)) < size:
            parts.append(rng.choice(_BODIES) or "-")
        return " ".join(parts)
    if roll < 0.10:
        return " ".join(rng.choice(_BODIES) for _ in range(rng.randrange(2, 6)))
    return rng.choice(_BODIES)


def _incoming(rng: random.Random, index: int, moment: datetime) -> dict[str, Any]:
    phone = _phone(rng)
    is_group = rng.random() < 0.06
    chat = f"1203630{rng.randrange(10**11):011d}@g.us" if is_group else f"{phone}@c.us"
    message: dict[str, Any] = {
        "id": f"false_{chat}_3EB0{index:06X}{rng.randrange(16**6):06X}",
        "from": chat,
        "fromName": rng.choice(_NAMES),
    }
    if is_group:
        message["author"] = f"{phone}@c.us"
    message["body"] = _body(rng)
    message["timestamp"] = _timestamp(rng, moment)
    message["isGroup"] = is_group
    if rng.random() < 0.01:  # a key no schema knows about; must survive untouched
        message["meta"] = {"hasMedia": rng.random() < 0.5, "type": "chat", "ack": rng.randrange(4)}
    return message


def _reply(
    rng: random.Random, original: dict[str, Any], status: str, moment: datetime
) -> tuple[dict[str, Any], datetime]:
    """A drafted reply to ``original``, and the moment it entered its list."""
    recipient = original["from"].split("@", 1)[0]
    name = original["fromName"] or "there"
    reply: dict[str, Any] = {
        "id": f"reply_{original['id']}",
        "recipient": recipient,
        "body": rng.choice(_REPLIES).format(name=name),
        "original_message_id": original["id"],
        "timestamp": _timestamp(rng, moment),
    }
    if status == "pending_approval":
        return reply, moment
    moved = moment + timedelta(
        seconds=rng.randrange(20, 3 * 3600), microseconds=rng.randrange(1, 10**6)
    )
    reply["status"] = status
    reply["status_updated_at"] = moved.isoformat()
    if status == "failed":
        reply["error"] = rng.choice(_SEND_ERRORS)
    return reply, moved


def _reply_statuses(rng: random.Random, n: int) -> list[str]:
    """n // 2 statuses in the shares of REPLY_SHARES (largest remainder), shuffled."""
    total = n // 2
    weight = sum(REPLY_SHARES.values())
    exact = {status: total * share / weight for status, share in REPLY_SHARES.items()}
    counts = {status: int(value) for status, value in exact.items()}
    by_remainder = sorted(exact, key=lambda s: exact[s] - counts[s], reverse=True)
    for status in by_remainder[: total - sum(counts.values())]:
        counts[status] += 1
    statuses = [status for status, count in counts.items() for _ in range(count)]
    rng.shuffle(statuses)
    return statuses


def _log_entry(rng: random.Random, reply: dict[str, Any]) -> dict[str, Any]:
    status = {"sent": "success", "failed": "failed", "rejected": "rejected"}[reply["status"]]
    sent = status == "success"
    return {
        "timestamp": reply["status_updated_at"],
        "recipient": reply["recipient"],
        "message": reply["body"],
        "status": status,
        "message_id": f"true_{reply['recipient']}@c.us_3EB0{rng.randrange(16**8):08X}"
        if sent
        else None,
        "error": reply.get("error"),
    }


def _statistics(
    rng: random.Random,
    sizes: dict[str, int],
    last_received: Any,
    last_sent: Any,
) -> dict[str, Any]:
    # Counters are totals ever counted; old files also counted entries the
    # 100-entry cut dropped, so each is at least its list and often more.
    def extra() -> int:
        return rng.randrange(0, 50)

    moved_past_approval = sizes["approved"] + sizes["sent"] + sizes["failed"]
    return {
        "total_incoming": sizes["incoming"] + extra(),
        "total_sent": sizes["sent"] + extra(),
        "total_failed": sizes["failed"] + extra(),
        "total_approved": moved_past_approval + extra(),
        "total_rejected": sizes["rejected"] + extra(),
        "last_message_received": last_received,
        "last_message_sent": last_sent,
    }


Emit = Callable[[str, dict[str, Any]], None]


@dataclass
class _Lists:
    """What the rest of the state needs to know of the six lists once they are out."""

    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    last_sent: Any = None
    logged: deque = field(default_factory=lambda: deque(maxlen=MESSAGE_LOG_LIMIT))
    last_event: datetime = _START

    def count(self, status: str, message: dict[str, Any]) -> None:
        self.sizes[status] += 1
        if status == "sent":
            self.last_sent = message["status_updated_at"]
        if status in ("sent", "failed", "rejected"):
            self.logged.append(message)


def _emit_lists(rng: random.Random, n: int, emit: Emit) -> tuple[_Lists, datetime]:
    """Hand every message to ``emit`` in its list's order, holding only a few replies.

    Each list is in append order, i.e. by the moment a message entered it. A
    reply enters at most a few hours after the message it answers, and every
    later reply after a later message, so a reply whose moment has passed can
    go out: the heap holds a few hours of replies, not the whole file's.
    """
    statuses = _reply_statuses(rng, n)
    n_incoming = n - len(statuses)
    answered = set(rng.sample(range(n_incoming), len(statuses)))
    lists = _Lists()
    # (moment it entered its list, creation order, list name, reply)
    waiting: list[tuple[datetime, int, str, dict[str, Any]]] = []
    created = 0

    def release(until: datetime | None) -> None:
        while waiting and (until is None or waiting[0][0] < until):
            entered, _, status, reply = heapq.heappop(waiting)
            lists.last_event = max(lists.last_event, entered)
            emit(status, reply)
            lists.count(status, reply)

    moment = _START
    status_iter = iter(statuses)
    for index in range(n_incoming):
        moment += timedelta(seconds=rng.randrange(1, 240))
        release(moment)  # every reply still to come enters after this moment
        message = _incoming(rng, index, moment)
        emit("incoming", message)
        lists.count("incoming", message)
        if index in answered:
            status = next(status_iter)
            reply, entered = _reply(
                rng, message, status, moment + timedelta(seconds=rng.randrange(2, 30))
            )
            heapq.heappush(waiting, (entered, created, status, reply))
            created += 1
    release(None)
    if not created:
        lists.last_event = moment
    return lists, moment


def _state_around(rng: random.Random, messages: Any, lists: _Lists, moment: datetime) -> dict:
    """The whole state, ``messages`` being the six lists (or stand-ins for them)."""
    message_log = [_log_entry(rng, reply) for reply in lists.logged]
    # The scripts stamp the counters with now(), not with the message's own timestamp.
    last_received = (
        moment.replace(microsecond=637249).isoformat() if lists.sizes["incoming"] else None
    )
    last_event = lists.last_event
    return {
        "session": {
            "authenticated": True,
            "last_authenticated": (_START - timedelta(days=3))
            .replace(microsecond=118204)
            .isoformat(),
            "session_valid": True,
            "session_path": ".wwebjs_auth",
            "requires_qr": False,
            "last_validation": last_event.replace(microsecond=2311).isoformat(),
            "validation_interval_minutes": 30,
        },
        "account_info": {
            "number": "923001234567",
            "name": "Corner Shop",
            "platform": "android",
            "last_updated": (_START - timedelta(days=3)).replace(microsecond=118309).isoformat(),
        },
        "api_endpoint": "http://localhost:3000/api/whatsapp",
        "human_in_the_loop": True,
        "watcher_config": {
            "poll_interval_seconds": 5,
            "auto_reply_enabled": True,
            "process_group_messages": False,
            "max_messages_per_poll": 10,
        },
        "retry_config": {"max_retries": 3, "retry_delay_seconds": 2, "exponential_backoff": True},
        "messages": messages,
        "message_log": message_log,
        "incoming_messages": [],
        "pending_replies": [],
        "generated_replies": [],
        "statistics": _statistics(rng, lists.sizes, last_received, lists.last_sent),
        "metadata": {
            "version": "1.0.0",
            "created_at": _START.replace(microsecond=464283).isoformat(),
            "last_updated": last_event.replace(microsecond=641070).isoformat(),
        },
    }


def generate_state(n: int, seed: int = 0) -> dict[str, Any]:
    """A canonical state holding exactly ``n`` messages, deterministic per ``seed``."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    messages: dict[str, list[dict[str, Any]]] = {status: [] for status in STATUSES}
    lists, moment = _emit_lists(rng, n, lambda status, m: messages[status].append(m))
    return _state_around(rng, messages, lists, moment)


def dumps_canonical(state: dict[str, Any]) -> str:
    """The scripts' own serialisation: indent 2, raw Unicode, no trailing newline."""
    return json.dumps(state, indent=2, ensure_ascii=False)


# A message sits at depth 3 (state > messages > list): json.dumps(indent=2) puts it 6 spaces in.
_ITEM_INDENT = "\n      "


def _marker(status: str) -> str:
    return f"@@bench-list-{status}@@"


def write_state_file(path: str | Path, n: int, seed: int = 0) -> Path:
    """Write ``generate_state(n, seed)`` canonically (UTF-8) to ``path``, the same bytes.

    Streamed: each list goes to a spool file as it is made, and the state is
    then written around them, so a million messages never sit in memory.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    path = Path(path)
    rng = random.Random(seed)
    with ExitStack() as stack:
        spools = {
            status: stack.enter_context(tempfile.TemporaryFile(dir=path.parent))
            for status in STATUSES
        }

        def emit(status: str, message: dict[str, Any]) -> None:
            text = json.dumps(message, indent=2, ensure_ascii=False).replace("\n", _ITEM_INDENT)
            spool = spools[status]
            spool.write(((",") if spool.tell() else "").encode() + (_ITEM_INDENT + text).encode())

        lists, moment = _emit_lists(rng, n, emit)
        skeleton = dumps_canonical(
            _state_around(rng, {status: _marker(status) for status in STATUSES}, lists, moment)
        )
        with open(path, "wb") as out:
            for status in STATUSES:
                before, skeleton = skeleton.split(json.dumps(_marker(status)), 1)
                out.write(before.encode("utf-8"))
                _copy_list(spools[status], out)
            out.write(skeleton.encode("utf-8"))
    return path


def _copy_list(spool: IO[bytes], out: IO[bytes]) -> None:
    if not spool.tell():
        out.write(b"[]")
        return
    spool.seek(0)
    out.write(b"[")
    shutil.copyfileobj(spool, out)
    out.write(b"\n    ]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic whatsapp_state.json.")
    parser.add_argument("n", type=int, help="number of messages across the six lists")
    parser.add_argument("out", type=Path, help="file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("n must be >= 0")
    path = write_state_file(args.out, args.n, args.seed)
    print(f"{path}: {args.n} messages, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
