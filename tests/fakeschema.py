"""What the strict provider fakes share: request-body checks (the fields an endpoint requires, the
ones it accepts, and the type of each, so a fake rejects what the real API rejects: unknown or
misplaced fields, missing required ones, wrong types) and serving an app on a loopback port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Check = Callable[[Any], bool]


def string(value: Any) -> bool:
    """A non-empty string."""
    return isinstance(value, str) and bool(value)


def boolean(value: Any) -> bool:
    """A JSON boolean."""
    return isinstance(value, bool)


def integer(value: Any) -> bool:
    """A JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def file_url(value: Any) -> bool:
    """A URL a provider can fetch a file from: http(s) or a base64 data URI."""
    return isinstance(value, str) and (
        value.startswith(("https://", "http://")) or (value.startswith("data:") and ";base64," in value)
    )


def url_list(value: Any) -> bool:
    """A non-empty list of file URLs."""
    return isinstance(value, list) and bool(value) and all(file_url(v) for v in value)


def one_of(*allowed: Any) -> Check:
    """One of ``allowed``."""
    return lambda value: value in allowed


def url_object(value: Any) -> bool:
    """``{"url": <file URL>}``, optionally with ``"type": "image_url"`` (xAI's image reference)."""
    return (
        isinstance(value, dict)
        and file_url(value.get("url"))
        and set(value) <= {"url", "type"}
        and value.get("type", "image_url") == "image_url"
    )


def url_objects(value: Any) -> bool:
    """A non-empty list of ``{"url": ...}`` objects."""
    return isinstance(value, list) and bool(value) and all(url_object(v) for v in value)


@dataclass(frozen=True)
class Schema:
    """One endpoint's body: required fields, optional ones, and a check per field (a string when
    not listed). ``one_required`` names fields of which at least one must be present;
    ``exclusive`` names fields that cannot come together."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    checks: Mapping[str, Check] = field(default_factory=dict)
    one_required: frozenset[str] = frozenset()
    exclusive: frozenset[str] = frozenset()

    def problems(self, body: Any) -> list[str]:
        """What is wrong with ``body`` (empty when the real API would take it)."""
        if not isinstance(body, dict):
            return ["the body must be a JSON object"]
        out = [f"{name}: field required" for name in sorted(self.required - set(body))]
        out += [f"{name}: extra inputs are not permitted" for name in sorted(set(body) - self.required - self.optional)]
        for name, value in body.items():
            if name in self.required | self.optional and not self.checks.get(name, string)(value):
                out.append(f"{name}: invalid value {str(value)[:60]!r}")
        if self.one_required and not self.one_required & set(body):
            out.append(f"one of {sorted(self.one_required)} is required")
        if len(self.exclusive & set(body)) > 1:
            out.append(f"{sorted(self.exclusive & set(body))} cannot be given together")
        return out


def schema(
    required: str = "",
    optional: str = "",
    *,
    checks: Mapping[str, Check] | None = None,
    one_required: str = "",
    exclusive: str = "",
) -> Schema:
    """A ``Schema`` from space-separated field names."""
    return Schema(
        frozenset(required.split()),
        frozenset(optional.split()),
        dict(checks or {}),
        frozenset(one_required.split()),
        frozenset(exclusive.split()),
    )


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free port of 127.0.0.1: its runner (to clean up) and the port."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
