"""What every adapter does over HTTP, written once: calling its gateway, and reading
what a gateway posts to us. Each choice, and why:

- `Client` makes a fresh connection per call (no keep-alive): a kept-alive socket
  the gateway has just closed would turn a send into "maybe sent" for nothing.
- It ignores proxies from the environment (`trust_env=False`): a proxy would turn
  "connection refused" (certainly not sent) into a 502 (maybe sent).
- It follows no redirect: a redirect means GATEWAY_URL is wrong (each adapter says
  so); following it would carry our key header (`X-Api-Key`, `apikey`) to wherever
  it points, and turn a POST into a GET.
- Secrets go in its headers only, never in a URL, an attribute or a sentence
  (httpx shows an Authorization header as [secure]).
- `Client.request` answers whatever status came, and raises GatewayUnavailable
  only when none did: what an answer means is the adapter's to say.
- `Client.send` classifies a send that got no answer. No connection made
  (ConnectError, ConnectTimeout, PoolTimeout): nothing can have left, `not_sent`,
  retry later. An unusable address (InvalidURL, UnsupportedProtocol): `not_sent`,
  our configuration. A text that cannot be encoded: `not_sent`, final. Any other
  timeout or broken connection came after the request may have left: `maybe_sent`,
  never retried by itself (GATEWAY.md: no gateway honours an idempotency key).
- The sentences users read (on /session/, on a reply that did not go) name the
  gateway as its adapter does ("the gateway", "Evolution", "the Cloud API"): `Names`.
- Reading an answer: `json_of`, `json_at`, `snippet`, `describe`. Reading a webhook:
  `header` (any letter case: each gateway's library writes names its own way) and
  `without_secrets` (what may be stored of a body). `iso_z`: the time format of the
  gateways' JSON and of the stored `receivedAt`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from .model import GatewayUnavailable, Next, SendOutcome


@dataclass(frozen=True)
class Names:
    """How an adapter's sentences name its gateway and the setting that says where it is."""

    gateway: str = "the gateway"  # "... is unreachable", "... did not answer within 30 s"
    address: str = "the gateway address"  # "... 'ftp://x' is not usable"


GATEWAY = Names()


class Client:
    """One gateway's HTTP client (the module's docstring says why it is set up so)."""

    def __init__(
        self,
        *,
        names: Names = GATEWAY,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.names = names
        self._http = httpx.Client(
            transport=transport,
            headers=headers,
            limits=httpx.Limits(max_keepalive_connections=0),
            trust_env=False,
            follow_redirects=False,
        )

    @property
    def headers(self) -> httpx.Headers:
        return self._http.headers

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        """The gateway's answer, whatever its status; GatewayUnavailable when none came."""
        try:
            return self._http.request(method, url, timeout=timeout, **kwargs)
        # First: UnsupportedProtocol is an HTTPError too, but it is our setting, not the gateway.
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:
            raise GatewayUnavailable(f"{self.names.address} {url!r} is not usable ({exc})") from exc
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"{self.names.gateway} at {url} did not answer ({describe(exc)})"
            ) from exc

    def send(
        self,
        url: str,
        body: object,
        *,
        timeout: float,
        outcome: Callable[[httpx.Response], SendOutcome],
    ) -> SendOutcome:
        """POST one send; never raises. An answer is classified by the adapter's
        `outcome`; without one, only a request that cannot have left is `not_sent`."""
        names = self.names
        try:
            response = self._http.post(url, json=body, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the request cannot have gone out.
            return SendOutcome.not_sent(
                Next.RETRY, f"{names.gateway} is unreachable ({describe(exc)})"
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return SendOutcome.not_sent(
                Next.CONFIG, f"{names.address} {url!r} is not usable ({describe(exc)})"
            )
        except httpx.TimeoutException as exc:
            # Connected, so the request may have reached WhatsApp before the wait ran out.
            return SendOutcome.maybe_sent(
                f"{names.gateway} did not answer within {timeout:g} s ({describe(exc)})"
            )
        except httpx.TransportError as exc:
            return SendOutcome.maybe_sent(
                f"{names.gateway} broke off without an answer ({describe(exc)})"
            )
        except ValueError as exc:
            # The body could not be encoded (a lone surrogate): nothing left this process.
            return SendOutcome.not_sent(Next.FINAL, f"the text cannot be sent ({describe(exc)})")
        return outcome(response)


class Adapter:
    """What every adapter's client shares: a `with` block closes its HTTP client."""

    _http: Client

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()


# --- reading an answer ----------------------------------------------------------------


def json_of(response: httpx.Response) -> object:
    """The answer's JSON, or None when it is not JSON (an HTML error page, an empty body)."""
    try:
        return response.json()
    except ValueError:
        return None


def json_at(value: object, *keys: str) -> object:
    """`value[k1][k2]...`, or None where a level is not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def snippet(response: httpx.Response) -> str:
    """The start of an answer's body, quoted, for a sentence."""
    text = response.text.strip()
    return repr(text[:200]) if text else "(empty body)"


def describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- reading what a gateway posts -------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value whatever its letter case (HTTP's names are case-insensitive and
    each gateway's library writes them its own way); None when absent."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def without_secrets(value: Any, keys: Collection[str]) -> Any:
    """`value` with every key named in `keys` (lower case) dropped, at any depth: what
    is stored of a body never holds a token the gateway put in it."""
    if isinstance(value, dict):
        return {k: without_secrets(v, keys) for k, v in value.items() if str(k).lower() not in keys}
    if isinstance(value, list):
        return [without_secrets(v, keys) for v in value]
    return value


def iso_z(moment: datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, a Z (the old watcher's
    `receivedAt`, and the times Evolution's queries take)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
