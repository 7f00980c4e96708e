"""What every HTTP provider adapter shares: pooled clients, server-sent events, and one
classification of provider failures into ``ProviderError``.

``Client`` is one bounded pool of HTTP/1.1 keep-alive connections per provider (aiohttp). A
streamed body is read to its end when the block that reads it ends (a short rest, such as what
follows ``data: [DONE]``, is drained) so the connection goes back to the pool; after a failure or
a cancellation the connection is closed, which also ends the upstream request.

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

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from switchboard.errors import ProviderError

_CONTEXT_HINTS = ("context_length", "context length", "too many tokens", "prompt is too long", "maximum context")
_CONTENT_HINTS = ("content_policy", "content policy", "safety", "content_filter", "moderation")
_DRAIN_LIMIT = 64 * 1024
"""The most bytes read past the point where an adapter stopped reading (the rest of an SSE stream
after ``[DONE]``, say) to give the connection back to the pool; a longer rest closes it."""
_DRAIN_TIMEOUT_S = 0.5
"""How long that rest may take to arrive before the connection is closed instead."""

Files = Sequence[tuple[str, tuple[str, bytes, str]]]
"""Multipart file fields: (field name, (file name, bytes, content type))."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a provider is and how long to wait for it."""

    base_url: str
    api_key: str = field(default="", repr=False)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_connections: int = 512
    """The pool's bound: at most this many connections to the provider at once. A call beyond it
    waits for a free one, within the connect timeout."""


class HttpError(Exception):
    """Raised by ``Client`` when the transport fails: the connection could not be made or dropped,
    or the answer was cut short."""


class HttpTimeoutError(HttpError):
    """Raised by ``Client`` when connecting, or waiting for the next bytes of an answer, took longer
    than the endpoint allows."""


_TRANSPORT = (aiohttp.ClientError, TimeoutError)


def _wrap(exc: BaseException) -> HttpError:
    """Our error for one of aiohttp's (its read and connect timeouts are ``TimeoutError`` too)."""
    if isinstance(exc, TimeoutError):
        return HttpTimeoutError(type(exc).__name__)
    return HttpError(type(exc).__name__)


class Response:
    """A buffered answer: status, headers and the whole body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: CIMultiDictProxy[str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """The body decoded as UTF-8, undecodable bytes replaced."""
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        return json.loads(self.content)


class StreamResponse:
    """An answer being read: status and headers at once, the body as it arrives."""

    __slots__ = ("_raw", "headers", "status_code")

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers = raw.headers

    async def aread(self) -> bytes:
        """The rest of the body."""
        try:
            return await self._raw.read()
        except _TRANSPORT as exc:
            raise _wrap(exc) from None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        content = self._raw.content
        try:
            while chunk := await content.readany():
                yield chunk
        except _TRANSPORT as exc:
            raise _wrap(exc) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines, without their ``\\n``, ``\\r\\n`` or ``\\r`` endings."""
        rest = b""
        async for chunk in self.aiter_bytes():
            lines, rest = split_lines(rest + chunk)
            for line in lines:
                yield line.decode(errors="replace")
        if rest:
            yield rest.removesuffix(b"\r").decode(errors="replace")

    async def finish(self, *, failed: bool) -> None:
        """Give the connection back to the pool once the body has ended (reading a short rest
        first), or close it: after a failure or cancellation, or when the rest is long or slow."""
        raw = self._raw
        if failed:
            raw.close()
            return
        content = raw.content
        if not content.at_eof():
            try:
                async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                    left = _DRAIN_LIMIT
                    while left > 0 and (chunk := await content.readany()):
                        left -= len(chunk)
            except _TRANSPORT:
                raw.close()
                return
            if not content.at_eof():
                raw.close()
                return
        raw.release()


