"""Two project-wide middlewares: request bodies held to a size, signed-in pages never cached.

`RequestSizeLimit` goes first in MIDDLEWARE: it answers 413 before anything reads the
body (the CSRF check reads a form), so a client cannot make the server spool 300 MB to
disk only for a form to refuse it. gunicorn sets no limit; the reverse proxy's
`client_max_body_size` is the first line (README), this is the second.

`NoStore` goes after AuthenticationMiddleware and so after WhiteNoise, which answers
static files before it: those keep their long cache.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.cache import patch_cache_control

from .ids import db_id
from .lifecycle import MAX_REPLY_LENGTH

# Defaults, until settings name them (see the README's security section).
DEFAULT_MAX_BYTES = 64 * 1024
# The upload's own limit is MAX_UPLOAD_BYTES (approvals/statefile_forms.py), checked on
# the file; the request around it adds the multipart framing and the form's other fields.
DEFAULT_UPLOAD_MAX_BYTES = 32 * 1024 * 1024 + 64 * 1024
DEFAULT_GATEWAY_MAX_BYTES = 16 * 1024
DEFAULT_WEBHOOK_MAX_BYTES = 256 * 1024
# Not a setting: a reply at the web edit's limit always fits, 65,536 characters of 4-byte
# UTF-8 each sent as 12 bytes ("%F0%9F%98%80"), with the form's other fields.
EDIT_MAX_BYTES = MAX_REPLY_LENGTH * 12 + DEFAULT_MAX_BYTES

# The views with a cap of their own, by URL name: the setting that holds it (None: fixed),
# its default, and whether a chunked body (no length given ahead) may come.
_OWN_CAPS = {
    "approvals:state-upload": ("STATE_UPLOAD_MAX_REQUEST_BYTES", DEFAULT_UPLOAD_MAX_BYTES, True),
    "gateway-events": ("GATEWAY_EVENT_MAX_REQUEST_BYTES", DEFAULT_GATEWAY_MAX_BYTES, False),
    "gateway-webhook": ("GATEWAY_WEBHOOK_MAX_REQUEST_BYTES", DEFAULT_WEBHOOK_MAX_BYTES, False),
    "approvals:edit": (None, EDIT_MAX_BYTES, False),
}


class RequestSizeLimit:
    """413 for a body whose Content-Length is over the path's cap, and for a chunked
    body anywhere but the upload; nothing of the body is read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = request.META.get("CONTENT_LENGTH") or "0"
        if chunked or length != "0":
            refused = self._refusal(request, length, chunked)
            if refused is not None:
                return refused
        return self.get_response(request)

    def _refusal(self, request: HttpRequest, length: str, chunked: bool) -> HttpResponse | None:
        cap, chunked_allowed = _cap_for(request.path_info)
        if chunked and not chunked_allowed:
            return _error(
                request, 413, f"send the body with a Content-Length (at most {cap:,} bytes)"
            )
        if not (length.isascii() and length.isdigit()):
            return _error(request, 400, "Content-Length is not a number of bytes")
        if not chunked and _over(length, cap):
            return _error(request, 413, f"the body is over {cap:,} bytes, the most accepted here")
        return None


def _over(length: str, cap: int) -> bool:
    digits = length.lstrip("0")
    # More digits than the cap has is more (and int() reads at most 4,300 of them).
    return len(digits) > len(str(cap)) or int(digits or "0") > cap


def _cap_for(path: str) -> tuple[int, bool]:
    try:
        name = resolve(path).view_name
    except Resolver404:
        name = ""
    setting, default, chunked = _OWN_CAPS.get(name, ("MAX_REQUEST_BYTES", DEFAULT_MAX_BYTES, False))
    return (getattr(settings, setting, default) if setting else default), chunked


def _error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    if request.content_type == "application/json":  # the gateway: JSON as its other errors
        return JsonResponse({"ok": False, "error": message}, status=status)
    return HttpResponse(f"{message}\n", status=status, content_type="text/plain; charset=utf-8")


class NoStore:
    """`Cache-Control: no-store, private` on every response to a signed-in user: pages
    show customers' numbers and messages, and `/state/download/` all of them; no browser
    cache or shared proxy keeps a copy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            patch_cache_control(response, no_store=True, private=True)
        return response


class RefuseNul:
    """400 for a NUL character in the query string: never a value of ours, and PostgreSQL
    refuses to compare with one (a filter or search would be a 500 otherwise)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            return _error(request, 400, "a NUL character is not allowed in the address")
        return self.get_response(request)


class AdminSelection:
    """400 for an admin action whose selected ids are not database ids ("²", 20 digits):
    Django's action handler would pass them to the database as they are (a 500)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path.startswith("/admin/"):
            selected = request.POST.getlist("_selected_action")
            if any(db_id(value) is None for value in selected):
                return _error(request, 400, "the selection holds something that is not an id")
        return self.get_response(request)
