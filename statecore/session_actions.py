"""Running the WhatsApp session from the dashboard: link by phone number, restart, log out.

Each verb asks the configured gateway first (a network call, so outside any
transaction), then records what happened through the session verbs and writes
its one audit row (`session_pair`, `session_restart`, `session_logout`) in one
transaction. A request the gateway did not answer is audited too: a restart or
a logout may have happened all the same.

What a kind of gateway offers is its `traits().session_actions`; anything else
(a kind without the action, no answer, a number that is not one) is a
`SessionActionRefused` whose `code` the caller decides on and whose `str()` reads
as a sentence for the page. Nothing here ever records the gateway's key or secret;
the pairing code goes to GatewayState only, the phone number to the audit row.
"""

from __future__ import annotations

import re
from enum import StrEnum

from django.db import transaction

from . import clock, session, whatsapp
from .models import AuditEvent
from .whatsapp import GatewayUnavailable, SessionAction, State, Status

# A person waits on the page for the answer; longer than a status check, since a gateway
# may first wait for its session (WAHA waits up to 5 s) before it answers.
ACTION_TIMEOUT = 10.0
MIN_DIGITS, MAX_DIGITS = 8, 15  # E.164: at most 15 digits, country code included
MAX_ACTOR_LENGTH = AuditEvent._meta.get_field("actor").max_length

_WHAT = {
    SessionAction.PAIR: "link with a phone number",
    SessionAction.RESTART: "restart the session",
    SessionAction.LOGOUT: "log out",
}


class Refusal(StrEnum):
    NOT_OFFERED = "not_offered"  # this kind of gateway has no such action
    BAD_NUMBER = "bad_number"  # not a phone number to pair with
    NO_ANSWER = "no_answer"  # the gateway gave no usable answer (it may have acted)


class SessionActionRefused(Exception):
    def __init__(self, code: Refusal, message: str) -> None:
        self.code = code
        super().__init__(message)


def offered() -> frozenset[SessionAction]:
    """The actions the configured kind of gateway has (no network call)."""
    return frozenset(whatsapp.traits().session_actions)


def require_offered(action: SessionAction) -> None:
    """SessionActionRefused(NOT_OFFERED) unless the configured gateway has `action`."""
    if action not in offered():
        raise _not_offered(action)


def phone_digits(number: str) -> str:
    """The digits of a phone number in international form: `+92 300 1234567` ->
    `923001234567`. A leading `+` and spaces are dropped; anything else is refused."""
    text = number.strip() if isinstance(number, str) else ""
    if not re.fullmatch(r"\+?[0-9 ]+", text):
        raise SessionActionRefused(
            Refusal.BAD_NUMBER,
            "Enter the phone number in digits, with its country code (a leading + and spaces are fine).",
        )
    digits = text.lstrip("+").replace(" ", "")
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise SessionActionRefused(
            Refusal.BAD_NUMBER,
            f"A phone number has {MIN_DIGITS} to {MAX_DIGITS} digits with its country code; "
            f"this one has {len(digits)}.",
        )
    if digits.startswith("0"):
        raise SessionActionRefused(
            Refusal.BAD_NUMBER,
            "Start with the country code (92 for Pakistan, 55 for Brazil ...), not with 0.",
        )
    return digits


def pair(number: str, *, actor: str, source: str) -> str:
    """Ask the gateway for a pairing code for `number` and record it on the session.

    Returns the code (to be entered on that phone: Linked devices -> Link a device ->
    Link with phone number instead). The session is recorded as waiting for it."""
    require_offered(SessionAction.PAIR)
    digits = phone_digits(number)
    code = _ask(
        SessionAction.PAIR,
        lambda gateway: gateway.request_pairing_code(digits),
        actor=actor,
        source=source,
        detail={"number": digits},
    )
    if not isinstance(code, str) or not code.strip():
        _audit(
            SessionAction.PAIR,
            "the gateway answered without a pairing code",
            actor,
            source,
            {"number": digits, "outcome": "no_answer"},
        )
        raise SessionActionRefused(
            Refusal.NO_ANSWER, "The gateway answered without a pairing code."
        )
    code = code.strip()
    waiting = Status(
        State.NEEDS_PAIRING,
        "waiting for the pairing code to be entered on the phone",
        code="pairing code",
        pairing_code=code,
    )
    with transaction.atomic():
        session.record_status(waiting, actor=actor, source=source)
        _audit(
            SessionAction.PAIR,
            f"pairing code asked for +{digits}",
            actor,
            source,
            {"number": digits, "outcome": "asked"},
        )
    return code


def restart(*, actor: str, source: str) -> None:
    """Ask the gateway to restart the session. What it says next is recorded as it says
    it (the receiving loop, its events); nothing is assumed here."""
    require_offered(SessionAction.RESTART)
    _ask(SessionAction.RESTART, lambda gateway: gateway.restart(), actor=actor, source=source)
    _audit(SessionAction.RESTART, "restart asked", actor, source, {"outcome": "asked"})


def logout(*, actor: str, source: str) -> None:
    """Log WhatsApp out on the gateway: the session is not valid until a new link."""
    require_offered(SessionAction.LOGOUT)
    _ask(SessionAction.LOGOUT, lambda gateway: gateway.logout(), actor=actor, source=source)
    with transaction.atomic():
        session.not_valid(
            f"logged out from the dashboard by {actor}",
            needs_qr=True,
            logged_out=True,
            actor=actor,
            source=source,
        )
        _audit(SessionAction.LOGOUT, "logged out", actor, source, {"outcome": "done"})


def _ask(action: SessionAction, call, *, actor: str, source: str, detail: dict | None = None):
    """`call(gateway)` on the configured gateway; its failures turned into refusals."""
    try:
        with whatsapp.gateway(
            status_timeout=ACTION_TIMEOUT, send_timeout=ACTION_TIMEOUT
        ) as gateway:
            return call(gateway)
    except NotImplementedError:
        # Its traits say it has the action, its client says not: trust the client.
        raise _not_offered(action) from None
    except GatewayUnavailable as exc:
        # Audited all the same: a restart or a logout may have reached the gateway.
        _audit(
            action, f"no answer: {exc}", actor, source, {**(detail or {}), "outcome": "no_answer"}
        )
        raise SessionActionRefused(
            Refusal.NO_ANSWER, f"The gateway did not answer ({_WHAT[action]}): {exc}"
        ) from exc


def _not_offered(action: SessionAction) -> SessionActionRefused:
    return SessionActionRefused(
        Refusal.NOT_OFFERED,
        f"The {whatsapp.kind()} gateway cannot {_WHAT[action]} from the dashboard.",
    )


def _audit(action: SessionAction, note: str, actor: str, source: str, detail: dict) -> None:
    AuditEvent.objects.create(
        message_id="",
        action=f"session_{action.value}",
        actor=actor[:MAX_ACTOR_LENGTH],
        source=source,
        note=note,
        detail={"kind": whatsapp.kind(), **detail},
        created_at=clock.now(),
    )
