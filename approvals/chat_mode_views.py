"""A chat's mode (review / auto / off), set from the queue's card and the history's entry.

Each view parses the form, calls the one verb (`chat_modes.set_mode`, audited) for the
chat of the reply it was asked on, and answers as its page's other actions do: the
card (or the entry) as it is now for htmx, post/redirect/get otherwise. A mode no form
offers is a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from statecore import chat_modes
from statecore.models import Message, Mode, Source

from . import history_views, queue_views
from .access import SET_MODE, actor, next_url
from .actions import Target, message_action
from .forms import ChatModeForm
from .present import phone

# What each mode means for the chat's drafts, as the flash message says it.
MEANING = {
    Mode.REVIEW: "its drafts wait for a person (unless human_in_the_loop is off)",
    Mode.AUTO: "its new drafts are approved at once",
    Mode.OFF: "the assistant is not asked and new drafts are rejected at once",
}

Respond = Callable[[HttpRequest, Message], HttpResponse]


def _bad_request(text: str) -> HttpResponse:
    # Plain text: the refused value is echoed, never as markup.
    return HttpResponse(text, status=400, content_type="text/plain; charset=utf-8")


def _set_mode(request: HttpRequest, msg: Message, respond: Respond, default: str) -> HttpResponse:
    form = ChatModeForm(request.POST)
    if not form.is_valid():
        return _bad_request(f"mode: {' '.join(form.errors['mode'])}")
    if not msg.chat:
        return _bad_request(f"chat: the reply {msg.message_id} names no chat")
    mode = Mode(form.cleaned_data["mode"])
    changed = chat_modes.set_mode(msg.chat, mode, actor=actor(request), source=Source.WEB)
    if request.htmx:
        return respond(request, msg)
    state = "is now" if changed else "was already"
    messages.success(request, f"The chat {phone(msg.chat)} {state} on {mode}: {MEANING[mode]}.")
    return redirect(next_url(request, default=default))


@message_action(SET_MODE, refused=queue_views._refused)
def queue_chat_mode(request: HttpRequest, target: Target) -> HttpResponse:
    """From the card's menu: the card again, with its chat's mode."""
    return _set_mode(request, target.row(), queue_views._card_response, "approvals:queue")


@message_action(SET_MODE, refused=history_views._refused)
def history_chat_mode(request: HttpRequest, target: Target) -> HttpResponse:
    """From a history entry: the entry again, with its chat's mode."""
    return _set_mode(request, target.row(), history_views._entry_response, "approvals:history")
