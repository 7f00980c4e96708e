"""OpenAI Chat Completions streaming (`POST {base}/chat/completions`, `stream: true`), which
OpenAI, xAI and self-hosted servers (vLLM, Ollama, llama.cpp) all speak.

Events: `data: {chat.completion.chunk}` with choices[0].delta.content / tool_calls and
finish_reason, a last chunk with `usage` (stream_options.include_usage), then `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.providers.base import HttpProvider, data_uri, turns
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

_ROLES = {Role.USER: "user", Role.ASSISTANT: "assistant", Role.TOOL: "user", Role.SYSTEM: "system"}
_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
}


class OpenAICompatProvider(HttpProvider):
    """Text models over the Chat Completions API."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The chat completion request."""
        system, rest = turns(request)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for m in rest:
            images = [a for a in m.attachments if a.mime_type.startswith("image/")]
            if images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
                parts += [
                    {"type": "image_url", "image_url": {"url": a.uri or data_uri(a.mime_type, a.data)}} for a in images
                ]
                messages.append({"role": _ROLES[m.role], "content": parts})
            else:
                messages.append({"role": _ROLES[m.role], "content": m.content})
        body: dict[str, Any] = {
            "model": model.upstream_model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        o = request.options
        if o.max_output_tokens:
            body["max_completion_tokens"] = o.max_output_tokens
        if o.json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": o.schema_name or "output", "schema": json.loads(o.json_schema)},
            }
        if o.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": json.loads(t.parameters_json_schema or '{"type": "object", "properties": {}}'),
                    },
                }
                for t in o.tools
            ]
        headers = {"authorization": f"Bearer {self.endpoint.api_key}"} if self.endpoint.api_key else {}
        return "/chat/completions", headers, body

    async def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """Deltas, tool calls, then the finish reason and usage."""
        usage = Usage()
        finish = FinishReason.STOP
        calls: dict[int, dict[str, str]] = {}
        done = False
        async for _, data in sse(response):
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = parse_json(data, self.name)
            if not isinstance(chunk, dict):
                raise bad_response(self.name, "a chunk that is not an object")
            if "error" in chunk:
                raise bad_response(self.name, f"an error event: {str(chunk['error'])[:200]}")
            if chunk.get("usage"):
                u = chunk["usage"]
                usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield TextChunk(delta["content"])
                for tc in delta.get("tool_calls") or []:
                    call = calls.setdefault(int(tc.get("index", 0)), {"id": "", "name": "", "args": ""})
                    fn = tc.get("function") or {}
                    call["id"] = tc.get("id") or call["id"]
                    call["name"] = fn.get("name") or call["name"]
                    call["args"] += fn.get("arguments") or ""
                if choice.get("finish_reason"):
                    finish = _FINISH.get(choice["finish_reason"], FinishReason.STOP)
        if not done:
            raise bad_response(self.name, "a stream that ended without [DONE]")
        for _, call in sorted(calls.items()):
            yield ToolCallEvent(call["id"], call["name"], call["args"] or "{}")
        yield Finished(finish, usage)
