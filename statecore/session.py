"""Session validity, exactly as STATE_FORMAT.md says, with the reason for each rule.

A session counts as valid (no QR scan needed) only when `authenticated` and
`session_valid` are both true, `last_validation` is younger than
`validation_interval_minutes`, and the `session_path` directory exists where
settings.WHATSAPP_SESSION_BASE says to look. No network call happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings

from . import clock

DEFAULT_INTERVAL_MINUTES = 30


@dataclass(frozen=True)
class Rule:
    name: str
    passed: bool
    reason: str


@dataclass(frozen=True)
class SessionReport:
    rules: list[Rule] = field(default_factory=list)
    last_validation: datetime | None = None
    stale_at: datetime | None = None

    @property
    def valid(self) -> bool:
        return all(rule.passed for rule in self.rules)

    @property
    def verdict(self) -> str:
        if self.valid:
            return "Session valid"
        failed = "; ".join(rule.reason for rule in self.rules if not rule.passed)
        return f"Session not valid: {failed}"


def session_dir(session: dict) -> Path:
    path = Path(str(session.get("session_path") or ".wwebjs_auth"))
    return path if path.is_absolute() else Path(settings.WHATSAPP_SESSION_BASE) / path


def interval_minutes(session: dict) -> int:
    value = session.get("validation_interval_minutes")
    return value if type(value) is int and value > 0 else DEFAULT_INTERVAL_MINUTES


def check(session: dict, *, now: datetime | None = None) -> SessionReport:
    """The four rules, each with pass/fail and why."""
    now = now or clock.now()
    rules = [
        Rule(
            "authenticated",
            session.get("authenticated") is True,
            "the account is logged in"
            if session.get("authenticated") is True
            else "the account has not logged in (authenticated is not true)",
        ),
        _valid_flag_rule(session),
    ]
    last = clock.parse_timestamp(session.get("last_validation"))
    minutes = interval_minutes(session)
    stale_at = last + timedelta(minutes=minutes) if last else None
    if last is None and session.get("last_validation") is not None:
        rules.append(
            Rule(
                "fresh validation",
                False,
                f"the last validation time {session['last_validation']!r} cannot be read",
            )
        )
    elif last is None:
        rules.append(Rule("fresh validation", False, "the session was never validated"))
    elif stale_at <= now:
        rules.append(
            Rule(
                "fresh validation",
                False,
                f"the last validation is older than {minutes} minutes ({clock.local_iso(last)})",
            )
        )
    else:
        rules.append(
            Rule(
                "fresh validation",
                True,
                f"validated at {clock.local_iso(last)}, fresh for {minutes} minutes",
            )
        )
    folder = session_dir(session)
    rules.append(
        Rule("session folder", True, f"{folder} exists")
        if folder.is_dir()
        else Rule("session folder", False, f"the session folder {folder} does not exist")
    )
    return SessionReport(rules=rules, last_validation=last, stale_at=stale_at)


def _valid_flag_rule(session: dict) -> Rule:
    if session.get("session_valid") is True:
        return Rule("session valid", True, "the stored login works")
    reason = session.get("invalidation_reason")
    why = f"marked invalid: {reason}" if reason else "the stored login is marked as not working"
    return Rule("session valid", False, why)


# --- Changes to the stored session (audited, one row lock each) -------------------


def current() -> dict:
    from . import rootstate

    return rootstate.session_data()


def record_login(
    authenticated: bool, account_info: dict | None = None, *, actor: str, source: str
) -> dict:
    """The old `update_session_status`: the flags follow `authenticated`, validated now."""
    from django.db import transaction

    from . import rootstate

    stamp = clock.local_iso()

    def change(session):
        session = session if isinstance(session, dict) else {}
        session["authenticated"] = authenticated
        session["session_valid"] = authenticated
        session["requires_qr"] = not authenticated
        session["last_validation"] = stamp
        if authenticated:
            session["last_authenticated"] = stamp
        return session

    with transaction.atomic():
        session = rootstate.update_part(
            "session",
            change,
            actor=actor,
            source=source,
            action="session_status",
            note="authenticated" if authenticated else "not authenticated",
        )
        if account_info is not None:
            rootstate.update_part(
                "account_info",
                lambda _old: {**account_info, "last_updated": stamp},
                actor=actor,
                source=source,
                action="account_info",
            )
    return session


def mark_invalid(reason: str = "Unknown", *, actor: str, source: str) -> dict:
    """`session_valid` false, a QR scan needed, with the reason and the time."""
    from . import rootstate

    stamp = clock.local_iso()

    def change(session):
        session = session if isinstance(session, dict) else {}
        session["session_valid"] = False
        session["requires_qr"] = True
        session["invalidation_reason"] = reason
        session["invalidated_at"] = stamp
        return session

    return rootstate.update_part(
        "session", change, actor=actor, source=source, action="session_invalid", note=reason
    )
