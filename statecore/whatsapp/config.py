"""The gateway's settings, read from the environment and checked once at start-up.

Named `GATEWAY_*` like the existing `GATEWAY_TOKEN`, so they never clash with
the gateways' own variables (WAHA's `WHATSAPP_*`, Evolution's `AUTHENTICATION_*`).
A missing or malformed value stops start-up with the variable's name; nothing
here is ever logged or shown (the key, the secret and the verify token are secrets).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

WWEBJS, WAHA, EVOLUTION, CLOUD = "wwebjs", "waha", "evolution", "cloud"
KINDS = (WWEBJS, WAHA, EVOLUTION, CLOUD)
# The Graph API version the Cloud adapter was written against (its shapes are GATEWAY.md §4).
GRAPH_VERSION = "v23.0"
GRAPH_URL = f"https://graph.facebook.com/{GRAPH_VERSION}"
# Kinds whose webhooks we cannot trust without a secret (check --deploy fails without one).
SIGNED_KINDS = (WAHA, EVOLUTION, CLOUD)


@dataclass(frozen=True)
class GatewaySettings:
    kind: str = WWEBJS
    url: str = ""
    api_key: str = ""
    session: str = "default"
    phone_number_id: str = ""
    webhook_secret: str = ""
    verify_token: str = ""


def read(environ: Mapping[str, str]) -> GatewaySettings:
    """The settings for the configured kind; ImproperlyConfigured names the variable."""

    def get(name: str, default: str = "") -> str:
        return (environ.get(name) or default).strip()

    kind = get("GATEWAY_KIND", WWEBJS) or WWEBJS
    if kind not in KINDS:
        raise ImproperlyConfigured(
            f"GATEWAY_KIND: expected one of {', '.join(KINDS)}, got {kind!r}"
        )
    found = GatewaySettings(
        kind=kind,
        url=get("GATEWAY_URL", GRAPH_URL if kind == CLOUD else "").rstrip("/"),
        api_key=get("GATEWAY_API_KEY"),
        session=get("GATEWAY_SESSION", "default"),
        phone_number_id=get("GATEWAY_PHONE_NUMBER_ID"),
        webhook_secret=get("GATEWAY_WEBHOOK_SECRET"),
        verify_token=get("GATEWAY_VERIFY_TOKEN"),
    )
    if kind == WWEBJS:
        return found  # its address is the state's api_endpoint
    _url("GATEWAY_URL", found.url)
    if not found.api_key:
        what = {
            WAHA: "WAHA's X-Api-Key",
            EVOLUTION: "Evolution's apikey",
            CLOUD: "the access token",
        }
        raise ImproperlyConfigured(f"GATEWAY_API_KEY: required for {kind} ({what[kind]})")
    if any(c.isspace() or ord(c) < 32 for c in found.api_key):
        raise ImproperlyConfigured("GATEWAY_API_KEY: must not contain spaces or control characters")
    if kind in (WAHA, EVOLUTION) and not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", found.session):
        raise ImproperlyConfigured(
            "GATEWAY_SESSION: a session or instance name of letters, digits, '_', '.' or '-'"
        )
    if kind == CLOUD:
        if not re.fullmatch(r"\d{5,30}", found.phone_number_id):
            raise ImproperlyConfigured(
                "GATEWAY_PHONE_NUMBER_ID: required for cloud, the digits of the phone number id"
            )
        if not found.verify_token:
            raise ImproperlyConfigured(
                "GATEWAY_VERIFY_TOKEN: required for cloud (Meta's webhook verification)"
            )
    return found


def _url(name: str, value: str) -> None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not value:
        raise ImproperlyConfigured(
            f"{name}: required (the gateway's base URL, http(s)://host:port)"
        )
    if not ok or any(c.isspace() for c in value):
        raise ImproperlyConfigured(
            f"{name}: expected an http(s) URL with a host, got {value[:100]!r}"
        )


def shown_address(kind: str, url: str, name: str = "", phone_number_id: str = "") -> str:
    """Where a gateway is, as pages, logs and commands say it (never a secret): the URL
    without any user:password, and the session (WAHA), instance (Evolution) or phone number
    id (Cloud). The one wording for the package's `address()` and every client's `address`."""
    parts = urlsplit(url)
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    if kind == CLOUD:
        return f"{bare}/{phone_number_id}"
    if kind == EVOLUTION:
        return f"{bare} (instance {name})"
    return f"{bare} (session {name})"
