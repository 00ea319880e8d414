"""`POST /gateway/events`: the gateway forwards whatsapp-web.js client events here.

The one endpoint without a login and without CSRF: the gateway is not a
browser. It proves itself with the shared `GATEWAY_TOKEN` as a Bearer token;
with no token configured the endpoint does not exist (404).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import session, session_events
from .whatsapp.wwebjs_events import EventRefused, parse_event


@csrf_exempt
def events(request: HttpRequest) -> JsonResponse:
    token = settings.GATEWAY_TOKEN
    if not token:
        raise Http404("the gateway events endpoint is off: GATEWAY_TOKEN is not set")
    if request.method != "POST":
        return _error(405, "use POST with one JSON event", Allow="POST")
    given = request.headers.get("Authorization", "")
    scheme, _, credentials = given.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return _error(401, "missing token: send Authorization: Bearer <GATEWAY_TOKEN>")
    # Constant time, so the token cannot be guessed a character at a time.
    if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        return _error(401, "wrong token")
    try:
        event = parse_event(request.body)
    except EventRefused as exc:
        return _error(400, str(exc))
    row = session_events.apply_event(event)
    return JsonResponse(
        {
            "ok": True,
            "event": row.event,
            "session_valid": session.check(session.current()).valid,
        }
    )


def _error(status: int, message: str, **headers: str) -> JsonResponse:
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="gateway events"'
    return JsonResponse({"ok": False, "error": message}, status=status, headers=headers)
