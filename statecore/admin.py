"""The admin site: find anything, fix by hand what scripts broke, see the history.

Status changes only through the actions of the message list, which call the
lifecycle; the status field is on no form. The few things edited by hand (a
message's extra keys, the four settings) are saved by the core
(`lifecycle.edit_extra_keys`, `settings_store.update_settings`), which audits
them (source "admin") with before and after. Records
(audit events, the sender's log, gateway events, heartbeats, incidents) are
read-only for everyone.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.db import transaction
from django.db.models import F, OrderBy
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator, smart_split, unescape_string_literal

from . import chat_modes, clock, lifecycle, rootstate, search, session, settings_store, whatsapp
from .admin_forms import MessageExtraForm, SettingsForm, pretty
from .lifecycle import Conflict
from .models import (
    AuditEvent,
    ChatMode,
    GatewayEvent,
    GatewayState,
    Heartbeat,
    Incident,
    Message,
    Source,
    StateRoot,
)
from .models import LogEntry as MessageLogEntry
from .paging import CountedPaginator, cap_for

admin.site.site_header = "WhatsApp approvals: administration"
admin.site.site_title = "WhatsApp approvals admin"
admin.site.index_title = "Fix the state by hand"
admin.site.site_url = "/"

SKIPPED_SHOWN = 20
SET_CHAT_MODE = "statecore.set_chat_mode"
HISTORY_SHOWN = 20


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _json_block(value: object):
    return format_html('<pre class="state-json" dir="auto">{}</pre>', pretty(value))


def _search_words(term: str) -> list[str]:
    """The words of an admin search, split as Django's own search splits them."""
    words = []
    for word in smart_split(term):
        if word[:1] in ('"', "'") and word[0] == word[-1] and len(word) > 1:
            word = unescape_string_literal(word)
        words.append(word)
    return words


def _message_url(pk: int) -> str:
    return reverse("admin:statecore_message_change", args=[pk])


class _CountsToACap:
    """A list of a million rows counts only as far as its page (statecore.paging): "10,000+"
    rather than a COUNT(*) per view, and no second count of the unfiltered table."""

    show_full_result_count = False

    def get_paginator(
        self, request, queryset, per_page, orphans=0, allow_empty_first_page=True
    ) -> CountedPaginator:
        pages = CountedPaginator(
            queryset,
            per_page,
            count=self.known_count(queryset),
            # A search counts only as far as its page, as on the reviewers' pages: a
            # common word's matches counted to 10,000 in the list's order is a walk of
            # the whole table (a quarter of a second at a million).
            cap=cap_for({"q": request.GET.get(SEARCH_VAR, "").strip()}),
            orphans=orphans,
            allow_empty_first_page=allow_empty_first_page,
        )
        pages.ask(request.GET.get("p", 1))
        return pages

    def known_count(self, queryset) -> int | None:
        """The list's length when known without counting its rows (None: count them)."""
        return None


class _TiesInTheSortsDirection(ChangeList):
    """Rows that sort equal are put in order by id in the sort's own direction, where
    Django always puts the newest first: an ascending sort on an indexed column is then
    that index read backwards, not a sort of a million rows (half of them tied: the
    customers' messages have no status change)."""

    def _get_deterministic_ordering(self, ordering):
        # Django's own hook for the tie-breaker (private; Django is pinned in
        # requirements.txt, and test_admin's sort test fails if it stops being called).
        ordering = super()._get_deterministic_ordering(ordering)
        if not ordering or not _ascending(ordering[0]):
            return ordering
        # The list's own "-pk" and the one Django adds (it does not see "pk" as a field).
        head = [part for part in ordering if part != "-pk"]
        return head if "pk" in head else [*head, "pk"]


def _ascending(part) -> bool:
    if isinstance(part, str):
        return not part.startswith("-")
    if isinstance(part, OrderBy):
        return not part.descending
    return isinstance(part, F)


class _CountsMessages(_CountsToACap):
    def known_count(self, queryset) -> int | None:
        """Unfiltered, the count table has the total: exact, without a COUNT(*)."""
        if queryset.query.has_filters():
            return None
        return sum(Message.objects.counts_per_status().values())


class _SavesThroughCore:
    """Admin plumbing: save through the core, and report a Conflict as an error
    on the same page instead of "changed successfully"."""

    class Media:
        css = {"all": ["css/admin.css"]}

    def save_model(self, request, obj, form, change) -> None:
        try:
            with transaction.atomic():
                self.save_through_core(request, obj, form)
        except Conflict as exc:
            request.admin_conflict = str(exc)

    def log_change(self, request, obj, message):
        if getattr(request, "admin_conflict", None):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request, obj):
        conflict = getattr(request, "admin_conflict", None)
        if conflict:
            self.message_user(request, conflict, messages.ERROR)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