def split_lines(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of ``buffer`` (``\\n``, ``\\r\\n`` or ``\\r`` endings, not kept) and the
    incomplete rest. A ``\\r`` at the very end stays in the rest: its ``\\n`` may follow."""
    if b"\r" in buffer:
        held = b"\r" if buffer.endswith(b"\r") else b""
        buffer = buffer[: len(buffer) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
    lines = buffer.split(b"\n")
    return lines[:-1], lines[-1]


class Client:
    """A pooled, long-lived HTTP/1.1 client for one provider (aiohttp underneath).

    Paths are joined to the endpoint's base URL; absolute URLs are used as given. Every streamed
    body is read to its end or its connection closed, so connections go back to the pool.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._base = endpoint.base_url.rstrip("/")
        self._max_connections = endpoint.max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=endpoint.connect_timeout_s,  # a free pooled connection or a new one
            sock_connect=endpoint.connect_timeout_s,
            sock_read=endpoint.read_timeout_s,  # between any two reads of the answer
        )
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        """The session, made on first use (it must be made on the running event loop)."""
        if self._session is None:
            if self._closed:
                raise HttpError("the client is closed")
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self._base + path

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> AsyncIterator[StreamResponse]:
        """Send a request and read its answer as it arrives; on leaving the block the connection
        goes back to the pool, or is closed when the block failed or was cancelled."""
        body, hdrs = _body(headers, json, None, None)
        try:
            raw = await self._open().request(method, self._url(path), headers=hdrs, data=body)
        except _TRANSPORT as exc:
            raise _wrap(exc) from None
        response = StreamResponse(raw)
        failed = True
        try:
            yield response
            failed = False
        finally:
            await response.finish(failed=failed)

    async def _send(
        self, method: str, path: str, payload: tuple[Any, dict[str, str]], total_s: float | None
    ) -> Response:
        """Send a request and read its whole answer; ``total_s`` bounds the whole call."""
        limit = self._timeout if total_s is None else aiohttp.ClientTimeout(total=total_s)
        body, headers = payload
        try:
            async with self._open().request(method, self._url(path), headers=headers, data=body, timeout=limit) as raw:
                return Response(raw.status, raw.headers, await raw.read())
        except _TRANSPORT as exc:
            raise _wrap(exc) from None

    async def get(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call bound, as callers know it
    ) -> Response:
        """``GET path``, buffered."""
        return await self._send("GET", path, _body(headers, None, None, None), timeout)

    async def post(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Files | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call bound, as callers know it
    ) -> Response:
        """``POST path`` with a JSON body, or a form (``data``; multipart with ``files``), buffered."""
        return await self._send("POST", path, _body(headers, json, data, files), timeout)

    async def put(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-call bound, as callers know it
    ) -> Response:
        """``PUT path``, buffered."""
        return await self._send("PUT", path, _body(headers, json, None, None), timeout)

    @property
    def is_closed(self) -> bool:
        """True once ``aclose()`` has run."""
        return self._closed

    async def aclose(self) -> None:
        """Close every pooled connection; later calls fail."""
        self._closed = True
        if self._session is not None:
            await self._session.close()


def _body(
    headers: Mapping[str, str] | None, body: Any, data: Mapping[str, str] | None, files: Files | None
) -> tuple[Any, dict[str, str]]:
    """The payload aiohttp sends and the headers that go with it."""
    hdrs = dict(headers) if headers else {}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        return json.dumps(body, separators=(",", ":")).encode(), hdrs
    if files:
        form = aiohttp.FormData()
        for key, value in (data or {}).items():
            form.add_field(key, value)
        for key, (filename, content, content_type) in files:
            form.add_field(key, content, filename=filename, content_type=content_type)
        return form, hdrs
    if data is not None:
        return aiohttp.FormData(dict(data)), hdrs
    return None, hdrs


def make_client(endpoint: Endpoint) -> Client:
    """A pooled, long-lived client for one provider: HTTP/1.1 with keep-alive, about a sixth of the
    CPU per streamed call of the httpx client it replaces (see ``bench/http_client.py``)."""
    return Client(endpoint)


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


def check_status(response: Response, provider: str, secret: str) -> None:
    """Raise the classified error when a non-streaming answer failed."""
    if response.status_code >= 400:
        raise from_status(response.status_code, response.text, response.headers.get("retry-after"), provider, secret)


def from_exception(exc: HttpError, provider: str) -> ProviderError:
    """The error for a transport failure."""
    if isinstance(exc, HttpTimeoutError):
        return ProviderError("PROVIDER_TIMEOUT", f"{provider} did not answer in time ({exc})", retryable=True)
    return ProviderError("PROVIDER_UNAVAILABLE", f"{provider} connection failed ({exc})", retryable=True)


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


async def sse(response: StreamResponse) -> AsyncIterator[tuple[str, str]]:
    """The (event, data) pairs of a server-sent event stream; ``event`` is "" when unnamed.
    Lines are split and matched as bytes; only each event's data is decoded."""
    event = ""
    data: list[bytes] = []
    rest = b""
    async for chunk in response.aiter_bytes():
        lines, rest = split_lines(rest + chunk if rest else chunk)
        for line in lines:
            if not line:
                if data:
                    yield event, (data[0] if len(data) == 1 else b"\n".join(data)).decode(errors="replace")
                event, data = "", []
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode(errors="replace")
            # comments (":...") and other fields (id, retry) are not used
    if rest.startswith(b"data:"):
        data.append(rest[6:] if rest[5:6] == b" " else rest[5:])
    if data:
        yield event, b"\n".join(data).decode(errors="replace")


def parse_json(data: str, provider: str) -> Any:
    """One event's JSON payload, or PROVIDER_BAD_RESPONSE."""
    try:
        return json.loads(data)
    except ValueError:
        raise bad_response(provider, "an event that is not JSON") from None
