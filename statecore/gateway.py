"""The only code in the project that speaks HTTP to the WhatsApp gateway.

The gateway is the Node.js whatsapp-web.js service described in
shared/GATEWAY.md: ``GET /status``, ``GET /info`` and ``POST /send`` under
``api_endpoint``. This module knows nothing of Django models, so it can be used
from a view, a command, a worker or a plain script.

Every failure is a ``GatewayError`` whose class says what is known about the
message: ``may_have_sent`` is False only when it is certain nothing went out
(safe to retry); True means the outcome is unknown and a person decides,
because whatsapp-web.js gives every send a fresh id and a retry would be a
second message to the customer.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_DELAY_SECONDS = 2
DEFAULT_EXPONENTIAL_BACKOFF = True


class GatewayError(Exception):
    """Any failure talking to the gateway; ``str()`` reads as a sentence."""

    # The safe default: a failure we cannot place is treated as "may have sent".
    may_have_sent: bool = True

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class GatewayUnreachable(GatewayError):
    """No connection could be made (refused, DNS, connect timeout): nothing sent."""

    may_have_sent = False


class GatewayRefused(GatewayError):
    """The gateway answered ``{"success": false, "error": ...}``: nothing sent."""

    may_have_sent = False

    def __init__(self, message: str, *, url: str = "", error: str = "") -> None:
        super().__init__(message, url=url)
        self.error = error


class GatewayTimeout(GatewayError):
    """No answer in time after the request went out: the outcome is unknown."""

    may_have_sent = True


class GatewayServerError(GatewayError):
    """The gateway answered 5xx: the outcome is unknown."""

    may_have_sent = True

    def __init__(self, message: str, *, url: str = "", status_code: int = 0) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code


class GatewayBadAnswer(GatewayError):
    """The answer was not the JSON the protocol promises: the outcome is unknown."""

    may_have_sent = True


class GatewayClient:
    """Talks to one gateway at ``base_url`` (the state's ``api_endpoint``).

    ``transport`` is passed to httpx (tests may hand in their own). Use as a
    context manager, or call ``close()``, to release the connection pool.
    """

    def __init__(
        self,
        base_url: str,
        *,
        status_timeout: float = 5.0,
        send_timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.status_timeout = status_timeout
        self.send_timeout = send_timeout
        self._http = httpx.Client(
            transport=transport,
            # A fresh connection per call: a kept-alive socket the gateway has
            # just closed would fail a /send as "outcome unknown" for nothing.
            limits=httpx.Limits(max_keepalive_connections=0),
            # A proxy from the environment would turn "connection refused"
            # (certainly not sent) into a 502 (outcome unknown).
            trust_env=False,
            follow_redirects=False,
        )

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the underlying HTTP client."""
        self._http.close()

    def status(self) -> bool:
        """Return the gateway's ``isReady``: True when WhatsApp is logged in and connected."""
        url = f"{self.base_url}/status"
        data = self._json_object(self._request("GET", url, timeout=self.status_timeout), url)
        ready = data.get("isReady")
        if not isinstance(ready, bool):
            raise GatewayBadAnswer(
                f"Gateway {url} answered without a true/false isReady: {data!r:.200}", url=url
            )
        return ready

    def info(self) -> dict[str, Any]:
        """Return the logged-in account as the gateway reports it (number, name, platform)."""
        url = f"{self.base_url}/info"
        return self._json_object(self._request("GET", url, timeout=self.status_timeout), url)

    def send(self, number: str, message: str, *, idempotency_key: str) -> str:
        """Send one message and return the gateway's ``messageId``.

        Raises a ``GatewayError``; check its ``may_have_sent`` before retrying.
        The ``Idempotency-Key`` header lets a gateway that honours it drop a
        repeat; the whatsapp-web.js gateway ignores it, so never count on it.
        """
        url = f"{self.base_url}/send"
        response = self._request(
            "POST",
            url,
            timeout=self.send_timeout,
            json={"number": number, "message": message},
            headers={"Idempotency-Key": idempotency_key},
        )
        data = self._json_object(response, url)
        message_id = data.get("messageId")
        if data.get("success") is not True or not isinstance(message_id, str) or not message_id:
            raise GatewayBadAnswer(
                f"Gateway {url} answered HTTP {response.status_code} without success and a messageId: {data!r:.200}",
                url=url,
            )
        return message_id

    def _request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, timeout=timeout, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was ever made, so the request cannot have gone out.
            raise GatewayUnreachable(
                f"Gateway {url} is unreachable: {_describe(exc)}", url=url
            ) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise GatewayUnreachable(
                f"Gateway URL {url!r} is not usable: {_describe(exc)}", url=url
            ) from exc
        except httpx.TimeoutException as exc:
            # Read or write timeout: the gateway may have the request already.
            raise GatewayTimeout(
                f"Gateway {url} did not answer within {timeout:g} s; the outcome is unknown ({_describe(exc)})",
                url=url,
            ) from exc
        except httpx.TransportError as exc:
            # Connection dropped or garbled after the request went (partly) out.
            raise GatewayBadAnswer(
                f"Gateway {url} broke off without a proper answer; the outcome is unknown ({_describe(exc)})",
                url=url,
            ) from exc

    def _json_object(self, response: httpx.Response, url: str) -> dict[str, Any]:
        # A 5xx is "unknown" even when its body says success:false: a gateway's
        # catch-all handler also reports errors thrown after sendMessage ran.
        if response.status_code >= 500:
            raise GatewayServerError(
                f"Gateway {url} answered HTTP {response.status_code}; the outcome is unknown: {_snippet(response)}",
                url=url,
                status_code=response.status_code,
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("success") is False:
            error = str(data.get("error") or "no reason given")
            raise GatewayRefused(f"Gateway {url} refused: {error}", url=url, error=error)
        if not isinstance(data, dict) or not 200 <= response.status_code < 300:
            raise GatewayBadAnswer(
                f"Gateway {url} answered HTTP {response.status_code} with an unexpected body: {_snippet(response)}",
                url=url,
            )
        return data


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip()
    return repr(text[:200]) if text else "(empty body)"


def retry_delays(retry_config: Mapping[str, Any] | None) -> list[float]:
    """Return the waits in seconds before retries 1, 2, ... as GATEWAY.md defines them.

    ``max_retries`` counts attempts in all, so there are ``max_retries - 1``
    waits: ``retry_delay_seconds * 2**k`` before retry k+1 with
    ``exponential_backoff``, ``retry_delay_seconds`` each time without.
    Missing keys default to 3, 2 and True. Raises ValueError on a nonsense value.
    """
    config = retry_config or {}
    attempts = config.get("max_retries", DEFAULT_MAX_RETRIES)
    delay = config.get("retry_delay_seconds", DEFAULT_RETRY_DELAY_SECONDS)
    exponential = config.get("exponential_backoff", DEFAULT_EXPONENTIAL_BACKOFF)
    # bool is an int in Python; "max_retries: true" is a typo, not 1.
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"retry_config.max_retries must be a whole number >= 1, got {attempts!r}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay < math.inf:
        raise ValueError(f"retry_config.retry_delay_seconds must be a number >= 0, got {delay!r}")
    if not isinstance(exponential, bool):
        raise ValueError(
            f"retry_config.exponential_backoff must be true or false, got {exponential!r}"
        )
    return [float(delay * 2**k if exponential else delay) for k in range(attempts - 1)]


@dataclass(frozen=True)
class SendResult:
    """What ``send_with_retries`` achieved: a ``message_id``, or the final ``error``."""

    attempts: int
    message_id: str | None = None
    error: GatewayError | None = None

    @property
    def ok(self) -> bool:
        """True when the gateway confirmed the send with a messageId."""
        return self.error is None

    @property
    def outcome_unknown(self) -> bool:
        """True when the last attempt may have reached WhatsApp: a person decides."""
        return self.error is not None and self.error.may_have_sent


def send_with_retries(
    client: GatewayClient,
    number: str,
    message: str,
    *,
    idempotency_key: str,
    retry_config: Mapping[str, Any] | None,
    sleep: Callable[[float], object] = time.sleep,
) -> SendResult:
    """Send with the retries ``retry_config`` allows; never raises a ``GatewayError``.

    Only failures with ``may_have_sent == False`` are retried, after the waits
    from ``retry_delays``; an outcome-unknown failure ends the loop at once.
    Every attempt carries the same ``idempotency_key``. The result holds the
    ``message_id`` on success, else the last error; ``attempts`` counts the
    /send calls tried either way.
    """
    delays = retry_delays(retry_config)
    attempt = 0
    while True:
        attempt += 1
        try:
            message_id = client.send(number, message, idempotency_key=idempotency_key)
        except GatewayError as exc:
            if exc.may_have_sent or attempt > len(delays):
                return SendResult(attempts=attempt, error=exc)
            wait = delays[attempt - 1]
            log.warning(
                "Send %s attempt %d failed, retrying in %g s: %s",
                idempotency_key,
                attempt,
                wait,
                exc,
            )
            sleep(wait)
        else:
            return SendResult(attempts=attempt, message_id=message_id)
