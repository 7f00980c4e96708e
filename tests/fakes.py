"""Text provider fakes: real HTTP servers on 127.0.0.1 speaking each provider's streaming wire format
(status codes, headers, SSE event names and payloads, usage frames, error bodies), with scripted
failures. The adapters' real code paths run against them. The media fakes are fake_fal.py,
fake_openai_media.py and fake_xai.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

TOKENS = ["Hel", "lo", ",", " world", "!"]
SCENARIOS = ("normal", "slow_first", "429", "500", "drop", "malformed", "stall", "slow")


def _sse(data: Any, event: str = "") -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


def openai_frames(model: str) -> tuple[list[bytes], int]:
    """Chat Completions chunks; the index of the first one that carries text."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    frames = [_sse(chunk({"role": "assistant", "content": ""}))]
    frames += [_sse(chunk({"content": t})) for t in TOKENS]
    frames.append(_sse(chunk({}, "stop")))
    frames.append(
        _sse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(TOKENS), "total_tokens": 12},
            }
        )
    )
    frames.append(_sse("[DONE]"))
    return frames, 1


def anthropic_frames(model: str) -> tuple[list[bytes], int]:
    """Messages API events; the index of the first text delta."""
    frames = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model,
                    "stop_reason": None,
                    "usage": {"input_tokens": 7, "output_tokens": 1},
                },
            },
            "message_start",
        ),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    frames += [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
            "content_block_delta",
        )
        for t in TOKENS
    ]
    frames += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(TOKENS)},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return frames, 3


def gemini_frames(model: str) -> tuple[list[bytes], int]:
    """streamGenerateContent responses; the last one carries finishReason and usage."""
    frames = []
    for i, t in enumerate(TOKENS):
        cand: dict[str, Any] = {"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}
        body: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
        if i == len(TOKENS) - 1:
            cand["finishReason"] = "STOP"
            body["usageMetadata"] = {"promptTokenCount": 7, "candidatesTokenCount": len(TOKENS), "totalTokenCount": 12}
        frames.append(_sse(body))
    return frames, 0


def error_body(kind: str, status: int, message: str) -> dict[str, Any]:
    """The provider's documented error body."""
    if kind == "anthropic":
        names = {
            429: "rate_limit_error",
            529: "overloaded_error",
            401: "authentication_error",
            400: "invalid_request_error",
        }
        return {"type": "error", "error": {"type": names.get(status, "api_error"), "message": message}}
    if kind == "gemini":
        names = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 401: "UNAUTHENTICATED", 400: "INVALID_ARGUMENT"}
        return {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


class FakeProvider:
    """One provider's API on a free loopback port. Set ``scenario`` before each call."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.scenario = "normal"
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.disconnected = asyncio.Event()
        self.echo_key = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}" + ("/v1" if self.kind == "openai" else "")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path_qs, dict(request.headers), await request.json()))
        sc = self.scenario
        if sc == "429":
            return web.json_response(
                error_body(self.kind, 429, "Rate limit reached"), status=429, headers={"retry-after": "7"}
            )
        if sc == "500":
            status = 529 if self.kind == "anthropic" else 500
            return web.json_response(error_body(self.kind, status, "The server is overloaded"), status=status)
        if sc == "401":
            return web.json_response(
                error_body(self.kind, 401, f"Incorrect API key provided: {self.echo_key}"), status=401
            )
        if sc == "400_context":
            return web.json_response(
                error_body(self.kind, 400, "This model's maximum context length is 8192 tokens"), status=400
            )
        frames, first = {"openai": openai_frames, "anthropic": anthropic_frames, "gemini": gemini_frames}[self.kind](
            "m-1"
        )
        if sc == "slow":
            frames = frames[:first] + frames[first : first + 1] * 200
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            for i, frame in enumerate(frames):
                if sc == "slow_first" and i == first:
                    await asyncio.sleep(0.3)
                if sc == "stall" and i == first + 1:
                    await asyncio.sleep(30)
                if sc == "drop" and i == first + 1:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if sc == "slow" and i > first:
                    await asyncio.sleep(0.05)
                await resp.write(b"data: {not json\n\n" if sc == "malformed" and i == first + 1 else frame)
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return resp
