"""manage.py setup_gateway_webhook: tell the gateway where our webhook is.

WAHA and Evolution are configured over their own API: the gateway's current
configuration is read, our webhook (URL, events, secret) merged into it by the
adapter (`webhook_plan`), the difference printed with every secret masked, and
applied only with --yes. The Cloud API is configured in Meta's app settings:
the command prints what to paste there (and how Meta's settings differ now,
when the API tells). The scripts' service posts no webhooks.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from statecore import clock, whatsapp
from statecore.models import AuditEvent, Source
from statecore.whatsapp.config import EVOLUTION, WAHA

WEBHOOK_PATH = "/gateway/webhook"
MASK = "********"
# Keys whose value is a secret wherever they sit in a gateway's configuration (WAHA's
# `hmac.key`, Evolution's `apikey` and `jwt_key` header, an `Authorization` header...).
SECRET_KEY_WORDS = ("secret", "key", "token", "password", "authorization", "jwt")
ACTOR = "setup_gateway_webhook"


class Command(BaseCommand):
    help = (
        "Point the gateway's webhook at this dashboard (WAHA, Evolution: read its configuration, "
        "merge ours, print the difference, apply it with --yes; Cloud: print what to paste into "
        "Meta's app settings)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            required=True,
            help="The dashboard's public address (https://dashboard.example.com), or the whole "
            f"webhook URL; {WEBHOOK_PATH} is added to a bare address.",
        )
        parser.add_argument(
            "--yes", action="store_true", help="Apply the change (without it: only print it)."
        )

    def handle(self, *args, url: str, yes: bool, **options):
        setup = whatsapp.traits().webhook_setup
        if not setup:
            raise CommandError(
                f"The {whatsapp.kind()} gateway posts no webhooks: it is polled "
                "(receive_messages --loop) and its events go to /gateway/events."
            )
        url = webhook_url(url)
        secret = settings.GATEWAY_WEBHOOK_SECRET
        if not secret:
            raise CommandError(
                "GATEWAY_WEBHOOK_SECRET is not set: without it no webhook is trusted. "
                "Set it (a long random string; for Cloud, the app secret) and run this again."
            )
        if setup == "manual":
            self._instruct(url, secret)
            return
        self._configure(url, secret, apply=yes)

    def _instruct(self, url: str, secret: str) -> None:
        """Cloud: nothing here can set Meta's webhook; say what to paste, and what Meta's
        settings say now when the API tells (a read only: --yes changes nothing)."""
        out = self.stdout
        out.write(whatsapp.module().webhook_instructions(url))
        try:
            with whatsapp.gateway() as gateway:
                current = gateway.webhook_config()
                changes = differences(
                    current, gateway.webhook_plan(current, url=url, secret=secret), secret=secret
                )
        except (whatsapp.GatewayUnavailable, NotImplementedError) as exc:
            out.write(
                self.style.WARNING(f"Meta's current webhook settings could not be read: {exc}")
            )
            return
        if not changes:
            out.write(self.style.SUCCESS(f"Meta already sends the webhooks to {url}."))
            return
        out.write("Meta's settings now, and what they should say:")
        for line in changes:
            out.write(f"  {line}")

    def _configure(self, url: str, secret: str, *, apply: bool) -> None:
        out = self.stdout
        try:
            with whatsapp.gateway() as gateway:
                current = gateway.webhook_config()
                plan = gateway.webhook_plan(current, url=url, secret=secret)
                changes = differences(current, plan, secret=secret)
                out.write(f"The {whatsapp.kind()} gateway at {whatsapp.address()}:")
                if not changes:
                    out.write(self.style.SUCCESS(f"Its webhook already points at {url}."))
                    return
                out.write("Webhook settings to change (everything else is kept):")
                for line in changes:
                    out.write(f"  {line}")
                replaced = current.get("url") if whatsapp.kind() == EVOLUTION else None
                if isinstance(replaced, str) and replaced and replaced != url:
                    out.write(
                        self.style.WARNING(
                            f"Evolution keeps one webhook per instance: {replaced} (another "
                            "tool's, perhaps n8n or Chatwoot) stops getting events."
                        )
                    )
                if whatsapp.kind() == WAHA:
                    out.write(
                        self.style.WARNING(
                            "WAHA restarts a running session when its configuration changes: "
                            "WhatsApp is offline for a few seconds (the login is kept)."
                        )
                    )
                if not apply:
                    out.write("Nothing was changed. Run again with --yes to apply it.")
                    return
                gateway.apply_webhook(plan)
        except whatsapp.GatewayUnavailable as exc:
            raise CommandError(f"The gateway did not answer: {exc}") from exc
        except NotImplementedError as exc:
            raise CommandError(f"The {whatsapp.kind()} adapter cannot do this: {exc}") from exc
        AuditEvent.objects.create(
            action="gateway_webhook",
            actor=ACTOR,
            source=Source.COMMAND,
            note=f"the {whatsapp.kind()} gateway's webhook set to {url}",
            detail={"url": url, "changes": changes},
            created_at=clock.now(),
        )
        out.write(self.style.SUCCESS(f"Applied: the gateway posts its events to {url}."))


def webhook_url(given: str) -> str:
    """The webhook's URL from --url: a bare address gets our path added."""
    parts = urlsplit(given.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CommandError(f"--url: expected an http(s) URL with a host, got {given[:100]!r}")
    if parts.query or parts.fragment:
        raise CommandError("--url: no query or fragment, the gateway posts to the path itself")
    if parts.path in ("", "/"):
        parts = parts._replace(path=WEBHOOK_PATH)
    return parts.geturl()


def differences(current: object, planned: object, *, secret: str) -> list[str]:
    """What changes from `current` to `planned`, one readable line per setting, every
    secret masked (by its key's name, and wherever the webhook secret itself appears)."""
    lines: list[str] = []
    _diff("", current, planned, lines, secret=secret)
    return lines


def _diff(path: str, old: object, new: object, lines: list[str], *, secret: str) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _diff(
                f"{path}.{key}" if path else str(key),
                old.get(key, _MISSING),
                new.get(key, _MISSING),
                lines,
                secret=secret,
            )
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _diff(f"{path}[{index}]", a, b, lines, secret=secret)
        return
    if old == new:
        return
    secret_here = _secret_key(path)
    lines.append(
        f"{path}: {_shown(old, secret=secret, mask=secret_here)} -> "
        f"{_shown(new, secret=secret, mask=secret_here)}"
    )


class _Missing:
    def __repr__(self) -> str:
        return "(not set)"


_MISSING = _Missing()


def _secret_key(path: str) -> bool:
    last = path.rsplit(".", 1)[-1].split("[", 1)[0].lower()
    return any(word in last for word in SECRET_KEY_WORDS)


def _shown(value: object, *, secret: str, mask: bool) -> str:
    if value is _MISSING:
        return "(not set)"
    if mask and value not in (None, ""):
        return MASK
    text = json.dumps(_masked(value, secret), ensure_ascii=False)
    if secret:
        # As JSON writes it: a quote or a backslash in the secret is escaped there.
        text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK)
    return text


def _masked(value: object, secret: str) -> object:
    """`value` with every secret-named key's value masked (a whole new webhook entry)."""
    if isinstance(value, dict):
        return {
            k: MASK if _secret_key(str(k)) and v not in (None, "") else _masked(v, secret)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v, secret) for v in value]
    return value
