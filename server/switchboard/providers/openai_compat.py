"""OpenAI Chat Completions streaming (`POST {base}/chat/completions`, `stream: true`), which
OpenAI, xAI and self-hosted servers (vLLM, Ollama, llama.cpp) all speak.

Events: `data: {chat.completion.chunk}` with choices[0].delta.content / tool_calls and
finish_reason, a last chunk with `usage` (stream_options.include_usage), then `data: [DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.providers.base import HttpProvider, count, data_uri, inline_text, mime, string, turns, unsupported
from switchboard.providers.http import StreamResponse, bad_response, parse_json, sse
from switchboard.types import (
    Attachment,
    Capabilities,
    Capability,
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
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


_TEXT = frozenset({Capability.IMAGE_INPUT, Capability.STRUCTURED_OUTPUT, Capability.TOOL_CALLING})


def encodes(model: Model) -> Capabilities:
    """What Chat Completions carries for a text model here: images (`image_url` parts),
    structured output (`response_format`) and function tools. Self-hosted servers differ in the
    rest, so nothing else is claimed."""
    return _TEXT if model.modality is Modality.TEXT else frozenset()


def _part(provider: str, model: Model, a: Attachment) -> dict[str, Any]:
    if mime(a).startswith("image/"):
        return {"type": "image_url", "image_url": {"url": a.uri or data_uri(mime(a), a.data)}}
    text = inline_text(a)
    if text is None:
        raise unsupported(provider, model, a)
    return {"type": "text", "text": text}


class OpenAICompatProvider(HttpProvider):
    """Text models over the Chat Completions API."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The chat completion request."""
        system, rest = turns(request)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        for m in rest:
            if m.attachments:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
                parts += [_part(self.name, model, a) for a in m.attachments]
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
                usage = Usage(count(u.get("prompt_tokens", 0)), count(u.get("completion_tokens", 0)))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield TextChunk(string(delta["content"]))
                for tc in delta.get("tool_calls") or []:
                    call = calls.setdefault(count(tc.get("index", 0)), {"id": "", "name": "", "args": ""})
                    fn = tc.get("function") or {}
                    call["id"] = string(tc.get("id") or call["id"])
                    call["name"] = string(fn.get("name") or call["name"])
                    call["args"] += string(fn.get("arguments") or "")
                if choice.get("finish_reason"):
                    finish = _FINISH.get(string(choice["finish_reason"]), FinishReason.STOP)
        if not done:
            raise bad_response(self.name, "a stream that ended without [DONE]")
        for _, call in sorted(calls.items()):
            yield ToolCallEvent(call["id"], call["name"], call["args"] or "{}")
        yield Finished(finish, usage)
