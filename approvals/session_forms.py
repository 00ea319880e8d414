"""The session page's one form: validation only."""

from __future__ import annotations

from django import forms


class MarkInvalidForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        strip=True,
        help_text="Why the session should not be used (shown on every page until it is valid again).",
    )
