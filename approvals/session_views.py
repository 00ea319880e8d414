"""The session page: is WhatsApp connected, why (not), and re-linking by QR.

One view serves the page; an htmx request gets only the fragment it asked
for (the gateway's live status, or the QR panel that polls until the session
is ready). Actions need the `statecore.manage_session` permission (not bare
`is_staff`), are offered only where the kind of gateway has them, and change
the session through statecore, never here.
"""

from __future__ import annotations

import logging

import segno
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from statecore import (
    clock,
    rootstate,
    session,
    session_actions,
    session_check,
    session_events,
    whatsapp,
)
from statecore.models import GatewayState, Heartbeat, Source
from statecore.sending import HEARTBEAT_NAME, sender_stopped
from statecore.session_actions import SessionActionRefused
from statecore.whatsapp import SessionAction
from statecore.whatsapp.config import WWEBJS

from .access import MANAGE, actor, may, require_perm, signed_in
from .forms import LIMITS
from .session_forms import MarkInvalidForm, PairForm

log = logging.getLogger(__name__)

TEMPLATE = "approvals/session.html"


@signed_in
@require_GET
def session_page(request: HttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "gateway-status":
        return render(request, f"{TEMPLATE}#gateway-status", {"live": _live_status()})
    context = _context(request)
    if request.htmx and request.htmx.target == "qr-panel":
        if context["report"].valid:
            # Linked: reload the whole page so every part shows the valid session.
            return HttpResponseClientRefresh()
        return render(request, f"{TEMPLATE}#qr-panel", context)
    if request.GET.get("live"):
        context["live"] = _live_status()  # without JavaScript: checked on this request
    return render(request, TEMPLATE, context)


@signed_in
@require_POST
def check_now(request: HttpRequest) -> HttpResponse:
    require_perm(request, MANAGE)
    with whatsapp.gateway(status_timeout=session_check.PAGE_STATUS_TIMEOUT) as gateway:
        # A person's check: it also lifts a person's earlier "Mark invalid".
        result = session_check.check(
            gateway, actor=actor(request), source=Source.WEB, by_person=True
        )
    if not result.reachable:
        messages.error(request, f"The gateway did not answer: {result.error}")
    elif result.report.valid:
        messages.success(request, "Checked: the session is valid.")
    else:
        messages.warning(request, f"Checked: {result.report.verdict}.")
    return redirect("approvals:session")


@signed_in
@require_POST
def mark_invalid(request: HttpRequest) -> HttpResponse:
    require_perm(request, MANAGE)
    form = MarkInvalidForm(request.POST)
    if not form.is_valid():
        return render(request, TEMPLATE, _context(request, form=form), status=422)
    reason = form.cleaned_data["reason"]
    session.mark_invalid(reason, actor=actor(request), source=Source.WEB, by_person=True)
    messages.warning(request, f"The session is marked invalid: {reason}")
    return redirect("approvals:session")


@signed_in
@require_POST
def pair(request: HttpRequest) -> HttpResponse:
    require_perm(request, MANAGE)
    form = PairForm(request.POST)
    try:
        # Before the form: a kind without it has no form on the page to show an error in.
        session_actions.require_offered(SessionAction.PAIR)
        if not form.is_valid():
            return render(request, TEMPLATE, _context(request, pair_form=form), status=422)
        code = session_actions.pair(
            form.cleaned_data["number"], actor=actor(request), source=Source.WEB
        )
    except SessionActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Pairing code {code}: on that phone open WhatsApp → Linked devices → Link a device → "
            "Link with phone number instead, and enter it.",
        )
    return redirect("approvals:session")


@signed_in
@require_POST
def restart(request: HttpRequest) -> HttpResponse:
    require_perm(request, MANAGE)
    try:
        session_actions.restart(actor=actor(request), source=Source.WEB)
    except SessionActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "The gateway is restarting the session; this page shows what it says next."
        )
    return redirect("approvals:session")


