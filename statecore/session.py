"""Session validity, exactly as STATE_FORMAT.md says, with the reason for each rule.

A session counts as valid (no QR scan needed) only when `authenticated` and
`session_valid` are both true, `last_validation` is younger than
`validation_interval_minutes`, and, for the scripts' whatsapp-web.js service, the
`session_path` directory exists where settings.WHATSAPP_SESSION_BASE says to look
(WAHA, Evolution and the Cloud API keep their login themselves: for them that rule is
"not applicable"). No network call happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction

from . import clock, rootstate, whatsapp
from .models import GatewayState
from .whatsapp.model import State, Status

DEFAULT_INTERVAL_MINUTES = 30


@dataclass(frozen=True)
class Rule:
    name: str
    passed: bool
    reason: str
    # False for a rule that does not apply to this gateway: it passes, and a page says
    # "not applicable" rather than ticking it.
    applicable: bool = True


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
    """The four rules, each with pass/fail and why.

    The session-folder rule is whatsapp-web.js's (its login lives in `.wwebjs_auth`):
    for a gateway that keeps its login itself it passes as not applicable."""
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
    rules.append(_folder_rule(session))
    return SessionReport(rules=rules, last_validation=last, stale_at=stale_at)


def _folder_rule(session: dict) -> Rule:
    if not whatsapp.traits().needs_session_folder:
        # WAHA, Evolution and Cloud hold the login on their side: no folder of ours
        # can say anything about it, so it must neither fail nor claim a folder exists.
        return Rule(
            "session folder",
            True,
            f"not applicable: the {whatsapp.kind()} gateway keeps its login itself",
            applicable=False,
        )
    folder = session_dir(session)
    if folder.is_dir():
        return Rule("session folder", True, f"{folder} exists")
    return Rule("session folder", False, f"the session folder {folder} does not exist")


def _valid_flag_rule(session: dict) -> Rule:
    if session.get("session_valid") is True:
        return Rule("session valid", True, "the stored login works")
    reason = session.get("invalidation_reason")
    why = f"marked invalid: {reason}" if reason else "the stored login is marked as not working"
    return Rule("session valid", False, why)


# --- The session verbs: every change of the stored session is written here ---------
#
# One rule for repeats, whoever reports (the gateway's events, the loops,
# `check_session`, the page, a script): a change of verdict writes one audit
# row; the same verdict again writes none (it is counted on GatewayState, and a
# validation still moves `last_validation` on). A person's "mark invalid" holds
# until a person checks again or a new login: an automatic "ready" does not lift it.


def current() -> dict:
    return rootstate.session_data()


def gateway_state() -> GatewayState:
    """The one GatewayState row (what the gateway last said; never exported)."""
    row, _ = GatewayState.objects.get_or_create(pk=1)
    return row


def verdict(data: dict) -> tuple:
    """What a person would call the session's state; a repeat is the same verdict."""
    valid = data.get("session_valid") is True
    return (
        data.get("authenticated") is True,
        valid,
        data.get("requires_qr") is True,
        None if valid else data.get("invalidation_reason"),
    )


def record_login(
    authenticated: bool, account_info: dict | None = None, *, actor: str, source: str
) -> dict:
    """The scripts' `update_session_status`: the flags follow `authenticated`, validated now.

    True is a new login: it lifts a person's hold."""
    stamp = clock.local_iso()

    def change(data: dict) -> dict:
        data.update(
            authenticated=authenticated,
            session_valid=authenticated,
            requires_qr=not authenticated,
            last_validation=stamp,
        )
        if authenticated:
            data["last_authenticated"] = stamp
        return data

    with transaction.atomic():
        if authenticated:
            _lift_hold()
        data = _write(
            change,
            action="session_status",
            note="authenticated" if authenticated else "not authenticated",
            actor=actor,
            source=source,
        )
        if account_info is not None:
            _write_account(account_info, replace=True, stamp=stamp, actor=actor, source=source)
    return data


def validated(
    account: dict | None = None, *, actor: str, source: str, by_person: bool = False
) -> dict:
    """The gateway says WhatsApp is logged in and connected: validated now.

    `last_authenticated` is not touched (a check, not a new login). An automatic
    check leaves a person's hold in place; a person's check (`by_person`) lifts it."""
    stamp = clock.local_iso()
    with transaction.atomic():
        if by_person:
            _lift_hold()
        elif _held():
            return current()

        def change(data: dict) -> dict:
            data.update(
                authenticated=True, session_valid=True, requires_qr=False, last_validation=stamp
            )
            return data

        data = _write(change, action="session_validated", note="ready", actor=actor, source=source)
        if account is not None:
            _write_account(account, replace=False, stamp=stamp, actor=actor, source=source)
    return data


