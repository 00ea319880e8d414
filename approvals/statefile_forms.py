"""Forms of the state file upload: validation only (statefile_views imports)."""

from __future__ import annotations

from django import forms

# A state of 100,000 messages is about 40 MB; far beyond that is a wrong file.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{43}$"  # secrets.token_urlsafe(32)

DUPLICATE_CHOICES = [
    ("refuse", "Refuse the file (and list the ids)"),
    ("keep-first", "Keep the first copy, in file order"),
    ("keep-last", "Keep the last copy, in file order"),
]


class UploadForm(forms.Form):
    file = forms.FileField(
        label="State file",
        help_text="A whatsapp_state.json, as the scripts write it or as downloaded here.",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )
    on_duplicate = forms.ChoiceField(
        label="An id found in two lists",
        choices=DUPLICATE_CHOICES,
        initial="refuse",
        widget=forms.RadioSelect,
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the most accepted is {MAX_UPLOAD_BYTES:,}."
            )
        return upload


class ConfirmForm(forms.Form):
    """Names the upload the page showed: a second tab's upload is not confirmed by this one."""

    token = forms.RegexField(regex=TOKEN_PATTERN, widget=forms.HiddenInput)
