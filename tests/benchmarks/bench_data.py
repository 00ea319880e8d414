"""Data the page and HTTP benchmarks need: a queue of N pending replies and reviewers.

Each reply answers its own customer (no "customer wrote again"), so a reviewer
approves it without the confirmation step.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.benchmarks.generate import generate_state

REVIEWER_PASSWORD = "bench-reviewer-password-not-secret"
_START = datetime(2026, 9, 1, 8, 0, 0)
_BODIES = (
    "Hello! Is the shop open today?",
    "آپ کا آرڈر کب پہنچے گا؟",
    "Order #4521 — 2× شال (shawl), 1× دوپٹہ 🧣",
    "<script>alert('x')</script> is this safe?",
    "line one\nline two\n\nline four",
)


def pending_state(n: int) -> dict:
    """A state whose queue holds `n` drafted replies, each to a different customer."""
    state = generate_state(0)
    incoming, pending = [], []
    for i in range(n):
        moment = _START + timedelta(seconds=7 * i)
        number = f"92300{i:07d}"
        message = {
            "id": f"false_{number}@c.us_3EB0{i:010X}",
            "from": f"{number}@c.us",
            "fromName": f"Customer {i}",
            "body": _BODIES[i % len(_BODIES)],
            "timestamp": moment.isoformat(),
            "isGroup": False,
        }
        incoming.append(message)
        pending.append(
            {
                "id": f"reply_{message['id']}",
                "recipient": number,
                "body": f"Hi Customer {i}, thanks for your message! We'll get back to you shortly.",
                "original_message_id": message["id"],
                "timestamp": (moment + timedelta(seconds=3)).isoformat(),
            }
        )
    state["messages"]["incoming"] = incoming
    state["messages"]["pending_approval"] = pending
    return state


def load_queue(n: int) -> None:
    from statecore import statefile

    statefile.import_state(pending_state(n), actor="bench", source="command")


def make_reviewers(count: int) -> list[str]:
    """`count` signed-up reviewers (the Reviewers group), with REVIEWER_PASSWORD."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name="Reviewers")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="statecore",
            codename__in=["review_message", "resolve_failed", "reopen_message"],
        )
    )
    names = []
    for i in range(count):
        user, created = get_user_model().objects.get_or_create(username=f"reviewer{i}")
        if created:
            user.set_password(REVIEWER_PASSWORD)
            user.save()
        user.groups.add(group)
        names.append(user.username)
    return names
