"""Anthropic Messages API streaming (`POST {base}/v1/messages`, `stream: true`).

Events: message_start (usage.input_tokens), content_block_start, content_block_delta
(text_delta, input_json_delta), content_block_stop, message_delta (stop_reason,
usage.output_tokens), message_stop, ping, and error (overloaded_error, rate_limit_error, ...).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import HttpProvider, turns
from switchboard.providers.http import StreamResponse, bad_response, parse_json, sse
from switchboard.types import (
    Finished,
    FinishReason,
    GenerationRequest,
    Model,
    ProviderEvent,
    Role,
    TextChunk,
    ToolCallEvent,
    Usage,
)

API_VERSION = "2023-06-01"
_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def _stream_error(provider: str, error: dict[str, Any]) -> ProviderError:
    kind, message = str(error.get("type", "")), str(error.get("message", ""))[:200]
    if kind == "rate_limit_error":
        return ProviderError("PROVIDER_RATE_LIMITED", f"{provider}: {message}", retryable=True)
    if kind in ("overloaded_error", "api_error"):
        return ProviderError("PROVIDER_OVERLOADED", f"{provider}: {message}", retryable=True)
    return ProviderError("PROVIDER_INVALID_REQUEST", f"{provider}: {message}", retryable=False, code="INVALID_ARGUMENT")


class AnthropicProvider(HttpProvider):
    """Claude models over the Messages API."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The messages request."""
        system, rest = turns(request)
        body: dict[str, Any] = {
            "model": model.upstream_model,
            "max_tokens": request.options.max_output_tokens or min(model.max_output_tokens or 4096, 8192),
            "messages": [
                {"role": "assistant" if m.role is Role.ASSISTANT else "user", "content": m.content} for m in rest
            ],
            "stream": True,
        }
        if system:
            body["system"] = system
        if request.options.tools:
            body["tools"] = [
                {
                    "name": t.name,
                    "description": t.description,
                    "input_schema": json.loads(t.parameters_json_schema or '{"type": "object", "properties": {}}'),
                }
                for t in request.options.tools
            ]
        headers = {"x-api-key": self.endpoint.api_key, "anthropic-version": API_VERSION}
        return "/v1/messages", headers, body

    async def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """Text deltas and tool calls, then the stop reason and usage."""
        input_tokens = output_tokens = 0
        finish = FinishReason.STOP
        tools: dict[int, dict[str, str]] = {}
        done = False
        async for event, data in sse(response):
            payload = parse_json(data, self.name)
            if not isinstance(payload, dict):
                raise bad_response(self.name, "an event that is not an object")
            kind = payload.get("type") or event
            if kind == "message_start":
                input_tokens = int(((payload.get("message") or {}).get("usage") or {}).get("input_tokens", 0))
            elif kind == "content_block_start":
                block = payload.get("content_block") or {}
                if block.get("type") == "tool_use":
                    tools[int(payload.get("index", 0))] = {
                        "id": block.get("id", ""),
                        "name": block.get("name", ""),
                        "args": "",
                    }
            elif kind == "content_block_delta":
                delta = payload.get("delta") or {}
                if delta.get("type") == "text_delta":
                    yield TextChunk(str(delta.get("text", "")))
                elif delta.get("type") == "input_json_delta" and int(payload.get("index", 0)) in tools:
                    tools[int(payload.get("index", 0))]["args"] += str(delta.get("partial_json", ""))
            elif kind == "content_block_stop":
                tool = tools.pop(int(payload.get("index", 0)), None)
                if tool is not None:
                    yield ToolCallEvent(tool["id"], tool["name"], tool["args"] or "{}")
            elif kind == "message_delta":
                reason = (payload.get("delta") or {}).get("stop_reason")
                finish = _FINISH.get(reason or "", finish)
                output_tokens = int((payload.get("usage") or {}).get("output_tokens", output_tokens))
            elif kind == "message_stop":
                done = True
                break
            elif kind == "error":
                raise _stream_error(self.name, payload.get("error") or {})
        if not done:
            raise bad_response(self.name, "a stream that ended without message_stop")
        yield Finished(finish, Usage(input_tokens, output_tokens))
