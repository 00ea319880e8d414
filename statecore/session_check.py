"""Asking the gateway whether the WhatsApp session works, and writing down the answer.

`check_session`, the session page's "Check now", the sender's re-validation
and the receiving loop's watch all go through `check`, so they can never
disagree about what an answer means. What the gateway says is recorded by
the session verbs (`session.record_status`); no answer at all leaves the
stored session as it is: nothing was learnt about WhatsApp, only about the
gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import session
from .session import SessionReport
from .whatsapp import Account, Gateway, GatewayUnavailable, Status

# The page asks the gateway while a person waits: shorter than GATEWAY.md's 5 s.
PAGE_STATUS_TIMEOUT = 3.0


@dataclass(frozen=True)
class GatewayCheck:
    """What one check learnt, and the stored session's verdict after it."""

    report: SessionReport
    reachable: bool
    status: Status | None = None
    account: Account | None = None
    error: str = ""

    @property
    def ready(self) -> bool | None:
        return None if self.status is None else self.status.ready

    @property
    def exit_code(self) -> int:
        """check_session's exit code: 0 valid, 1 invalid, 2 gateway unreachable."""
        if not self.reachable:
            return 2
        return 0 if self.report.valid else 1


def check(
    gateway: Gateway,
    *,
    actor: str,
    source: str,
    with_account: bool = True,
    by_person: bool = False,
    known: SessionReport | None = None,
) -> GatewayCheck:
    """Ask the gateway for its status (and the account when ready) and record it.

    `by_person`: a person asked (the page's "Check now"), which lifts a
    person's earlier "mark invalid"; an automatic check does not. `known`: the
    verdict the caller already holds, given back when the gateway does not answer
    (nothing was recorded, so nothing changed)."""
    try:
        status = gateway.status()
    except GatewayUnavailable as exc:
        return GatewayCheck(report=known or _report(), reachable=False, error=str(exc))
    account, error = None, ""
    if status.ready and with_account:
        try:
            account = gateway.account()
        except GatewayUnavailable as exc:
            error = f"the account was not updated: {exc}"
    recorded = session.record_status(
        status,
        account=account.as_dict() if account else None,
        actor=actor,
        source=source,
        by_person=by_person,
    )
    if not status.ready:
        error = status.reason
    # The verdict of what was just recorded: the session as the verbs left it.
    return GatewayCheck(
        report=session.check(recorded), reachable=True, status=status, account=account, error=error
    )


def _report() -> SessionReport:
    return session.check(session.current())
