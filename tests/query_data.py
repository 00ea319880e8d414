"""Many messages at once, written straight to the tables, for query-count tests.

Rows like the lifecycle's (same columns, same stored objects) without a transaction
per message: 500 replies take a moment instead of half a minute."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta

from statecore import clock
from statecore.models import AuditEvent, Message, Source, Status
from statecore.statefile.columns import message_columns

_serial = itertools.count(1)
CYCLE = [Status.PENDING_APPROVAL, Status.APPROVED, Status.REJECTED, Status.SENT, Status.FAILED]


def bulk_state(replies: int) -> None:
    """`replies` drafted replies cycling through the statuses (a pending one first), each
    with the incoming message it answers, every fourth chat writing again after its
    draft, and the audit events of each reply's moves."""
    now = clock.now()
    rows: list[Message] = []
    events: list[AuditEvent] = []
    for index in range(replies):
        n = next(_serial)
        number = f"92310{n:07d}"
        drafted = now - timedelta(minutes=5 + n % 300)
        incoming = {
            "id": f"false_{number}@c.us_Q{n:08d}",
            "from": f"{number}@c.us",
            "fromName": f"Customer {n}",
            "body": f"Question {n}",
            "timestamp": clock.local_iso(drafted - timedelta(minutes=1)),
            "isGroup": n % 7 == 0,
        }
        status = CYCLE[index % len(CYCLE)]
        reply = {
            "id": f"reply_{incoming['id']}",
            "recipient": number,
            "body": f"Answer {n}",
            "original_message_id": incoming["id"],
            "timestamp": clock.local_iso(drafted),
        }
        if status != Status.PENDING_APPROVAL:
            reply |= {"status": status.value, "status_updated_at": clock.local_iso(now)}
        if status == Status.FAILED:
            reply["error"] = "outcome unknown: check the phone before retrying"
        rows.append(_row(incoming, Status.INCOMING))
        rows.append(_row(reply, status))
        if n % 4 == 0:
            again = incoming | {
                "id": f"{incoming['id']}_again",
                "body": f"Hello again {n}",
                "timestamp": clock.local_iso(drafted + timedelta(minutes=1)),
            }
            rows.append(_row(again, Status.INCOMING))
        events.append(_event(reply["id"], "add", "", Status.PENDING_APPROVAL, now))
        if status != Status.PENDING_APPROVAL:
            decision = "reject" if status == Status.REJECTED else "approve"
            to = Status.REJECTED if decision == "reject" else Status.APPROVED
            events.append(_event(reply["id"], decision, Status.PENDING_APPROVAL, to, now))
        if status in (Status.SENT, Status.FAILED):
            action = "mark_sent" if status == Status.SENT else "mark_failed"
            events.append(_event(reply["id"], action, Status.APPROVED, status, now))
    Message.objects.bulk_create(rows)
    AuditEvent.objects.bulk_create(events)


def _row(data: dict, status: str) -> Message:
    return Message(position=time.time_ns(), **message_columns(data, status))


def _event(message_id: str, action: str, from_status: str, to_status: str, when) -> AuditEvent:
    return AuditEvent(
        message_id=message_id,
        action=action,
        from_status=from_status,
        to_status=to_status,
        actor="bulk",
        source=Source.API,
        created_at=when,
    )
