"""Forms of the state file upload: validation only (statefile_views imports)."""

from __future__ import annotations

from django import forms

# The confirmation imports the file within one request, which must end well inside the
# web worker's timeout (gunicorn's 30 s): 32 MiB is about 90,000 messages, imported in
# about 15 s on a small server. A larger state is imported with `manage.py import_state`,
# which has no such limit (README, "Importing and exporting").
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{43}$"  # secrets.token_urlsafe(32)

DUPLICATE_CHOICES = [
    ("refuse", "Refuse the file (and list the ids)"),
    ("keep-first", "Keep the first copy, in file order"),
    ("keep-last", "Keep the last copy, in file order"),
]


class UploadForm(forms.Form):
    file = forms.FileField(
        label="State file",
        help_text=(
            f"A whatsapp_state.json, as the scripts write it or as downloaded here; at most "
            f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB (a larger one is imported with "
            f"manage.py import_state)."
        ),
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
                f"The file is {upload.size:,} bytes; the most accepted is {MAX_UPLOAD_BYTES:,}. "
                "Import a larger one with manage.py import_state."
            )
        return upload


class ConfirmForm(forms.Form):
    """Names the upload the page showed: a second tab's upload is not confirmed by this one."""

    token = forms.RegexField(regex=TOKEN_PATTERN, widget=forms.HiddenInput)
