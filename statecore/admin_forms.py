"""Forms of the admin site: validation only; admin.py saves through the core.

Two things can be edited by hand: a message's extra keys (everything of the
stored object but the keys the dashboard keeps in columns, `id` and `status`
among them) and the four settings of the state root. Both are shown as JSON
text and checked as strictly as an imported file (statefile.parse), and both carry
what the page showed (`seen`), so a change made by someone else meanwhile is
refused instead of silently overwritten.
"""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from .lifecycle import KNOWN_MESSAGE_KEYS, extra_keys, with_extra_keys
from .models import Message, StateRoot
from .rootstate import DEFAULT_API_ENDPOINT, part
from .statefile.columns import dumps_compact
from .statefile.rules import MAX_URL_LENGTH, gateway_url_problem, validate_setting

SETTING_KEYS = ("human_in_the_loop", "api_endpoint", "watcher_config", "retry_config")


def pretty(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValidationError(f"{key}: the same key appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str):
    raise ValidationError(f"{name} is not a JSON number")


def parse_json(text: str, *, what: str) -> object:
    """Strict JSON (no NaN/Infinity, no key twice), or ValidationError naming the line."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ValidationError(f"{what} is nested too deeply") from None


def _problems_text(problems: list[tuple[str, str]]) -> list[str]:
    return [f"{place}: {problem}" for place, problem in problems]


class MessageExtraForm(forms.ModelForm):
    """The extra keys of one message as a JSON object. No model field is on the
    form, so `status` (or any column) cannot be changed by posting it."""

    extra_keys = forms.CharField(
        label="Extra keys",
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "class": "vLargeTextField"}),
        help_text=(
            "A JSON object of the keys the dashboard does not use itself (e.g. error, meta). "
            f"These cannot be set here: {', '.join(KNOWN_MESSAGE_KEYS)}; "
            "status changes through the actions of the message list."
        ),
    )
    seen = forms.CharField(widget=forms.HiddenInput)

    class Meta:
        model = Message
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        current = pretty(extra_keys(self.instance.data)) if self.instance.pk else "{}"
        self.initial.update(extra_keys=current, seen=current)

    def clean_extra_keys(self) -> dict:
        value = parse_json(self.cleaned_data["extra_keys"], what="Extra keys")
        if not isinstance(value, dict):
            raise ValidationError("Extra keys must be a JSON object: {...}")
        refused = [key for key in value if key in KNOWN_MESSAGE_KEYS]
        if refused:
            raise ValidationError(
                f"{', '.join(refused)}: kept by the dashboard, not an extra key; "
                "status changes only through the actions"
            )
        merged = with_extra_keys(self.instance.data, value)
        # The same checks as an imported file (NUL characters, nesting, huge numbers).
        status = self.instance.status
        prefix = f"messages.{status}[0]"
        problems = validate_setting("messages", {status: [merged]})
        if problems:
            raise ValidationError(
                _problems_text(
                    [(place.removeprefix(prefix).lstrip("."), p) for place, p in problems]
                )
            )
        return value

    def clean_seen(self) -> dict:
        try:
            return json.loads(self.cleaned_data["seen"])
        except ValueError:
            raise ValidationError("the page was not sent whole; open the message again") from None


def check_api_endpoint(value: str) -> None:
    """The rule set_config applies too (statefile.rules): one rule for every path."""
    problem = gateway_url_problem(value)
    if problem:
        raise ValidationError(f"api_endpoint: {problem}")


def displayed(key: str, stored: object) -> object:
    """What the settings form shows for a stored value: the effective value
    when the key is missing (or not of its type)."""
    if key == "human_in_the_loop":
        return stored is not False
    if key == "api_endpoint":
        return stored if isinstance(stored, str) and stored else DEFAULT_API_ENDPOINT
    return stored if isinstance(stored, dict) else {}


class SettingsForm(forms.ModelForm):
    """The four settings a person may change; each checked with the file's rules."""

    human_in_the_loop = forms.BooleanField(
        required=False,
        label="Human in the loop",
        help_text="On: drafted replies wait for a reviewer. Off: they are approved at once.",
    )
    api_endpoint = forms.CharField(
        label="Gateway URL (api_endpoint)",
        max_length=MAX_URL_LENGTH,
        validators=[check_api_endpoint],
        widget=forms.TextInput(attrs={"class": "vURLField"}),
    )
    watcher_config = forms.CharField(
        label="Watcher config",
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60}),
        help_text="poll_interval_seconds and max_messages_per_poll: positive whole numbers; "
        "auto_reply_enabled, process_group_messages: true/false; other keys are kept.",
    )
    retry_config = forms.CharField(
        label="Retry config",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text="max_retries: a positive whole number; retry_delay_seconds: a number of 0 "
        "or more; exponential_backoff: true/false; other keys are kept.",
    )
    seen = forms.CharField(widget=forms.HiddenInput)

    class Meta:
        model = StateRoot
        fields: list[str] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stored = self.stored_values()
        shown = {key: displayed(key, value) for key, value in stored.items()}
        # `initial`, not the fields' own: the admin puts these names in the
        # ModelForm's fields, which would fill `initial` with the raw JSON columns.
        self.initial.update(
            human_in_the_loop=shown["human_in_the_loop"],
            api_endpoint=shown["api_endpoint"],
            watcher_config=pretty(shown["watcher_config"]),
            retry_config=pretty(shown["retry_config"]),
            seen=dumps_compact(stored),
        )

    def stored_values(self) -> dict:
        """The stored value of each setting (None: the file has no such key)."""
        return {key: part(self.instance, key) for key in SETTING_KEYS}

    def _clean_object(self, key: str) -> dict:
        value = parse_json(self.cleaned_data[key], what=key)
        if not isinstance(value, dict):
            raise ValidationError(f"{key}: expected a JSON object {{...}}")
        problems = validate_setting(key, value)
        if problems:
            raise ValidationError(_problems_text(problems))
        return value

    def clean_watcher_config(self) -> dict:
        return self._clean_object("watcher_config")

    def clean_retry_config(self) -> dict:
        return self._clean_object("retry_config")

    def clean_seen(self) -> dict:
        try:
            seen = json.loads(self.cleaned_data["seen"])
        except ValueError:
            seen = None
        if not isinstance(seen, dict) or set(seen) != set(SETTING_KEYS):
            raise ValidationError("the page was not sent whole; open the settings again")
        return seen

    def changed_settings(self) -> dict:
        """The settings whose value differs from what the page showed; a key the
        file lacks stays missing unless its shown default was changed."""
        seen = self.cleaned_data["seen"]
        return {
            key: self.cleaned_data[key]
            for key in SETTING_KEYS
            if self.cleaned_data[key] != displayed(key, seen[key])
        }
