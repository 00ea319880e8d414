from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from statecore import rootstate, session


def session_banner(request: HttpRequest) -> dict:
    """`session_banner`: the session's verdict (a session.Report) for the red banner of
    base.html, and nothing else. A page that has the verdict already passes its own.

    Lazy: a fragment rendered for htmx never shows the banner and so never queries;
    nobody signed in sees it either."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"session_banner": None}
    return {"session_banner": SimpleLazyObject(lambda: session.check(rootstate.session_data()))}
