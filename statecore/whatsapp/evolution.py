"""Placeholder: the evolution adapter is being written (issue 11)."""

from __future__ import annotations

from .model import Traits

KIND = "evolution"
TRAITS = Traits(has_webhooks=True)


def cannot_reach(address: str) -> str:
    return ""


def client(settings: object, *, status_timeout: float, send_timeout: float):
    raise NotImplementedError("evolution")
