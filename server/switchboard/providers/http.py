"""What every HTTP provider adapter shares: pooled clients, server-sent events, and one
classification of provider failures into ``ProviderError``.

Classification (retryable failures let automatic selection fall back before the first output):

| provider answer | reason | retryable | gRPC code when it ends the request |
|---|---|---|---|
| 429 | PROVIDER_RATE_LIMITED (retry-after kept in the message) | yes | UNAVAILABLE |
| 5xx, 529, an `overloaded` error event | PROVIDER_OVERLOADED | yes | UNAVAILABLE |
| 408, connect or read timeout | PROVIDER_TIMEOUT | yes | UNAVAILABLE |
| connection refused or dropped | PROVIDER_UNAVAILABLE | yes | UNAVAILABLE |
| 401, 403 | PROVIDER_AUTH_FAILED (the deployment's key, not the request) | yes | UNAVAILABLE |
| 400 about the context length | PROVIDER_CONTEXT_TOO_LONG | no | INVALID_ARGUMENT |
| 400 about content policy, a safety block | PROVIDER_CONTENT_REFUSED | no | FAILED_PRECONDITION |
| other 4xx | PROVIDER_INVALID_REQUEST | no | INVALID_ARGUMENT |
| an event that does not parse | PROVIDER_BAD_RESPONSE | yes | UNAVAILABLE |

API keys never appear in messages: anything the provider echoes is redacted.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from switchboard.errors import ProviderError

_CONTEXT_HINTS = ("context_length", "context length", "too many tokens", "prompt is too long", "maximum context")
_CONTENT_HINTS = ("content_policy", "content policy", "safety", "content_filter", "moderation")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a provider is and how long to wait for it."""

    base_url: str
    api_key: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0


def make_client(endpoint: Endpoint) -> httpx.AsyncClient:
    """A pooled, long-lived client for one provider."""
    timeout = httpx.Timeout(
        connect=endpoint.connect_timeout_s, read=endpoint.read_timeout_s, write=10.0, pool=endpoint.connect_timeout_s
    )
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=60)
    # HTTP/2 where the provider offers it (negotiated over TLS); HTTP/1.1 keep-alive otherwise.
    return httpx.AsyncClient(base_url=endpoint.base_url, timeout=timeout, limits=limits, http2=True)


def redact(text: str, secret: str) -> str:
    """``text`` without ``secret`` (or any long prefix of it a provider may echo)."""
    if secret:
        for cut in (secret, secret[:12], secret[:8]):
            if len(cut) >= 8:
                text = text.replace(cut, "[redacted]")
    return text[:500]


def from_status(status: int, body: str, retry_after: str | None, provider: str, secret: str) -> ProviderError:
    """The error for an HTTP failure status."""
    detail = redact(_error_message(body), secret)
    lowered = body.lower()
    if status == 429:
        after = f"; retry after {retry_after} s" if retry_after else ""
        return ProviderError(
            "PROVIDER_RATE_LIMITED", f"{provider} rate limited the call{after}: {detail}", retryable=True
        )
    if status >= 500:
        return ProviderError("PROVIDER_OVERLOADED", f"{provider} answered {status}: {detail}", retryable=True)
    if status == 408:
        return ProviderError("PROVIDER_TIMEOUT", f"{provider} timed out the call: {detail}", retryable=True)
    if status in (401, 403):
        return ProviderError("PROVIDER_AUTH_FAILED", f"{provider} refused the configured credentials", retryable=True)
    if any(h in lowered for h in _CONTEXT_HINTS):
        return ProviderError(
            "PROVIDER_CONTEXT_TOO_LONG", f"{provider}: {detail}", retryable=False, code="INVALID_ARGUMENT"
        )
    if any(h in lowered for h in _CONTENT_HINTS):
        return ProviderError(
            "PROVIDER_CONTENT_REFUSED", f"{provider}: {detail}", retryable=False, code="FAILED_PRECONDITION"
        )
    return ProviderError(
        "PROVIDER_INVALID_REQUEST",
        f"{provider} rejected the request ({status}): {detail}",
        retryable=False,
        code="INVALID_ARGUMENT",
    )


def check_status(response: httpx.Response, provider: str, secret: str) -> None:
    """Raise the classified error when a non-streaming answer failed."""
    if response.status_code >= 400:
        raise from_status(response.status_code, response.text, response.headers.get("retry-after"), provider, secret)


def from_exception(exc: httpx.HTTPError, provider: str) -> ProviderError:
    """The error for a transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(
            "PROVIDER_TIMEOUT", f"{provider} did not answer in time ({type(exc).__name__})", retryable=True
        )
    return ProviderError("PROVIDER_UNAVAILABLE", f"{provider} connection failed ({type(exc).__name__})", retryable=True)


def bad_response(provider: str, what: str) -> ProviderError:
    """The error for a stream that does not follow the provider's format."""
    return ProviderError("PROVIDER_BAD_RESPONSE", f"{provider} sent {what}", retryable=True)


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "no details"
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or err)[:300]
    return str(err)[:300]


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """The (event, data) pairs of a server-sent event stream; ``event`` is "" when unnamed."""
    event: str = ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield event, "\n".join(data)


def parse_json(data: str, provider: str) -> Any:
    """One event's JSON payload, or PROVIDER_BAD_RESPONSE."""
    try:
        return json.loads(data)
    except ValueError:
        raise bad_response(provider, "an event that is not JSON") from None
