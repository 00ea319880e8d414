"""The history page: handled replies with their audit trail, Retry, Confirmed sent and
Put back in the queue."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.functional import SimpleLazyObject
from django.views.decorators.http import require_safe
from django_htmx.http import trigger_client_event

from statecore import chat_modes, clock, lifecycle
from statecore.lifecycle import MoveRefused
from statecore.models import HANDLED, Message, Source

from . import history, queue
from .access import REOPEN, RESOLVE, REVIEW, SET_MODE, actor, may, next_url, signed_in
from .actions import Target, message_action
from .forms import LIMITS, ConfirmSentForm, HistoryFilterForm, ReopenForm
from .paging import CountedPaginator, cap_for
from .queue_views import CHANGED

TEMPLATE = "approvals/history.html"


def _refused(request: HttpRequest, msg: Message, exc: MoveRefused) -> HttpResponse:
    notice = queue.refusal_notice(exc, now=clock.now())
    return _entry_response(request, msg, notice=notice, status=409)


@signed_in
@require_safe
def history_page(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    filter_form = HistoryFilterForm(request.GET)
    filters = filter_form.values()
    replies = chat_modes.annotate_modes(history.handled_replies(filters))
    if filter_form.search_refused:
        replies = replies.none()  # the error is shown, not every reply unsearched
    pages = CountedPaginator(
        replies, queue.PAGE_SIZE, count=_known_count(filter_form), cap=cap_for(filters)
    )
    page = pages.get_page(request.GET.get("page"))
    context = {
        "filter_form": filter_form,
        "filtered": bool(filters) or filter_form.search_refused,
        "page": page,
        "entries": history.build_entries(page.object_list, now=now),
        "next": request.get_full_path(),
    }
    return _render(request, TEMPLATE, context)


def _known_count(filter_form: HistoryFilterForm) -> int | None:
    """Unfiltered or by status alone, the count table has the list's length; other
    filters are counted by the pager, as far as the page asked."""
    filters = filter_form.values()
    if filter_form.search_refused or set(filters) - {"status"}:
        return None
    counts = Message.objects.counts_per_status()
    return counts[filters["status"]] if "status" in filters else sum(counts[s] for s in HANDLED)


@signed_in
@require_safe
def history_entry(request: HttpRequest, pk: int) -> HttpResponse:
    """One reply with its trail open (a link to it; the page after a plain-form error)."""
    return _entry_response(request, get_object_or_404(Message, pk=pk))


@message_action(RESOLVE, refused=_refused)
def retry(request: HttpRequest, target: Target) -> HttpResponse:
    """failed -> approved: the sender will try again."""
    msg = lifecycle.retry(target.key, actor=actor(request), source=Source.WEB)
    return _changed(request, msg, "The reply will be sent again.")


@message_action(RESOLVE, refused=_refused)
def confirm_sent(request: HttpRequest, target: Target) -> HttpResponse:
    """failed -> sent: someone checked the phone and the reply did go out."""
    form = ConfirmSentForm(request.POST)
    if not form.is_valid():
        return _entry_response(request, target.row(), form=form, status=422)
    msg = lifecycle.confirm_sent(
        target.key, actor=actor(request), source=Source.WEB, note=form.cleaned_data["note"]
    )
    return _changed(request, msg, "Marked as sent.")


@message_action(REOPEN, refused=_refused)
def reopen(request: HttpRequest, target: Target) -> HttpResponse:
    """approved (not yet claimed for sending) | rejected -> pending_approval, however long
    ago it was decided: the deliberate act after the queue's Undo window."""
    form = ReopenForm(request.POST)
    if not form.is_valid():
        return _entry_response(request, target.row(), reopen_form=form, status=422)
    msg = lifecycle.reopen(
        target.key, actor=actor(request), source=Source.WEB, note=form.cleaned_data["note"]
    )
    return _changed(request, msg, "The reply is back in the queue.")


def _render(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    """Every page and fragment of the history: what the reader may do, asked once, and
    only if an entry offers it (lazy: a page without failed replies never asks)."""
    context["can_resolve"] = SimpleLazyObject(lambda: may(request.user, RESOLVE))
    context["can_reopen"] = SimpleLazyObject(lambda: may(request.user, REOPEN))
    context["can_set_mode"] = SimpleLazyObject(lambda: may(request.user, SET_MODE))
    context["can_review"] = SimpleLazyObject(lambda: may(request.user, REVIEW))
    context["limits"] = LIMITS
    return render(request, template, context, status=status)


def _entry_response(
    request: HttpRequest,
    msg: Message,
    *,
    form=None,
    reopen_form=None,
    notice: str = "",
    status: int = 200,
) -> HttpResponse:
    entry = history.build_entries([msg], now=clock.now())[0]
    entry.notice = notice
    context = {
        "entry": entry,
        "confirm_form": form,
        "reopen_form": reopen_form,
        "open_trail": True,
        "next": next_url(request, default="approvals:history"),
    }
    if request.htmx:
        return _render(request, f"{TEMPLATE}#entry", context, status=status)
    context |= {"entries": [entry], "single": True, "filter_form": HistoryFilterForm()}
    return _render(request, TEMPLATE, context, status=status)


def _changed(request: HttpRequest, msg: Message, flash: str) -> HttpResponse:
    if request.htmx:
        return trigger_client_event(_entry_response(request, msg), CHANGED, after="settle")
    messages.success(request, flash)
    return redirect(next_url(request, default="approvals:history"))