@signed_in
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    require_perm(request, MANAGE)
    try:
        if request.POST.get("confirm") != "yes":
            # The first press only asks: a logout cannot be undone from here.
            session_actions.require_offered(SessionAction.LOGOUT)
            return render(request, TEMPLATE, _context(request, confirm_logout=True))
        session_actions.logout(actor=actor(request), source=Source.WEB)
    except SessionActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.warning(
            request, "WhatsApp is logged out: link the phone again (QR or pairing code) to send."
        )
    return redirect("approvals:session")


def _context(
    request: HttpRequest,
    form: MarkInvalidForm | None = None,
    *,
    pair_form: PairForm | None = None,
    confirm_logout: bool = False,
) -> dict:
    root = rootstate.get_root()
    stored = rootstate.session_data(root)
    report = session.check(stored)
    # Read, never created here: a GET records nothing, not even an empty row.
    gateway_state = GatewayState.objects.filter(pk=1).first() or GatewayState()
    qr = session_events.latest_qr() if gateway_state.qr and not report.valid else None
    # The state's api_endpoint is the scripts' service's address and nobody else's.
    uses_api_endpoint = whatsapp.kind() == WWEBJS
    return {
        "report": report,
        # The banner's verdict is this one: not worked out a second time for base.html.
        "session_banner": report,
        "limits": LIMITS,
        "stored": stored,
        "invalidated_at": clock.parse_timestamp(stored.get("invalidated_at")),
        "account": rootstate.part(root, "account_info", {}) or {},
        "gateway_kind": whatsapp.kind(),
        # whatsapp.address() for the scripts' service, from the root already read.
        "gateway_address": rootstate.api_endpoint(root)
        if uses_api_endpoint
        else whatsapp.address(),
        "gateway_state": gateway_state,
        "qr": qr,
        # The code the gateway gave for "Link with phone number", while it is still wanted.
        "pairing_code": "" if report.valid else gateway_state.pairing_code,
        "qr_svg": _qr_svg(qr.text) if qr else "",
        # Poll while WhatsApp waits for a login: the loop records a fresh QR every ~20 s.
        "polling": not report.valid
        and (
            stored.get("requires_qr") is True
            or gateway_state.state in ("needs_qr", "needs_pairing")
        ),
        "heartbeat": _heartbeat(),
        "events": session_events.recent(20),
        "form": form or MarkInvalidForm(),
        "pair_form": pair_form or PairForm(),
        "can_manage": may(request.user, MANAGE),
        # Plain strings, so the template can ask `"pair" in actions`.
        "actions": {str(action) for action in session_actions.offered()},
        "confirm_logout": confirm_logout,
        "uses_api_endpoint": uses_api_endpoint,
        "live": None,
    }


def _qr_svg(text: str) -> str:
    """The QR drawn as SVG, or "" when it cannot be drawn (the page then shows it as text)."""
    try:
        qr = segno.make(text, error="l")
    except (segno.DataOverflowError, ValueError) as exc:
        log.warning("the gateway's QR (%d characters) cannot be drawn: %s", len(text), exc)
        return ""
    # segno draws the code as path data: the QR text itself never enters the markup.
    svg = qr.svg_inline(
        scale=5, border=4, svgclass="qr-code", lineclass=None, light="#fff", omitsize=True
    )
    return mark_safe(svg)  # generated here from path data only: no outside text in it


def _live_status() -> dict:
    """The gateway's status now, within the page timeout; nothing is recorded (a GET)."""
    with whatsapp.gateway(status_timeout=session_check.PAGE_STATUS_TIMEOUT) as gateway:
        url = gateway.address
        try:
            status = gateway.status()
        except whatsapp.GatewayUnavailable as exc:
            return {"url": url, "answered": False, "ready": False, "error": str(exc)}
    return {"url": url, "answered": True, "ready": status.ready, "error": "", "status": status}


def _heartbeat() -> dict | None:
    beat = Heartbeat.objects.filter(name=HEARTBEAT_NAME).first()
    if beat is None:
        return None
    return {
        "beat_at": beat.beat_at,
        "stale": sender_stopped(beat, clock.now()),
        "waiting": beat.detail.get("waiting"),
        "state": beat.detail.get("state") or "",
        "reason": beat.detail.get("reason") or "",
        "last_sent": clock.parse_timestamp(beat.detail.get("last_sent")),
        "worker": beat.detail.get("worker") or "",
    }
