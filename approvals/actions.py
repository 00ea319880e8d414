"""The one shape of an action on a reply, for the queue and the history alike.

permission -> the reply (404 when there is none) -> the view (its form and one
lifecycle verb) -> 404 when the reply went meanwhile, or the page's refusal answer
when the lifecycle refused the move. The view is left with what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_http_methods

from statecore.lifecycle import MessageNotFound, MoveRefused
from statecore.models import Message

from .access import require_perm, signed_in

Refused = Callable[[HttpRequest, Message, MoveRefused], HttpResponse]
ActionView = Callable[[HttpRequest, Message], HttpResponse]


def message_action(
    perm: str, *, refused: Refused, methods: tuple[str, ...] = ("POST",)
) -> Callable[[ActionView], Callable[..., HttpResponse]]:
    """Wrap `view(request, msg)` as the action on the reply `pk`, behind `perm`;
    a refused move answers `refused(request, msg, exc)`."""

    def decorate(view: ActionView) -> Callable[..., HttpResponse]:
        @signed_in
        @require_http_methods(list(methods))
        @wraps(view)
        def action(request: HttpRequest, pk: int) -> HttpResponse:
            require_perm(request, perm)
            msg = get_object_or_404(Message, pk=pk)
            try:
                return view(request, msg)
            except MessageNotFound:
                raise Http404 from None
            except MoveRefused as exc:
                return refused(request, msg, exc)

        return action

    return decorate
