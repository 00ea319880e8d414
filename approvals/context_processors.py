from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from statecore import rootstate, session


def session_health(request: HttpRequest) -> dict:
    """The session verdict for the red banner of base.html.

    Lazy: a fragment rendered for htmx never shows the banner and so never queries;
    nobody signed in sees it either."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"session_health": None}
    return {"session_health": SimpleLazyObject(lambda: session.check(rootstate.session_data()))}
