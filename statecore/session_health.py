"""Asking the gateway whether the WhatsApp session works, and writing down the answer.

`check_session`, the session page's "Check now" and the sender's re-validation
all go through `check_gateway`, so the three can never disagree about what an
answer means. GATEWAY.md: `{"isReady": false}` (or an error answer) means the
session does not work now; it does not by itself mean a QR scan is needed, so
nothing here sets `requires_qr` (only the gateway's own qr/auth_failure/LOGOUT
events do, see session_events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import clock, rootstate, session
from .gateway import GatewayClient, GatewayError, GatewayTimeout, GatewayUnreachable
from .session import SessionReport

# The page asks the gateway while a person waits: shorter than GATEWAY.md's 5 s.
PAGE_STATUS_TIMEOUT = 3.0
NOT_READY = "the gateway reports WhatsApp is not ready (isReady false)"


@dataclass(frozen=True)
class GatewayCheck:
    """What one check learnt, and the stored session's verdict after it."""

    report: SessionReport
    reachable: bool
    ready: bool | None = None
    account: dict[str, Any] | None = None
    error: str = ""

    @property
    def exit_code(self) -> int:
        """check_session's exit code: 0 valid, 1 invalid, 2 gateway unreachable."""
        if not self.reachable:
            return 2
        return 0 if self.report.valid else 1


def gateway_client(*, status_timeout: float = 5.0, send_timeout: float = 30.0) -> GatewayClient:
    """A client for the state's `api_endpoint`, with GATEWAY.md's timeouts by default."""
    return GatewayClient(
        rootstate.api_endpoint(), status_timeout=status_timeout, send_timeout=send_timeout
    )


def check_gateway(
    client: GatewayClient, *, actor: str, source: str, with_info: bool = True
) -> GatewayCheck:
    """Ask /status (and /info when ready) and record the answer in the session.

    Ready: validated now (and the account updated from /info). Not ready, or an
    error answer: `session_valid` false with the reason. No answer at all
    (unreachable, timed out): the stored session is left as it is, since
    nothing was learnt about WhatsApp, only about the gateway.
    """
    try:
        ready = client.status()
    except (GatewayUnreachable, GatewayTimeout) as exc:
        return GatewayCheck(report=_report(), reachable=False, error=str(exc))
    except GatewayError as exc:
        record_not_ready(
            f"the gateway answered /status with an error: {exc}", actor=actor, source=source
        )
        return GatewayCheck(report=_report(), reachable=True, ready=False, error=str(exc))
    if not ready:
        record_not_ready(NOT_READY, actor=actor, source=source)
        return GatewayCheck(report=_report(), reachable=True, ready=False, error=NOT_READY)
    account, error = None, ""
    if with_info:
        try:
            account = client.info()
        except GatewayError as exc:
            error = f"/info failed, the account was not updated: {exc}"
    record_ready(account, actor=actor, source=source)
    return GatewayCheck(report=_report(), reachable=True, ready=True, account=account, error=error)


def record_ready(account: dict[str, Any] | None, *, actor: str, source: str) -> dict:
    """The gateway says WhatsApp is logged in and connected: validated now.

    `last_authenticated` is not touched: this is a check, not a new login.
    The account's unknown keys survive; number, name and platform are replaced.
    """
    from django.db import transaction

    stamp = clock.local_iso()

    def change(old: object) -> dict:
        data = dict(old) if isinstance(old, dict) else {}
        data.update(
            authenticated=True, session_valid=True, requires_qr=False, last_validation=stamp
        )
        return data

    with transaction.atomic():
        data = rootstate.update_part(
            "session", change, actor=actor, source=source, action="session_validated", note="ready"
        )
        if account is not None:
            rootstate.update_part(
                "account_info",
                lambda old: {
                    **(old if isinstance(old, dict) else {}),
                    **account,
                    "last_updated": stamp,
                },
                actor=actor,
                source=source,
                action="account_info",
            )
    return data


def record_not_ready(reason: str, *, actor: str, source: str) -> dict:
    """`session_valid` false with the reason; a repeat of the same reason writes nothing."""
    current = session.current()
    if current.get("session_valid") is False and current.get("invalidation_reason") == reason:
        return current
    stamp = clock.local_iso()

    def change(old: object) -> dict:
        data = dict(old) if isinstance(old, dict) else {}
        data.update(session_valid=False, invalidation_reason=reason, invalidated_at=stamp)
        return data

    return rootstate.update_part(
        "session", change, actor=actor, source=source, action="session_invalid", note=reason
    )


def _report() -> SessionReport:
    return session.check(session.current())
