"""Sign-in and accounts: throttled sign-in (django-axes), the lock-out page, the client's
address, and self-service password reset (off unless enabled, and throttled)."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from datetime import datetime
from functools import wraps

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.db.models import Max, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from statecore import clock, idle

log = logging.getLogger(__name__)

RESET_WINDOW_SECONDS = 3600
USERNAME_MAX = 150  # django.contrib.auth's User.username


def client_address(request: HttpRequest) -> str | None:
    """The address a sign-in is counted against. Behind the proxy (BEHIND_HTTPS_PROXY) it
    is the last entry of X-Forwarded-For, the one the proxy added for the peer it saw:
    the entries before it are whatever the client sent. Otherwise it is the peer itself."""
    if settings.BEHIND_HTTPS_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1]
        if address := _address(forwarded):
            return address
    return _address(request.META.get("REMOTE_ADDR", ""))


def _address(text: str) -> str | None:
    try:
        # Without an IPv6 zone ("%eth0"): the database's address column refuses one.
        return str(ipaddress.ip_address(text.strip().split("%", 1)[0]))
    except ValueError:
        return None


def attempt_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username tried, cut to the length a username can have.
    The sign-in form does not enforce it, and axes' column (255) would refuse a longer one
    with a 500 on PostgreSQL; the address's count catches whoever varies the tail."""
    if credentials:
        username = credentials.get("username")
    else:
        username = request.POST.get("username") if request is not None else None
    return None if username is None else str(username)[:USERNAME_MAX]


class SignInHandler(AxesDatabaseHandler):
    """axes' database handler with two limits: LOGIN_FAILURE_LIMIT for one username from
    one address, LOGIN_ADDRESS_FAILURE_LIMIT for one address whatever the usernames
    (axes itself has one limit for every parameter set). Each failure is logged."""

    def _tallies(self, request, credentials) -> list[tuple[int, datetime | None, int]]:
        # In AXES_LOCKOUT_PARAMETERS' order: (username, address), then the address.
        limits = (settings.AXES_FAILURE_LIMIT, settings.LOGIN_ADDRESS_FAILURE_LIMIT)
        tallies = []
        for attempts, limit in zip(
            self.get_user_attempts(request, credentials), limits, strict=True
        ):
            seen = attempts.aggregate(
                failures=Sum("failures_since_start"), last=Max("attempt_time")
            )
            tallies.append((seen["failures"] or 0, seen["last"], limit))
        return tallies

    def get_failures(self, request, credentials: dict | None = None) -> int:
        (pair, _, pair_limit), (address, _, address_limit) = self._tallies(request, credentials)
        if address >= address_limit:
            return max(pair, pair_limit)
        return pair

    def locked_until(self, request, credentials: dict | None = None) -> datetime:
        """When every count that locks this sign-in out has run out of its cool-off."""
        cool_off = get_cool_off(request)
        ends = [
            last + cool_off
            for failures, last, limit in self._tallies(request, credentials)
            if failures >= limit and last is not None
        ]
        return max(ends, default=clock.now() + cool_off)

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        username = attempt_username(request, credentials)
        log.warning(
            "failed sign-in for username %r from %s%s",
            username,
            getattr(request, "axes_ip_address", None) or "an unknown address",
            ": locked out" if getattr(request, "axes_locked_out", False) else "",
        )

    def user_logged_in(self, sender, request, user, **kwargs):
        super().user_logged_in(sender, request, user, **kwargs)
        # Django's user_logged_in reaches us through axes for every sign-in (the form, the
        # admin, a test's force_login): the session's first activity is its sign-in.
        idle.mark_active(request)


def locked_out(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the page that says when to try again (429)."""
    handler = AxesProxyHandler.get_implementation()
    until = handler.locked_until(request, credentials)
    minutes = max(1, -(-int((until - clock.now()).total_seconds()) // 60))
    context = {"until": until, "minutes": minutes}
    return render(request, "registration/locked_out.html", context, status=429)


class LoginView(auth_views.LoginView):
    """Django's sign-in page, told whether to offer the password reset."""

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, password_reset=reset_allowed())


# --- Password reset -------------------------------------------------------------------


def reset_allowed() -> bool:
    """PASSWORD_RESET_ENABLED and a backend that delivers mail (settings refuses to start
    otherwise; checked again here so that no other path prints a reset link)."""
    return (
        settings.PASSWORD_RESET_ENABLED
        and settings.EMAIL_BACKEND not in settings.UNDELIVERED_EMAIL_BACKENDS
    )


def reset_view(view):
    """The reset page `view`, or 404 while self-service reset is off."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not reset_allowed():
            raise Http404("Password reset is off: an administrator sets passwords.")
        return view(request, *args, **kwargs)

    return wrapper


_reset_form = auth_views.PasswordResetView.as_view()


@reset_view
def password_reset(request: HttpRequest) -> HttpResponse:
    """Django's reset form, with at most PASSWORD_RESET_PER_HOUR requests per address and
    per email address. The counts are in Django's cache (each process's own memory with
    the default cache), so a flood is bounded, not counted across workers."""
    if request.method == "POST":
        email = request.POST.get("email", "").strip().lower()
        keys = [
            f"password-reset:address:{client_address(request)}",
            "password-reset:email:" + hashlib.sha256(email.encode()).hexdigest(),
        ]
        if any(cache.get(key, 0) >= settings.PASSWORD_RESET_PER_HOUR for key in keys):
            log.warning(
                "password reset refused (over %d an hour) for %r from %s",
                settings.PASSWORD_RESET_PER_HOUR,
                email[:254],
                client_address(request) or "an unknown address",
            )
            return render(request, "registration/password_reset_limited.html", status=429)
        for key in keys:
            _count(key)
    return _reset_form(request)


def _count(key: str) -> None:
    """One more in the hour that began with the key's first request."""
    cache.add(key, 0, timeout=RESET_WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # the hour ran out between the two calls
        cache.set(key, 1, timeout=RESET_WINDOW_SECONDS)
