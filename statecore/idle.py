"""The idle timeout: a signed-in session with no person's action for
SESSION_IDLE_TIMEOUT_MINUTES is signed out, on top of the 14-day cookie.

The pages' background polls are not a person's action: a queue left open refreshes
itself every 5 s, and that must not keep a walked-away reviewer signed in. A poll after
the timeout gets what any signed-out request gets from its view (`signed_in`): the
sign-in page, or HX-Redirect to it for htmx.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest

from statecore import clock

log = logging.getLogger(__name__)

LAST_ACTIVITY = "idle_last_activity"  # epoch seconds of the session's last person's request
# A busy reviewer's requests do not each rewrite the session: the stamp moves a minute at a time.
RESOLUTION_SECONDS = 60

# The background requests, by view name: the HX-Target they carry (None: any request).
POLLS: dict[str, str | None] = {
    "approvals:queue-poll": None,  # queue.html, every 5 s
    "approvals:session": "qr-panel",  # session.html's QR panel, every 3 s
}


def is_poll(request: HttpRequest) -> bool:
    match = request.resolver_match
    if match is None or match.view_name not in POLLS:
        return False
    target = POLLS[match.view_name]
    return target is None or (
        request.headers.get("HX-Request") == "true" and request.headers.get("HX-Target") == target
    )


def mark_active(request: HttpRequest) -> None:
    """Stamp the session as used by a person now (also called at sign-in)."""
    session = getattr(request, "session", None)
    if session is not None:
        session[LAST_ACTIVITY] = _now()


def _now() -> int:
    return int(clock.now().timestamp())


def _duration(minutes: int) -> str:
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class IdleTimeoutMiddleware:
    """After AuthenticationMiddleware and MessageMiddleware. It works in process_view,
    where the URL is resolved, so a poll is known by its view's name."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        if not request.user.is_authenticated:
            return None
        now, last = _now(), request.session.get(LAST_ACTIVITY)
        timeout = settings.SESSION_IDLE_TIMEOUT_MINUTES
        if isinstance(last, int) and now - last > timeout * 60:
            log.info(
                "signed out %r after %s without activity",
                request.user.get_username(),
                _duration(timeout),
            )
            logout(request)
            messages.info(
                request,
                f"You were signed out after {_duration(timeout)} without activity.",
                fail_silently=True,
            )
            return None  # the view now sees a signed-out request and sends it to sign in
        # A session from before this stamp existed starts counting now, even on a poll:
        # otherwise a page left polling would never time out.
        if not isinstance(last, int) or (not is_poll(request) and now - last >= RESOLUTION_SECONDS):
            request.session[LAST_ACTIVITY] = now
        return None