# --- Messages -----------------------------------------------------------------


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("incoming", "From a customer"), ("reply", "Drafted reply")]

    def queryset(self, request, queryset):
        if self.value() == "incoming":
            return queryset.filter(reply_to="")
        if self.value() == "reply":
            return queryset.replies()
        return queryset


class ChatFilter(admin.SimpleListFilter):
    title = "group or direct"
    parameter_name = "chat_kind"

    def lookups(self, request, model_admin):
        return [("group", "Group"), ("direct", "Direct")]

    def queryset(self, request, queryset):
        if self.value() in ("group", "direct"):
            return queryset.filter(is_group=self.value() == "group")
        return queryset


@admin.register(Message)
class MessageAdmin(_CountsMessages, _SavesThroughCore, admin.ModelAdmin):
    form = MessageExtraForm
    list_display = ["short_id", "status", "who", "preview", "timestamp", "last_change"]
    list_filter = [
        "status",
        KindFilter,
        ChatFilter,
        ("timestamp", admin.DateFieldListFilter),
        ("status_updated_at", admin.DateFieldListFilter),
    ]
    # Searched through the text index (search.py), not Django's scan of these columns.
    search_fields = list(search.FIELDS)
    search_help_text = "Id, number, name, or any words of the text."
    ordering = ["-pk"]
    list_per_page = 50
    show_full_result_count = False
    actions = ["approve", "reject", "retry_failed", "mark_failed", "confirm_sent", "reopen"]
    readonly_fields = [
        "message_id",
        "status",
        "status_changed_by",
        "status_updated_at",
        "sender",
        "sender_name",
        "author",
        "recipient",
        "is_group",
        "timestamp",
        "text",
        "in_reply_to",
        "replies",
        "claimed_by",
        "claimed_at",
        "lease_until",
        "stored_object",
        "history",
    ]
    editing_fields = ["extra_keys", "seen"]

    def get_fieldsets(self, request, obj=None):
        stored = ["stored_object"]
        if self.has_change_permission(request, obj):
            stored += self.editing_fields
        return [
            (None, {"fields": ["message_id", "status", "status_changed_by", "status_updated_at"]}),
            (
                "Who and what",
                {
                    "fields": [
                        "sender",
                        "sender_name",
                        "author",
                        "recipient",
                        "is_group",
                        "timestamp",
                        "text",
                    ]
                },
            ),
            ("Conversation", {"fields": ["in_reply_to", "replies"]}),
            ("Sending", {"fields": ["claimed_by", "claimed_at", "lease_until"]}),
            ("Stored object", {"fields": stored}),
            ("History", {"fields": ["history"]}),
        ]

    def get_changelist(self, request, **kwargs):
        return _TiesInTheSortsDirection

    def get_search_results(self, request, queryset, search_term):
        """Each word (or "quoted phrase") in one of the columns, as Django's search, but
        found from the index: case and accents folded, fragments of numbers too."""
        words = [search.matches(word) for word in _search_words(search_term)]
        return queryset.filter(*words), False

    def has_add_permission(self, request) -> bool:
        return False  # messages arrive through the lifecycle (scripts, import)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a deleted message would leave the counters and the audit log behind

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("statecore.review_message")

    def has_resolve_permission(self, request) -> bool:
        return request.user.has_perm("statecore.resolve_failed")

    def has_reopen_permission(self, request) -> bool:
        return request.user.has_perm("statecore.reopen_message")

    def save_through_core(self, request, obj, form) -> None:
        lifecycle.edit_extra_keys(
            obj.message_id,
            form.cleaned_data["extra_keys"],
            seen=form.cleaned_data["seen"],
            **self._who(request),
        )

    # Columns and read-only fields ---------------------------------------------
    @admin.display(description="id", ordering="message_id")
    def short_id(self, obj: Message):
        # Cut to one line by admin.css (ids run to 60 characters); the whole id on hover.
        return format_html(
            '<span class="message-id" title="{}">{}</span>', obj.message_id, obj.message_id
        )

    # Sorted as the history's index holds it (newest change first, never-changed last),
    # so both directions read that index instead of sorting every message.
    @admin.display(
        description="status updated at",
        ordering=F("status_updated_at").asc(nulls_first=True),
    )
    def last_change(self, obj: Message):
        return obj.status_updated_at

    @admin.display(description="from / to")
    def who(self, obj: Message) -> str:
        if obj.reply_to:
            return f"to {obj.recipient}"
        name = f"{obj.sender_name} " if obj.sender_name else ""
        return f"{name}{obj.sender}"

    @admin.display(description="text")
    def preview(self, obj: Message):
        short = Truncator(" ".join(obj.body.split())).chars(80)
        return format_html('<span dir="auto">{}</span>', short)

    @admin.display(description="text")
    def text(self, obj: Message):
        return format_html('<div class="message-text" dir="auto">{}</div>', obj.body)

    @admin.display(description="in reply to")
    def in_reply_to(self, obj: Message):
        if not obj.reply_to:
            return "-"
        pk = Message.objects.filter(message_id=obj.reply_to).values_list("pk", flat=True).first()
        if pk is None:
            return f"{obj.reply_to} (not stored)"
        return format_html('<a href="{}">{}</a>', _message_url(pk), obj.reply_to)

    @admin.display(description="replies to this message")
    def replies(self, obj: Message):
        rows = Message.objects.filter(reply_to=obj.message_id).order_by("pk")
        rows = rows.values_list("pk", "message_id", "status")
        links = format_html_join(
            "",
            '<li><a href="{}">{}</a> ({})</li>',
            ((_message_url(pk), mid, st) for pk, mid, st in rows),
        )
        return format_html("<ul>{}</ul>", links) if links else "-"

    @admin.display(description="stored object (read-only)")
    def stored_object(self, obj: Message):
        return _json_block(obj.data)

    @admin.display(description="audit events")
    def history(self, obj: Message):
        events = AuditEvent.objects.filter(message_id=obj.message_id)[:HISTORY_SHOWN]
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td dir="auto">{}</td></tr>',
            (
                (
                    clock.local_iso(e.created_at)[:19],
                    e.action,
                    e.from_status or "-",
                    e.to_status or "-",
                    e.actor,
                    e.source,
                    Truncator(e.note).chars(120),
                )
                for e in events
            ),
        )
        everything = (
            reverse("admin:statecore_auditevent_changelist")
            + "?"
            + urlencode({"message_id": obj.message_id})
        )
        return format_html(
            '<table class="audit-history"><tbody>{}</tbody></table><p><a href="{}">All events of this message</a></p>',
            rows,
            everything,
        )

    # Actions: each calls the lifecycle once per message and reports every refusal
    def _run(self, request, queryset, verb: str, move) -> None:
        moved, skipped = 0, []
        for mid in queryset.order_by("pk").values_list("message_id", flat=True):
            try:
                move(mid)
            except lifecycle.MoveRefused as exc:
                skipped.append(str(exc))
            else:
                moved += 1
        self.message_user(
            request, f"{verb}: {moved} moved, {len(skipped)} skipped.", messages.SUCCESS
        )
        if skipped:
            shown = skipped[:SKIPPED_SHOWN]
            more = len(skipped) - len(shown)
            text = "Skipped: " + " | ".join(shown) + (f" | and {more} more" if more else "")
            self.message_user(request, text, messages.WARNING)

    def _who(self, request) -> dict:
        return {"actor": _actor(request), "source": Source.ADMIN}

    @admin.action(description="Approve", permissions=["review"])
    def approve(self, request, queryset):
        self._run(
            request, queryset, "Approve", lambda mid: lifecycle.approve(mid, **self._who(request))
        )

    @admin.action(description="Reject", permissions=["review"])
    def reject(self, request, queryset):
        self._run(
            request,
            queryset,
            "Reject",
            # No reason: the admin asks for none, and the row says where (source "admin").
            lambda mid: lifecycle.reject(mid, **self._who(request)),
        )

    @admin.action(description="Retry failed", permissions=["resolve"])
    def retry_failed(self, request, queryset):
        self._run(
            request, queryset, "Retry", lambda mid: lifecycle.retry(mid, **self._who(request))
        )

    @admin.action(description="Mark failed (stuck approved replies)", permissions=["resolve"])
    def mark_failed(self, request, queryset):
        error = f"marked failed by {_actor(request)} in the admin"
        self._run(
            request,
            queryset,
            "Mark failed",
            lambda mid: lifecycle.mark_failed(mid, error, unless_leased=True, **self._who(request)),
        )

    @admin.action(description="Confirmed sent (checked on the phone)", permissions=["resolve"])
    def confirm_sent(self, request, queryset):
        self._run(
            request,
            queryset,
            "Confirmed sent",
            lambda mid: lifecycle.confirm_sent(mid, **self._who(request)),
        )

    @admin.action(description="Put back in the queue (reopen)", permissions=["reopen"])
    def reopen(self, request, queryset):
        self._run(
            request,
            queryset,
            "Reopen",
            # No note: the row says where (source "admin") and is the same as any other reopen's.
            lambda mid: lifecycle.reopen(mid, **self._who(request)),
        )