def not_valid(
    reason: str,
    *,
    actor: str,
    source: str,
    needs_qr: bool = False,
    logged_out: bool = False,
    by_person: bool = False,
) -> dict:
    """`session_valid` false with the reason (and a QR scan needed, logged out, when so).

    `by_person`: a person's mark, which holds against automatic checks."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason: expected a non-empty string saying why the session is not valid")
    stamp = clock.local_iso()

    def change(data: dict) -> dict:
        wanted = dict(data, session_valid=False, invalidation_reason=reason)
        if needs_qr:
            wanted["requires_qr"] = True
        if logged_out:
            wanted["authenticated"] = False
        if verdict(wanted) == verdict(data):
            return data  # the same news again: `invalidated_at` stays when it began
        wanted["invalidated_at"] = stamp
        return wanted

    with transaction.atomic():
        if by_person:
            GatewayState.objects.filter(pk=gateway_state().pk).update(
                held_reason=reason, held_by=actor[:150]
            )
        return _write(change, action="session_invalid", note=reason, actor=actor, source=source)


def mark_invalid(
    reason: str = "Unknown", *, actor: str, source: str, by_person: bool = False
) -> dict:
    """The scripts' `mark_session_invalid` and the page's "Mark invalid": a QR scan needed."""
    return not_valid(reason, needs_qr=True, actor=actor, source=source, by_person=by_person)


def record_status(
    status: Status,
    *,
    actor: str,
    source: str,
    account: dict | None = None,
    by_person: bool = False,
    new_login: bool = False,
) -> dict:
    """Record what the gateway says (the common model's status) on the session.

    A ready after the gateway showed a QR is a new login (someone scanned it)."""
    now = clock.now()
    with transaction.atomic():
        row = GatewayState.objects.select_for_update().get(pk=gateway_state().pk)
        new_login = new_login or (status.ready and row.state in _LOGIN_STATES)
        _remember(row, status, now)
        if status.ready and new_login:
            return record_login(True, account, actor=actor, source=source)
        if status.ready:
            return validated(account, actor=actor, source=source, by_person=by_person)
        return not_valid(
            status.reason,
            needs_qr=status.needs_login,
            logged_out=status.logged_out,
            actor=actor,
            source=source,
        )


_LOGIN_STATES = (State.NEEDS_QR, State.NEEDS_PAIRING)


def _remember(row: GatewayState, status: Status, now) -> None:
    same = (row.state, row.reason, row.code) == (status.state.value, status.reason, status.code)
    row.repeats = row.repeats + 1 if same else 0
    row.state, row.reason, row.code = status.state.value, status.reason[:2000], status.code[:100]
    row.seen_at = now
    if status.qr and status.qr != row.qr:
        row.qr, row.qr_seen_at = status.qr, now
    elif not status.qr and status.state != State.NEEDS_QR:
        row.qr, row.qr_seen_at = "", None
    if status.pairing_code or status.state not in _LOGIN_STATES:
        # A code asked for by a person stays shown while the gateway still waits for a
        # login (WAHA's status says SCAN_QR_CODE and carries no code of its own).
        row.pairing_code = status.pairing_code[:50]
    row.save()


def _held() -> bool:
    return bool(gateway_state().held_reason)


def _lift_hold() -> None:
    GatewayState.objects.filter(pk=gateway_state().pk).exclude(held_reason="").update(
        held_reason="", held_by=""
    )


def _write(change, *, action: str, note: str, actor: str, source: str) -> dict:
    return rootstate.update_part(
        "session",
        lambda old: change(_as_dict(old)),
        action=action,
        note=note,
        actor=actor,
        source=source,
        audit=lambda before, after: verdict(_as_dict(before)) != verdict(_as_dict(after)),
    )


def _write_account(account: dict, *, replace: bool, stamp: str, actor: str, source: str) -> None:
    def change(old: object) -> dict:
        return {**({} if replace else _as_dict(old)), **account, "last_updated": stamp}

    def without_time(value: object) -> dict:
        return {k: v for k, v in _as_dict(value).items() if k != "last_updated"}

    # The same account again is a repeat: its time moves on, the audit log does not.
    rootstate.update_part(
        "account_info",
        change,
        action="account_info",
        actor=actor,
        source=source,
        audit=lambda before, after: without_time(before) != without_time(after),
    )


def _as_dict(value: object) -> dict:
    return dict(value) if isinstance(value, dict) else {}
