"""`/gateway/webhook`: what WAHA, Evolution API or the Cloud API push to us.

No login and no CSRF (a gateway is not a browser): each delivery proves itself
by its signature on the raw body, checked in constant time by the adapter of
the configured kind (WAHA's HMAC-SHA512, Evolution's JWT, Cloud's
HMAC-SHA256). Then the body is read by the one strict JSON parser the events
endpoint uses too, and each item is applied once (`inbound.receive`).

Answers: a missing or wrong signature 401 and nothing stored; a body that is
not strict JSON or not the gateway's shape 400 naming the place; a signed,
well-formed event we do not use 200 and stored as ignored, so the gateway does
not retry it for days. Only the database is touched here: no gateway call, no
assistant call; the receiving loop drafts what was stored. `GET` answers
Meta's verification (`hub.challenge`) for the Cloud API.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import clock, inbound, whatsapp
from .statefile.parse import StateFileError, parse_json
from .whatsapp import WebhookRefused

log = logging.getLogger(__name__)


@csrf_exempt
def webhook(request: HttpRequest) -> HttpResponse:
    try:
        if request.method == "GET":
            return HttpResponse(whatsapp.challenge(request.GET), content_type="text/plain")
        if request.method != "POST":
            return _error(405, "use POST (or GET for the Cloud API's verification)")
        whatsapp.verify_webhook(request.headers, request.body, now=clock.now())
        items = whatsapp.parse_webhook(_strict_json(request.body))
    except WebhookRefused as exc:
        if exc.status == 401:
            log.warning("webhook refused: %s", exc)
        return _error(exc.status, str(exc))
    try:
        applied = inbound.receive(whatsapp.kind(), items)
    except DatabaseError:
        # Nothing was kept: the gateway's retry (all of them retry a 5xx) brings it again.
        log.exception("webhook not stored: the database failed")
        return _error(503, "not stored: the database is unavailable; retry later")
    return JsonResponse({"ok": True, "items": [a.as_dict() for a in applied]})


def _strict_json(body: bytes) -> object:
    if not body.strip():
        raise WebhookRefused(400, "body: empty; expected the gateway's JSON event")
    try:
        return parse_json(body)
    except StateFileError as exc:
        raise WebhookRefused(400, f"body: {'; '.join(str(exc).splitlines())}") from None


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"ok": False, "error": message}, status=status)
    if status == 405:
        response["Allow"] = "GET, POST"
    return response