# --- Session and settings (the one StateRoot row) -------------------------------


@admin.register(StateRoot)
class StateRootAdmin(_SavesThroughCore, admin.ModelAdmin):
    form = SettingsForm
    readonly_fields = ["validity", "session_json", "account_json", "counters", "metadata_json"]
    setting_fields = ["human_in_the_loop", "api_endpoint", "watcher_config", "retry_config", "seen"]

    def get_fieldsets(self, request, obj=None):
        settings = (
            self.setting_fields if self.has_change_permission(request, obj) else ["settings_json"]
        )
        return [
            ("Settings", {"fields": settings}),
            ("Session", {"fields": ["validity", "session_json", "account_json"]}),
            ("Statistics", {"fields": ["counters", "metadata_json"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(self.readonly_fields)
        if not self.has_change_permission(request, obj):
            fields.append("settings_json")
        return fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        # One row: its list is its page.
        rootstate.get_root()
        return HttpResponseRedirect(reverse("admin:statecore_stateroot_change", args=[1]))

    def save_through_core(self, request, obj, form) -> None:
        changes = form.changed_settings()
        if changes:
            settings_store.update_settings(
                changes, seen=form.cleaned_data["seen"], actor=_actor(request), source=Source.ADMIN
            )

    @admin.display(description="settings")
    def settings_json(self, obj: StateRoot):
        return _json_block({key: rootstate.part(obj, key) for key in self.setting_fields[:-1]})

    @admin.display(description="session validity")
    def validity(self, obj: StateRoot):
        report = session.check(rootstate.session_data(obj))
        rules = format_html_join(
            "",
            "<li>{}: {} ({})</li>",
            ((r.name, "passed" if r.passed else "FAILED", r.reason) for r in report.rules),
        )
        return format_html("<strong>{}</strong><ul>{}</ul>", report.verdict, rules)

    @admin.display(description="session (read-only)")
    def session_json(self, obj: StateRoot):
        return _json_block(rootstate.part(obj, "session"))

    @admin.display(description="account (read-only)")
    def account_json(self, obj: StateRoot):
        return _json_block(rootstate.part(obj, "account_info"))

    @admin.display(description="statistics: totals ever counted")
    def counters(self, obj: StateRoot):
        return _json_block(rootstate.statistics(obj))

    @admin.display(description="metadata")
    def metadata_json(self, obj: StateRoot):
        return _json_block(rootstate.part(obj, "metadata"))


# --- Chat modes --------------------------------------------------------------------


class ChatModeForm(forms.ModelForm):
    class Meta:
        model = ChatMode
        fields = ["chat", "mode"]
        help_texts = {
            "chat": "The chat's number with its country code (a group's id); "
            "a leading + and spaces are fine.",
            "mode": "review: a person decides (unless human_in_the_loop is off); auto: "
            "approved at once; off: the assistant is not asked, drafts are rejected at once.",
        }

    def clean_chat(self) -> str:
        try:
            return chat_modes.clean_chat(self.cleaned_data["chat"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc).removeprefix("chat: ")) from None


@admin.register(ChatMode)
class ChatModeAdmin(admin.ModelAdmin):
    """Every chat a mode was set for. Saved by `chat_modes.set_mode` (audited, source
    "admin"); a row is never deleted: back to `review` is a change like any other."""

    form = ChatModeForm
    list_display = ["chat", "mode", "updated_at", "updated_by"]
    list_filter = ["mode"]
    search_fields = ["chat"]
    search_help_text = "A chat's number, or a part of it."
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return ["chat", "updated_at", "updated_by"] if obj else []

    def get_fields(self, request, obj=None):
        return ["chat", "mode", "updated_at", "updated_by"] if obj else ["chat", "mode"]

    # The one permission of the concept: whoever may set a mode on the pages may here.
    def has_add_permission(self, request) -> bool:
        return request.user.has_perm(SET_CHAT_MODE)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(SET_CHAT_MODE)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(SET_CHAT_MODE) or super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        chat_modes.set_mode(obj.chat, obj.mode, actor=_actor(request), source=Source.ADMIN)
        # An added chat left in `review` writes nothing: there is no row to show.
        stored = ChatMode.objects.filter(chat=obj.chat).first()
        if stored is not None:
            obj.pk, obj.updated_at, obj.updated_by = stored.pk, stored.updated_at, stored.updated_by

    def response_add(self, request, obj, post_url_continue=None):
        if obj.pk is None:
            self.message_user(
                request, f"The chat {obj.chat} is in review already: nothing saved.", messages.INFO
            )
            return HttpResponseRedirect(reverse("admin:statecore_chatmode_changelist"))
        return super().response_add(request, obj, post_url_continue)

    def log_addition(self, request, obj, message):
        return None if obj.pk is None else super().log_addition(request, obj, message)


# --- Records: read-only for everyone, superusers included ------------------------


class ReadOnlyAdmin(_CountsToACap, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = ["created_at", "action", "message", "move", "actor", "source", "short_note"]
    list_filter = [
        ("actor", admin.AllValuesFieldListFilter),
        ("action", admin.AllValuesFieldListFilter),
        "source",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["message_id"]
    search_help_text = "A message id, or a part of it."
    list_per_page = 100
    show_full_result_count = False
    fields = [
        "created_at",
        "action",
        "message_id",
        "from_status",
        "to_status",
        "actor",
        "source",
        "note",
        "detail_json",
    ]
    readonly_fields = ["detail_json"]

    @admin.display(description="message")
    def message(self, obj: AuditEvent):
        if not obj.message_id:
            return "-"
        url = (
            reverse("admin:statecore_message_changelist")
            + "?"
            + urlencode({"message_id": obj.message_id})
        )
        return format_html('<a href="{}">{}</a>', url, obj.message_id)

    @admin.display(description="move")
    def move(self, obj: AuditEvent) -> str:
        return f"{obj.from_status or '-'} → {obj.to_status or '-'}"

    @admin.display(description="note")
    def short_note(self, obj: AuditEvent):
        return format_html('<span dir="auto">{}</span>', Truncator(obj.note).chars(80))

    @admin.display(description="detail (before / after)")
    def detail_json(self, obj: AuditEvent):
        return _json_block(obj.detail)


@admin.register(MessageLogEntry)
class MessageLogEntryAdmin(ReadOnlyAdmin):
    list_display = ["logged_at", "recipient", "outcome", "entry"]
    list_filter = ["outcome", ("logged_at", admin.DateFieldListFilter)]
    search_fields = ["recipient", "raw"]
    ordering = ["-pk"]
    show_full_result_count = False
    fields = ["logged_at", "recipient", "outcome", "entry_json"]
    readonly_fields = ["entry_json"]

    @admin.display(description="entry")
    def entry(self, obj: MessageLogEntry):
        return format_html('<span dir="auto">{}</span>', Truncator(obj.raw).chars(100))

    @admin.display(description="entry as stored")
    def entry_json(self, obj: MessageLogEntry):
        return _json_block(json.loads(obj.raw))


@admin.register(GatewayEvent)
class GatewayEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "event", "short_payload"]
    list_filter = ["event", ("received_at", admin.DateFieldListFilter)]
    search_fields = ["event", "payload"]
    show_full_result_count = False
    fields = ["received_at", "event", "payload"]

    @admin.display(description="payload")
    def short_payload(self, obj: GatewayEvent) -> str:
        return Truncator(obj.payload).chars(100)


@admin.register(GatewayState)
class GatewayStateAdmin(ReadOnlyAdmin):
    """What the gateway last said; written only by the session verbs (see /session/)."""

    list_display = [
        "state",
        "reason",
        "code",
        "seen_at",
        "repeats",
        "held_reason",
        "last_poll_at",
        "gateway_kind",
        "gateway_address",
    ]
    # Which gateway these words came from: api_endpoint is only the scripts' service's
    # address, so the admin says the one in use (never its key or secret).
    readonly_fields = ["gateway_kind", "gateway_address"]
    fields = [
        "gateway_kind",
        "gateway_address",
        "state",
        "reason",
        "code",
        "seen_at",
        "repeats",
        "qr_seen_at",
        "pairing_code",
        "held_reason",
        "held_by",
        "last_poll_at",
        "inbound_gap",
        "inbound_gap_at",
    ]

    @admin.display(description="gateway kind")
    def gateway_kind(self, obj: GatewayState) -> str:
        return whatsapp.kind()

    @admin.display(description="address in use")
    def gateway_address(self, obj: GatewayState) -> str:
        return whatsapp.address()


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "beat_at", "detail"]
    fields = ["name", "beat_at", "detail"]


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    list_display = ["kind", "opened_at", "resolved_at", "summary"]
    list_filter = ["kind", ("opened_at", admin.DateFieldListFilter), "resolved_at"]
    search_fields = ["kind", "summary"]
    fields = ["kind", "opened_at", "resolved_at", "summary"]
