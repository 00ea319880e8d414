"""Sign-in, permissions and the post/redirect/get target, shared by every page of the app.

One vocabulary: every page is `signed_in`; an action asks `require_perm(request, X)`;
a template is handed `may(user, X)` answers, asked once per page."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, QueryDict
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect

REVIEW = "statecore.review_message"
RESOLVE = "statecore.resolve_failed"
REOPEN = "statecore.reopen_message"
MANAGE = "statecore.manage_session"
SET_MODE = "statecore.set_chat_mode"
EXPORT = "statecore.export_state"
IMPORT = "statecore.import_state"
# The whole state's bytes, in and out: staff only, even given the permission.
STAFF_ONLY = frozenset({EXPORT, IMPORT})


def signed_in(view):
    """Like login_required; but an htmx request whose session has ended is sent to the
    sign-in page as a whole (HX-Redirect) instead of getting the form swapped into a card."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            page = request.htmx.current_url_abs_path or request.get_full_path()
            login = resolve_url(settings.LOGIN_URL)
            return HttpResponseClientRedirect(f"{login}?{urlencode({'next': page})}")
        return redirect_to_login(request.get_full_path())

    return wrapper


def may(user, perm: str) -> bool:
    """Whether `user` may do what `perm` allows (and is staff, where that is the rule)."""
    if perm in STAFF_ONLY and not user.is_staff:
        return False
    return user.has_perm(perm)


def require_perm(request: HttpRequest, perm: str) -> None:
    """Checked in the view, never by hiding a button: 403 without the permission."""
    if not may(request.user, perm):
        raise PermissionDenied(f"You need the permission {perm!r}.")


def actor(request: HttpRequest) -> str:
    # As the lifecycle stores it (at most 150 characters), so "is it mine" compares equal.
    return request.user.get_username()[:150]


def next_url(request: HttpRequest, default: str = "approvals:queue") -> str:
    """Where to go back to: the page's own `next` field (checked to be ours), else the
    page an htmx request came from, else `default`."""
    candidate = request.POST.get("next") or request.GET.get("next")
    if not candidate and request.htmx:
        candidate = request.htmx.current_url_abs_path
    # A path of ours only: anything else ("²", a URL name) would be taken by
    # redirect() as a view name, or lead off the site.
    if (
        candidate
        and candidate.startswith("/")
        and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return candidate
    return reverse(default)


def with_param(url: str, name: str, value: str | None) -> str:
    """`url` with the query parameter `name` set to `value` (or removed when None)."""
    parts = urlsplit(url)
    query = QueryDict(parts.query, mutable=True)
    query.pop(name, None)
    if value is not None:
        query[name] = value
    return urlunsplit(parts._replace(query=query.urlencode()))
