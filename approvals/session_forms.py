"""The session page's forms: validation only (session.html writes their inputs, with
the limits of forms.LIMITS)."""

from __future__ import annotations

from django import forms

from statecore.session_actions import SessionActionRefused, phone_digits

from .forms import PHONE_NUMBER_LENGTH, SESSION_REASON_LENGTH


class MarkInvalidForm(forms.Form):
    reason = forms.CharField(max_length=SESSION_REASON_LENGTH, strip=True)


class PairForm(forms.Form):
    """ "Link with phone number": the business's own number, with its country code."""

    number = forms.CharField(max_length=PHONE_NUMBER_LENGTH, strip=True)

    def clean_number(self) -> str:
        # One rule for the page and the Python verb: statecore.session_actions decides.
        try:
            return phone_digits(self.cleaned_data["number"])
        except SessionActionRefused as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None
