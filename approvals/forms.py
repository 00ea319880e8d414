"""The reviewer pages' forms: validation only; the views call the lifecycle.

The filter forms render their own inputs; the action forms' inputs are written out
in the templates (a card's markup is made 50 times a page), which take each length
limit from `LIMITS`, the same constants the fields check."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from statecore import window
from statecore.ids import db_id
from statecore.lifecycle import MAX_REPLY_LENGTH
from statecore.models import HANDLED, Mode

# A reason or a note a person types (reject, confirm sent, put back in the queue).
NOTE_LENGTH = 1000
SEARCH_LENGTH = 200
# A user name, as django.contrib.auth stores it.
USERNAME_LENGTH = 150
# What the session page's forms take.
SESSION_REASON_LENGTH = 500
PHONE_NUMBER_LENGTH = 30
# Every limit an input of a template states (`maxlength="{{ limits.note }}"`).
LIMITS = {
    "note": NOTE_LENGTH,
    "reply": MAX_REPLY_LENGTH,
    "session_reason": SESSION_REASON_LENGTH,
    "phone_number": PHONE_NUMBER_LENGTH,
}


def _search_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=SEARCH_LENGTH,
        error_messages={
            "max_length": "A search can be at most %(limit_value)d characters (this one has "
            "%(show_value)d): nothing is shown until it is shorter."
        },
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Text, name or number", "dir": "auto"}
        ),
    )


class _FilterForm(forms.Form):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def values(self) -> dict:
        """The valid filters (an invalid field is left out rather than failing the page)."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}

    @property
    def search_refused(self) -> bool:
        """A search the form refused (too long, a NUL): the page shows its error and no
        results, never the unsearched list, which "All on this page" would then act on."""
        self.is_valid()
        return "q" in self.errors


class QueueFilterForm(_FilterForm):
    q = _search_field("Search")
    kind = forms.ChoiceField(
        label="Chat",
        required=False,
        choices=[("", "Group and direct"), ("direct", "Direct only"), ("group", "Groups only")],
    )
    waited = forms.IntegerField(
        label="Waiting over (min)",
        required=False,
        min_value=0,
        max_value=60 * 24 * 365,
        widget=forms.NumberInput(attrs={"inputmode": "numeric", "placeholder": "0"}),
    )


class EditForm(forms.Form):
    text = forms.CharField(
        label="Reply",
        strip=False,
        error_messages={"required": "The reply cannot be empty."},
    )

    def clean_text(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; the draft used LF.
        text = self.cleaned_data["text"].replace("\r\n", "\n")
        if not text.strip():
            raise ValidationError("The reply cannot be empty.", code="empty")
        if len(text) > MAX_REPLY_LENGTH:
            raise ValidationError(
                f"The reply can be at most {MAX_REPLY_LENGTH:,} characters; it has {len(text):,}.",
                code="too_long",
            )
        too_long = window.too_long(text)  # the gateway's own limit (Cloud: 4,096)
        if too_long:
            raise ValidationError(f"{too_long[0].upper()}{too_long[1:]}.", code="too_long")
        return text


class RejectForm(forms.Form):
    reason = forms.CharField(label="Reason (optional)", required=False, max_length=NOTE_LENGTH)


class ApproveForm(forms.Form):
    # Set by the "Approve anyway" button of a draft whose customer wrote again.
    confirm_stale = forms.BooleanField(required=False)


class IdListField(forms.Field):
    """Primary keys sent as repeated values (`ids=1&ids=2`)."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "required": "Select at least one reply.",
        "invalid": "Unknown selection.",
    }

    def to_python(self, value) -> list[int]:
        if not value:
            return []
        if not isinstance(value, list | tuple):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        ids = [db_id(v) if isinstance(v, str) else None for v in value]
        if None in ids:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return list(dict.fromkeys(ids))


class BulkForm(forms.Form):
    ids = IdListField()
    action = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(required=False, max_length=NOTE_LENGTH)
    confirm_stale = forms.BooleanField(required=False)


class HistoryFilterForm(_FilterForm):
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status")] + [(s.value, s.label) for s in HANDLED],
    )
    reviewer = forms.CharField(
        label="Reviewer",
        required=False,
        max_length=USERNAME_LENGTH,
        widget=forms.TextInput(attrs={"placeholder": "User name"}),
    )
    q = _search_field("Text")


class ConfirmSentForm(forms.Form):
    note = forms.CharField(
        label="How do you know it was sent?",
        max_length=NOTE_LENGTH,
        error_messages={"required": "Say how you confirmed it was sent."},
    )


class ReopenForm(forms.Form):
    note = forms.CharField(label="Why (optional)", required=False, max_length=NOTE_LENGTH)


class ChatModeForm(forms.Form):
    """A chat's mode, from the card's or the history's menu."""

    mode = forms.ChoiceField(choices=Mode.choices)
