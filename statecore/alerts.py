"""Alerts to the admins: one email per incident, not one per poll.

An `Incident` opens when its condition appears and is resolved when it clears;
the mail goes out when it opens. The database's "one open incident per kind"
constraint decides which of several pollers opens it, so two senders running
at once still send one mail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q

from . import clock, session
from .models import Incident, Message, Status
from .session import SessionReport

log = logging.getLogger(__name__)

SESSION_INVALID = "session_invalid"
SEND_DELAY = "send_delay"
# The gateway refused our address, key or instance: sending is paused for everyone.
GATEWAY_CONFIG = "gateway_config"
# Drafts waited longer than ALERT_OVERDUE_MINUTES for a reviewer: nobody is watching the queue.
DRAFTS_OVERDUE = "drafts_overdue"
SUBJECTS = {
    SESSION_INVALID: "WhatsApp session not valid",
    SEND_DELAY: "Replies are not going out",
    GATEWAY_CONFIG: "The gateway refuses the dashboard's settings",
    DRAFTS_OVERDUE: "Drafts are waiting for a reviewer",
}


def check_incidents(
    *, now: datetime | None = None, session_report: SessionReport | None = None
) -> list[Incident]:
    """Open or resolve each kind of incident as things are now; returns those opened.
    `session_report`: the session's verdict when the caller has just judged it."""
    now = now or clock.now()
    opened = []
    session_problem = _session_problem(session_report or session.check(session.current()))
    checks = (
        (SESSION_INVALID, session_problem),
        (SEND_DELAY, _delay_problem(now)),
        (DRAFTS_OVERDUE, _overdue_problem(now)),
    )
    for kind, problem in checks:
        if problem:
            incident = _open(kind, problem, now)
            if incident is not None:
                opened.append(incident)
        else:
            resolve(kind, now=now)
    return opened


def report(kind: str, summary: str, *, now: datetime | None = None) -> Incident | None:
    """Open an incident the caller saw (not one computed from the state), mailed once."""
    return _open(kind, summary, now or clock.now())


def resolve(kind: str, *, now: datetime | None = None) -> int:
    """Close the open incident of `kind`, if any: the condition has cleared."""
    return Incident.objects.filter(kind=kind, resolved_at__isnull=True).update(
        resolved_at=now or clock.now()
    )


def open_incidents() -> list[Incident]:
    return list(Incident.objects.filter(resolved_at__isnull=True).order_by("opened_at"))


def _session_problem(report: SessionReport) -> str:
    return "" if report.valid else report.verdict


def _delay_problem(now: datetime) -> str:
    minutes = settings.SEND_DELAY_ALERT_MINUTES
    late = Message.objects.filter(status=Status.APPROVED).filter(
        Q(status_updated_at__lt=now - timedelta(minutes=minutes))
        | Q(status_updated_at__isnull=True)
    )
    found = late.aggregate(oldest=Min("status_updated_at"))
    count = late.count()
    if not count:
        return ""
    since = (
        f", the oldest approved at {clock.local_iso(found['oldest'])}" if found["oldest"] else ""
    )
    return (
        f"{count} approved repl{'y has' if count == 1 else 'ies have'} waited more than "
        f"{minutes} minutes to be sent{since}. Is the sender running, and the session valid?"
    )


def _overdue_problem(now: datetime) -> str:
    # Overdue as the queue counts it (drafted before the cutoff; an undated draft has no
    # age), one query for how many and since when.
    minutes = settings.ALERT_OVERDUE_MINUTES
    late = Message.objects.pending().filter(timestamp__lt=now - timedelta(minutes=minutes))
    found = late.aggregate(count=Count("pk"), oldest=Min("timestamp"))
    count = found["count"]
    if not count:
        return ""
    return (
        f"{count} draft{' has' if count == 1 else 's have'} waited more than {minutes} minutes "
        f"for a reviewer, the oldest drafted at {clock.local_iso(found['oldest'])}. "
        "Is anyone watching the queue?"
    )


def _open(kind: str, summary: str, now: datetime) -> Incident | None:
    if Incident.objects.filter(kind=kind, resolved_at__isnull=True).exists():
        return None
    try:
        with transaction.atomic():
            incident = Incident.objects.create(kind=kind, opened_at=now, summary=summary)
    except IntegrityError:
        return None  # another poller opened it a moment ago, and mails it
    try:
        mail_admins(
            SUBJECTS[kind],
            f"{summary}\n\nOpened at {clock.local_iso(now)}. You get one mail per incident; "
            "the next one comes only after this one has cleared.",
        )
    except Exception:
        # The incident stays open (no mail storm on the next poll); the log says why.
        log.exception("could not mail the admins about %s", kind)
    return incident
