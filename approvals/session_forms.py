"""The session page's forms: validation only."""

from __future__ import annotations

from django import forms

from statecore.session_actions import SessionActionRefused, phone_digits


class MarkInvalidForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        help_text="Why the session should not be used (shown on every page until it is valid again).",
    )


class PairForm(forms.Form):
    """ "Link with phone number": the business's own number, with its country code."""

    number = forms.CharField(
        max_length=30,
        strip=True,
        help_text="The WhatsApp number of the phone to link, with its country code, e.g. +92 300 1234567.",
    )

    def clean_number(self) -> str:
        # One rule for the page and the Python verb: statecore.session_actions decides.
        try:
            return phone_digits(self.cleaned_data["number"])
        except SessionActionRefused as exc:
            raise forms.ValidationError(str(exc), code=exc.code) from None
