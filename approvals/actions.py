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

from statecore.lifecycle import MessageNotFound, MoveRefused, Row
from statecore.models import Message

from .access import require_perm, signed_in


class Target:
    """The reply an action names: `key` for the lifecycle verb, `row()` to look at it."""

    def __init__(self, pk: int) -> None:
        self.key = Row(pk)
        self._row: Message | None = None

    def row(self) -> Message:
        """The reply as it is now (404 when there is none), read at most once."""
        if self._row is None:
            self._row = get_object_or_404(Message, pk=self.key.pk)
        return self._row


Refused = Callable[[HttpRequest, Message, MoveRefused], HttpResponse]
ActionView = Callable[[HttpRequest, Target], HttpResponse]


def message_action(
    perm: str, *, refused: Refused, methods: tuple[str, ...] = ("POST",)
) -> Callable[[ActionView], Callable[..., HttpResponse]]:
    """Wrap `view(request, target)` as the action on the reply `pk`, behind `perm`;
    a refused move answers `refused(request, reply_as_it_is_now, exc)`."""

    def decorate(view: ActionView) -> Callable[..., HttpResponse]:
        @signed_in
        @require_http_methods(list(methods))
        @wraps(view)
        def action(request: HttpRequest, pk: int) -> HttpResponse:
            require_perm(request, perm)
            target = Target(pk)
            try:
                return view(request, target)
            except MessageNotFound:
                raise Http404 from None
            except MoveRefused as exc:
                # Read after the refusal: the card shows who was first.
                msg = Message.objects.filter(pk=pk).first()
                if msg is None:
                    raise Http404 from None
                return refused(request, msg, exc)

        return action

    return decorate
