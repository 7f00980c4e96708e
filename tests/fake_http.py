"""What the text providers' fakes share: a real HTTP server on a free loopback port that records
each request, checks its body the way the real API does (unknown or misplaced fields, missing
required fields, wrong types) and answers with a server-sent event stream.

A provider's fake subclasses ``LoopbackFake`` with its path, its request rules (``check``), its
error body and its stream (``frames``). Set ``script`` to replay other frames, or ``reply`` to
answer with a fixed status and body."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

Check = Callable[[Any, str], None]


class Invalid(Exception):
    """The request body breaks one of the API's rules; the message names the field."""


def sse(data: Any, event: str = "") -> bytes:
    """One server-sent event: an optional `event:` line and a JSON (or literal) `data:` line."""
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


def obj(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    """An object with these required and optional fields and no others."""
    allowed = {**required, **(optional or {})}

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(f"{path}: expected an object")
        for key in value:
            if key not in allowed:
                raise Invalid(f"{path}.{key}: unknown field")
        for key in required:
            if key not in value:
                raise Invalid(f"{path}.{key}: required")
        for key, sub in allowed.items():
            if key in value:
                sub(value[key], f"{path}.{key}")

    return check


def of(*types: type) -> Check:
    """A value of one of these JSON types (a bool is not an int)."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) and bool not in types:
            raise Invalid(f"{path}: expected {'/'.join(t.__name__ for t in types)}")
        if not isinstance(value, types):
            raise Invalid(f"{path}: expected {'/'.join(t.__name__ for t in types)}")

    return check


def const(*values: Any) -> Check:
    """One of these exact values."""

    def check(value: Any, path: str) -> None:
        if value not in values:
            raise Invalid(f"{path}: {value!r} is not one of {list(values)}")

    return check


def items(each: Check, *, non_empty: bool = False) -> Check:
    """A list whose items all pass ``each``."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise Invalid(f"{path}: expected a list")
        if non_empty and not value:
            raise Invalid(f"{path}: must not be empty")
        for i, item in enumerate(value):
            each(item, f"{path}[{i}]")

    return check


def by_type(variants: dict[str, Check], key: str = "type") -> Check:
    """An object whose ``key`` field picks the rules it follows."""

    def check(value: Any, path: str) -> None:
        if not isinstance(value, dict) or value.get(key) not in variants:
            raise Invalid(f"{path}.{key}: expected one of {sorted(variants)}")
        variants[value[key]](value, path)

    return check


def base64_data(value: Any, path: str) -> None:
    """Standard base64 text."""
    of(str)(value, path)
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{path}: not base64") from None


_DATA_URI = re.compile(r"^data:[a-z]+/[a-z0-9.+-]+;base64,")


def data_or_url(value: Any, path: str) -> None:
    """A data: URI with base64 bytes, or an http(s) URL."""
    of(str)(value, path)
    if value.startswith(("http://", "https://")):
        return
    if not _DATA_URI.match(value):
        raise Invalid(f"{path}: expected an http(s) URL or a base64 data: URI")
    base64_data(value.split(",", 1)[1], path)


def any_json(value: Any, path: str) -> None:
    """Any JSON value (a JSON Schema, a function's arguments)."""


class LoopbackFake:
    """A provider's HTTP API on 127.0.0.1, recording every request."""

    path = "/"

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.rejected: list[str] = []
        self.script: list[bytes] | None = None
        self.reply: tuple[int, Any] | None = None
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def body(self) -> Any:
        """The body of the last request."""
        return self.requests[-1][2]

    def check(self, path: str, headers: dict[str, str], body: Any) -> None:
        """Raise ``Invalid`` when the request breaks the API's rules."""
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """The API's documented error body."""
        raise NotImplementedError

    def frames(self, body: Any) -> list[bytes]:
        """The stream answering a valid request."""
        raise NotImplementedError

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        headers = dict(request.headers)
        self.requests.append((request.path_qs, headers, body))
        try:
            self.check(request.path_qs, headers, body)
        except Invalid as exc:
            self.rejected.append(str(exc))
            return web.json_response(self.error_body(400, str(exc)), status=400)
        if self.reply is not None:
            status, payload = self.reply
            return web.json_response(payload, status=status)
        frames = self.script if self.script is not None else self.frames(body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            for frame in frames:
                await resp.write(frame)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp
