"""The reviewer queue: the page, its cards' actions, bulk actions and the poll.

Every view serves a plain request with the whole page (post/redirect/get after a
change) and an htmx request with just `queue.html#<partial>`. Each action is one
lifecycle verb; a refusal (someone else was first) answers 409 with the card
turned into a notice naming who. A refusal the gateway causes (Cloud: the 24-hour
window closed, a text over 4,096 characters) answers 409 with the card still
pending, saying why.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import trigger_client_event

from statecore import chat_modes, clock, lifecycle
from statecore.lifecycle import MoveRefused
from statecore.models import THREAD_SIZE, Message, Source, Status

from . import queue
from .access import REVIEW, SET_MODE, actor, may, next_url, require_perm, signed_in, with_param
from .actions import Target, message_action
from .cards import DECIDED, Card, thread_lines, thread_name
from .forms import LIMITS, ApproveForm, BulkForm, EditForm, QueueFilterForm, RejectForm, db_id
from .paging import CountedPaginator, cap_for
from .queue import GATEWAY_REFUSALS

TEMPLATE = "approvals/queue.html"
# A chat's conversation: loaded into a card, a history entry, or alone.
THREAD_TEMPLATE = "approvals/_thread.html"
# The event the page's counters (and its poll) listen for after a change: sent once the
# card is swapped, so the poll that follows no longer counts it as shown.
CHANGED = "queue-changed"
# What the partials ask: false unless a view or a fragment says otherwise (a name
# missing from the context is the costliest lookup a template makes, on every card).
_FLAGS = dict.fromkeys(["single", "fresh", "card_oob", "stale_oob", "counts_oob", "form"])


def _refused(request: HttpRequest, msg: Message, exc: MoveRefused) -> HttpResponse:
    """Someone else was first: 409, the card turned into a notice naming who and when.
    The gateway cannot take it: 409, the card as it is, saying why."""
    if exc.code in GATEWAY_REFUSALS:
        return _card_response(request, msg, refused=exc.reason, status=409)
    notice = queue.refusal_notice(exc, now=clock.now())
    return _card_response(request, msg, mode="notice", notice=notice, status=409)


def _pending_count(filter_form: QueueFilterForm, counts: dict) -> int | None:
    """Unfiltered, the pages hold what the header counts as pending: not counted twice."""
    if filter_form.values() or filter_form.search_refused:
        return None
    return counts[Status.PENDING_APPROVAL]


@signed_in
@require_safe
def queue_page(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    filter_form = QueueFilterForm(request.GET)
    filters = filter_form.values()
    counts = queue.status_counts(now=now)
    drafts = chat_modes.annotate_modes(_drafts(filter_form, now))
    pages = CountedPaginator(
        drafts,
        queue.PAGE_SIZE,
        count=_pending_count(filter_form, counts),
        cap=cap_for(filters),
    )
    page = pages.get_page(request.GET.get("page"))
    params = request.GET.copy()
    params.pop("done", None)
    context = {
        "filter_form": filter_form,
        "filtered": bool(filters) or filter_form.search_refused,
        "page": page,
        "cards": queue.build_cards(page.object_list, now=now, viewer=actor(request)),
        "counts": counts,
        "overdue_minutes": settings.OVERDUE_MINUTES,
        "done_card": _done_card(request, now),
        "poll_query": params.urlencode(),
        "next": with_param(request.get_full_path(), "done", None),
    }
    return _render(request, TEMPLATE, context)


def _drafts(filter_form: QueueFilterForm, now) -> QuerySet[Message]:
    """What the filters ask for; nothing for a refused search (not the whole queue)."""
    drafts = queue.pending_drafts(filter_form.values(), now=now)
    return drafts.none() if filter_form.search_refused else drafts


def _done_card(request: HttpRequest, now) -> Card | None:
    """After a plain (no JavaScript) action the queue shows that reply, with its Undo."""
    pk = db_id(request.GET.get("done", ""))
    if pk is None:
        return None
    msg = Message.objects.filter(pk=pk, status__in=DECIDED).first()
    if msg is None:
        return None
    return queue.build_cards([msg], now=now, with_newer=False, viewer=actor(request))[0]


@signed_in
@require_safe
def queue_poll(request: HttpRequest) -> HttpResponse:
    """What changed since the page was drawn: cards others handled go (with who did it),
    new ones come, "customer wrote again" and "answered from the phone" marks appear, the
    counts follow. A card is never re-drawn here, so nothing a reviewer is typing is lost."""
    now = clock.now()
    filter_form = QueueFilterForm(request.GET)
    shown = queue.parse_shown(request.GET.getlist("shown"))
    pending = _drafts(filter_form, now)
    # Only what placing the cards needs: bodies can be long and this runs every few seconds.
    slim = pending.only("pk", "status", "chat", "timestamp", "reply_to", "message_id")
    counts = queue.status_counts(now=now)
    pages = CountedPaginator(
        slim,
        queue.PAGE_SIZE,
        count=_pending_count(filter_form, counts),
        cap=cap_for(filter_form.values()),
    )
    on_page = list(pages.get_page(request.GET.get("page")).object_list)
    in_window = {m.pk for m in on_page}

    # A shown card outside this page's window goes only if it is no longer pending (a
    # pending one pushed to the next page by an undo stays until the page is reloaded).
    outside = [pk for pk in shown if pk not in in_window]
    rows = {m.pk: m for m in Message.objects.filter(pk__in=outside)} if outside else {}
    gone = [
        {"pk": pk, "notice": _notice_of(rows.get(pk), now)}
        for pk in outside
        if pk not in rows or rows[pk].status != Status.PENDING_APPROVAL
    ]
    related = queue.related_messages(on_page, answered=False)
    marks = [
        Card(msg=m, now=now, newer=related.newer.get(m.pk, []), phone=related.phone.get(m.pk, []))
        for m in on_page
        if m.pk in shown
    ]
    stale_updates = [c for c in marks if c.stale and c.newest_newer_pk != shown[c.msg.pk]]
    new_pks = [m.pk for m in on_page if m.pk not in shown]
    new_cards = []
    if new_pks:
        fresh = {m.pk: m for m in chat_modes.annotate_modes(Message.objects.filter(pk__in=new_pks))}
        in_order = [fresh[pk] for pk in new_pks if pk in fresh]
        new_cards = queue.build_cards(in_order, now=now, with_newer=False, viewer=actor(request))
        for card in new_cards:
            card.newer = related.newer.get(card.msg.pk, [])
            card.phone = related.phone.get(card.msg.pk, [])
    context = {
        "counts": counts,
        "overdue_minutes": settings.OVERDUE_MINUTES,
        "gone": gone,
        "new_cards": new_cards,
        "stale_updates": stale_updates,
        "next": next_url(request),
    }
    return _render(request, f"{TEMPLATE}#poll", context)


@signed_in
@require_safe
def card(request: HttpRequest, pk: int) -> HttpResponse:
    """One card as it is now (Cancel of an edit; a link to one reply)."""
    return _card_response(request, get_object_or_404(Message, pk=pk))


@signed_in
@require_safe
def thread(request: HttpRequest, pk: int) -> HttpResponse:
    """The chat's last messages in both directions, for a card (key `c`) or a history
    entry: the fragment for htmx, a page of its own without JavaScript."""
    require_perm(request, REVIEW)
    msg = get_object_or_404(Message, pk=pk)
    lines = thread_lines(Message.objects.thread(msg.chat), current=msg.pk)
    context = {
        "lines": lines,
        "name": thread_name(lines, msg.chat),
        "full": len(lines) >= THREAD_SIZE,
    }
    if request.htmx:
        return render(request, THREAD_TEMPLATE, context)
    return render(request, "approvals/thread.html", context | {"next": next_url(request)})


@message_action(REVIEW, refused=_refused)
def approve(request: HttpRequest, target: Target) -> HttpResponse:
    form = ApproveForm(request.POST)
    related = None
    if not (form.is_valid() and form.cleaned_data["confirm_stale"]):
        # Whether the chat moved on after this draft needs the draft before the move.
        msg = target.row()
        ask = msg.status == Status.PENDING_APPROVAL
        # One query for what the card shows, whether the customer wrote again and
        # whether someone answered from the phone.
        related = queue.related_messages([msg], newer=ask)
        if ask and (related.newer or related.phone):
            # The chat moved on after this draft: ask before sending it.
            return _card_response(request, msg, mode="confirm", related=related)
    msg = lifecycle.approve(target.key, actor=actor(request), source=Source.WEB)
    # The message it answers did not move: the card is drawn without asking again.
    return _changed(request, msg, "Approved the reply to {name}.", related=related)


@message_action(REVIEW, refused=_refused, methods=("GET", "POST"))
def edit(request: HttpRequest, target: Target) -> HttpResponse:
    """GET: the card with the draft in a text box; POST: save the text and approve it."""
    if request.method == "GET":
        msg = target.row()
        if msg.status != Status.PENDING_APPROVAL:
            return _gone(request, msg)
        return _card_response(request, msg, mode="edit", form=EditForm(initial={"text": msg.body}))
    form = EditForm(request.POST)
    if not form.is_valid():
        return _card_response(request, target.row(), mode="edit", form=form, status=422)
    try:
        msg = lifecycle.edit_and_approve(
            target.key, form.cleaned_data["text"], actor=actor(request), source=Source.WEB
        )
    except MoveRefused as exc:
        if exc.code not in GATEWAY_REFUSALS:
            raise
        # The editor stays open: the reviewer's text is kept.
        form.add_error("text", f"Not approved: {exc.reason}.")
        return _card_response(request, target.row(), mode="edit", form=form, status=409)
    return _changed(request, msg, "Approved your edited reply to {name}.")


@message_action(REVIEW, refused=_refused, methods=("GET", "POST"))
def reject(request: HttpRequest, target: Target) -> HttpResponse:
    """GET: the card asking for an optional reason; POST: reject."""
    if request.method == "GET":
        msg = target.row()
        if msg.status != Status.PENDING_APPROVAL:
            return _gone(request, msg)
        return _card_response(request, msg, mode="reject", form=RejectForm())
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _card_response(request, target.row(), mode="reject", form=form, status=422)
    msg = lifecycle.reject(
        target.key, actor=actor(request), source=Source.WEB, reason=form.cleaned_data["reason"]
    )
    return _changed(request, msg, "Rejected the reply to {name}.")


@message_action(REVIEW, refused=_refused)
def undo(request: HttpRequest, target: Target) -> HttpResponse:
    """Back to the queue, while the sender has not claimed the reply."""
    msg = lifecycle.undo(target.key, actor=actor(request), source=Source.WEB)
    return _changed(request, msg, "The reply to {name} is back in the queue.", done=False)


@signed_in
@require_POST
def bulk(request: HttpRequest) -> HttpResponse:
    """Approve or reject the selected cards, each on its own: one refusal stops nothing.
    Drafts whose customer wrote again are skipped unless that was confirmed."""
    require_perm(request, REVIEW)
    form = BulkForm(request.POST)
    if not form.is_valid():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
        if request.htmx:
            return _render(request, f"{TEMPLATE}#bulk-result", {"errors": errors}, status=422)
        for error in errors:
            messages.error(request, error)
        return redirect(next_url(request))
    now = clock.now()
    ids = form.cleaned_data["ids"]
    found = {m.pk: m for m in Message.objects.filter(pk__in=ids)}
    cards = queue.build_cards(
        [found[pk] for pk in ids if pk in found], now=now, viewer=actor(request)
    )
    result = _bulk_apply(request, cards, form.cleaned_data)
    result["missing"], result["total"] = len(ids) - len(found), len(ids)
    if request.htmx:
        response = _render(request, f"{TEMPLATE}#bulk-result", {"result": result})
        return trigger_client_event(response, CHANGED, after="settle")
    _bulk_messages(request, result, form.cleaned_data["action"])
    return redirect(next_url(request))


def _bulk_apply(request: HttpRequest, cards: list[Card], data: dict) -> dict:
    verb = data["action"]
    result: dict = {
        "action": verb,
        "done": [],
        "stale": [],
        "phone": [],
        "cannot": [],
        "refused": [],
    }
    for card in cards:
        if verb == "approve" and card.pending and card.stale and not data["confirm_stale"]:
            result["stale" if card.newer else "phone"].append(card)
            continue
        try:
            if verb == "approve":
                card.msg = lifecycle.approve(
                    card.msg.message_id, actor=actor(request), source=Source.WEB
                )
            else:
                card.msg = lifecycle.reject(
                    card.msg.message_id,
                    actor=actor(request),
                    source=Source.WEB,
                    reason=data["reason"],
                )
        except MoveRefused as exc:
            if exc.code in GATEWAY_REFUSALS:  # still pending, left as it is, named in the summary
                card.refused = exc.reason
                result["cannot"].append(card)
                continue
            card.mode, card.notice = "notice", queue.refusal_notice(exc, now=card.now)
            result["refused"].append(card)
        else:
            result["done"].append(card)
    return result


def _bulk_messages(request: HttpRequest, result: dict, verb: str) -> None:
    past = "Approved" if verb == "approve" else "Rejected"
    done = len(result["done"])
    if done:
        messages.success(request, f"{past} {done} {'reply' if done == 1 else 'replies'}.")
    if result["stale"]:
        names = ", ".join(_name(c) for c in result["stale"])
        messages.warning(
            request,
            f"Skipped {len(result['stale'])} where the customer wrote again ({names}): "
            f"tick “{INCLUDE_STALE}” to approve them anyway.",
        )
    if result["phone"]:
        names = ", ".join(_name(c) for c in result["phone"])
        messages.warning(
            request,
            f"Skipped {len(result['phone'])} answered from the phone since the draft ({names}): "
            f"tick “{INCLUDE_STALE}” to approve them anyway.",
        )
    for card in result["cannot"]:
        messages.warning(request, f"Skipped the reply to {_name(card)}: {card.approve_refusal}.")
    for card in result["refused"]:
        messages.warning(request, f"Skipped the reply to {_name(card)}: {card.notice}.")
    if result.get("missing"):
        messages.warning(request, f"{result['missing']} selected replies no longer exist.")


# --- Responses ---------------------------------------------------------------------

# The bulk bar's checkbox (queue.html says the same words).
INCLUDE_STALE = "Include drafts where the customer wrote again or someone answered from the phone"


def _render(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    """Every page and fragment of the queue: whether the reviewer may act is asked once
    here, not by each of 50 cards (`perms` walks the auth backends on every lookup)."""
    context = _FLAGS | {"limits": LIMITS} | context
    context["can_review"] = may(request.user, REVIEW)
    context["can_select"] = context["can_review"] and not context["single"]
    context["can_set_mode"] = may(request.user, SET_MODE)
    return render(request, template, context, status=status)


def _name(card: Card) -> str:
    return card.display_name


def _card_response(
    request: HttpRequest,
    msg: Message,
    *,
    mode: str = "view",
    form=None,
    notice: str = "",
    status: int = 200,
    related: queue.Related | None = None,
    refused: str = "",
) -> HttpResponse:
    now = clock.now()
    card_ = queue.build_cards([msg], now=now, related=related, viewer=actor(request))[0]
    card_.mode, card_.notice, card_.refused = mode, notice, refused
    context = {"card": card_, "form": form, "next": next_url(request)}
    if request.htmx:
        return _render(request, f"{TEMPLATE}#card", context, status=status)
    # Without JavaScript: the queue page holding just this card.
    context |= {
        "cards": [card_],
        "single": True,
        "counts": queue.status_counts(now=now),
        "overdue_minutes": settings.OVERDUE_MINUTES,
        "filter_form": QueueFilterForm(),
    }
    return _render(request, TEMPLATE, context, status=status)


def _notice_of(msg: Message | None, now) -> str:
    if msg is None:
        return queue.status_notice(None, "", None, now=now)
    return queue.status_notice(msg.status, msg.status_changed_by, msg.status_updated_at, now=now)


def _gone(request: HttpRequest, msg: Message) -> HttpResponse:
    """The card was decided before this reviewer opened its editor: say by whom."""
    notice = _notice_of(msg, clock.now())
    return _card_response(request, msg, mode="notice", notice=notice, status=409)


def _changed(
    request: HttpRequest,
    msg: Message,
    flash: str,
    *,
    done: bool = True,
    related: queue.Related | None = None,
) -> HttpResponse:
    """After a change: the card (htmx, plus the event the counters listen for), or
    post/redirect/get back to the queue, which then shows the reply with its Undo.
    `related`: what the card needs, when the view has it already."""
    if request.htmx:
        response = _card_response(request, msg, related=related)
        return trigger_client_event(response, CHANGED, after="settle")
    card_ = queue.build_cards([msg], now=clock.now(), with_newer=False, related=related)[0]
    messages.success(request, flash.format(name=_name(card_)))
    return redirect(with_param(next_url(request), "done", str(msg.pk) if done else None))
