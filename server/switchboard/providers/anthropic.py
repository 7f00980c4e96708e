"""Anthropic Messages API streaming (`POST {base}/v1/messages`, `stream: true`).

Request: `content` blocks `text`, `image` and `document` (source `base64` with `media_type` and
`data`, `url`, or, for plain text, `text`); `tools` holds function tools (`input_schema`) and the
web search server tool (`web_search_20250305`); extended thinking is `thinking: {"type":
"enabled", "budget_tokens"}` with a budget of at least 1,024 tokens and below `max_tokens`;
structured output is `output_config.format` of type `json_schema`.

Events: message_start (usage.input_tokens), content_block_start (`text`, `thinking`,
`tool_use`, `server_tool_use`, `web_search_tool_result`), content_block_delta (text_delta,
thinking_delta, signature_delta, input_json_delta, citations_delta), content_block_stop,
message_delta (stop_reason, usage.output_tokens), message_stop, ping, and error
(overloaded_error, rate_limit_error, ...).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import HttpProvider, count, inline_text, mime, string, turns, unsupported
from switchboard.providers.http import StreamResponse, bad_response, parse_json, sse
from switchboard.types import (
    Attachment,
    Capabilities,
    Capability,
    Citation,
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
    Model,
    ProviderEvent,
    ReasoningChunk,
    Role,
    TextChunk,
    ToolCallEvent,
    Usage,
)

API_VERSION = "2023-06-01"
THINKING_BUDGET = 4096
"""Tokens of extended thinking a reasoning request allows; `max_tokens` grows by as much, so the
answer keeps its own limit."""
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TEXT = frozenset(
    {
        Capability.IMAGE_INPUT,
        Capability.DOCUMENT_INPUT,
        Capability.WEB_SEARCH,
        Capability.STRUCTURED_OUTPUT,
        Capability.TOOL_CALLING,
        Capability.REASONING,
    }
)
_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}


def encodes(model: Model) -> Capabilities:
    """What the Messages API carries for a text model: images, PDFs, web search, structured
    output, tools and extended thinking."""
    return _TEXT if model.modality is Modality.TEXT else frozenset()


def _stream_error(provider: str, error: dict[str, Any]) -> ProviderError:
    kind, message = str(error.get("type", "")), str(error.get("message", ""))[:200]
    if kind == "rate_limit_error":
        return ProviderError("PROVIDER_RATE_LIMITED", f"{provider}: {message}", retryable=True)
    if kind in ("overloaded_error", "api_error"):
        return ProviderError("PROVIDER_OVERLOADED", f"{provider}: {message}", retryable=True)
    return ProviderError("PROVIDER_INVALID_REQUEST", f"{provider}: {message}", retryable=False, code="INVALID_ARGUMENT")


def _block(provider: str, model: Model, a: Attachment) -> dict[str, Any]:
    kind = mime(a)
    if kind in IMAGE_TYPES or kind == "application/pdf":
        source = (
            {"type": "url", "url": a.uri}
            if a.uri
            else {"type": "base64", "media_type": kind, "data": base64.b64encode(a.data).decode()}
        )
        return {"type": "image" if kind in IMAGE_TYPES else "document", "source": source}
    if kind == "text/plain" and a.data:
        source = {"type": "text", "media_type": "text/plain", "data": a.data.decode("utf-8", errors="replace")}
        return {"type": "document", "source": source, **({"title": a.name} if a.name else {})}
    text = inline_text(a)
    if text is None:
        raise unsupported(provider, model, a)
    return {"type": "text", "text": text}


class AnthropicProvider(HttpProvider):
    """Claude models over the Messages API."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The messages request."""
        system, rest = turns(request)
        messages: list[dict[str, Any]] = []
        for m in rest:
            role = "assistant" if m.role is Role.ASSISTANT else "user"
            if not m.attachments:
                messages.append({"role": role, "content": m.content})
                continue
            blocks = [_block(self.name, model, a) for a in m.attachments]  # files first, as documented
            blocks += [{"type": "text", "text": m.content}] if m.content else []
            messages.append({"role": role, "content": blocks})
        o = request.options
        max_tokens = o.max_output_tokens or min(model.max_output_tokens or 4096, 8192)
        body: dict[str, Any] = {"model": model.upstream_model, "max_tokens": max_tokens, "messages": messages}
        body["stream"] = True
        if system:
            body["system"] = system
        if o.reasoning:
            # The budget counts towards max_tokens: it is added, within the model's own limit, and
            # stays at least 1,024 tokens and below max_tokens as the API requires.
            ceiling = model.max_output_tokens or max_tokens + THINKING_BUDGET
            budget = max(1024, min(THINKING_BUDGET, ceiling - 1024))
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
            body["max_tokens"] = max(budget + 1, min(max_tokens + budget, ceiling))
        if o.json_schema:
            body["output_config"] = {"format": {"type": "json_schema", "schema": json.loads(o.json_schema)}}
        tools: list[dict[str, Any]] = [dict(WEB_SEARCH_TOOL)] if o.web_search else []
        tools += [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": json.loads(t.parameters_json_schema or '{"type": "object", "properties": {}}'),
            }
            for t in o.tools
        ]
        if tools:
            body["tools"] = tools
        headers = {"x-api-key": self.endpoint.api_key, "anthropic-version": API_VERSION}
        return "/v1/messages", headers, body

    async def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """Text, thinking and cited sources, tool calls, then the stop reason and usage."""
        input_tokens = output_tokens = 0
        finish = FinishReason.STOP
        tools: dict[int, dict[str, str]] = {}
        texts: dict[int, tuple[int, list[Citation]]] = {}  # text block -> where it starts, its sources
        written = 0  # code points of answer text so far
        async for event, data in sse(response):
            payload = parse_json(data, self.name)
            if not isinstance(payload, dict):
                raise bad_response(self.name, "an event that is not an object")
            kind = payload.get("type") or event
            if kind == "message_start":
                usage = payload["message"].get("usage") or {}
                input_tokens = sum(
                    count(usage.get(k) or 0)
                    for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
                )
            elif kind == "content_block_start":
                index, block = count(payload["index"]), payload["content_block"]
                if block["type"] == "tool_use":
                    tools[index] = {"id": string(block["id"]), "name": string(block["name"]), "args": ""}
                elif block["type"] == "text":
                    texts[index] = (written, [])
                    if block.get("text"):
                        written += len(string(block["text"]))
                        yield TextChunk(block["text"])
            elif kind == "content_block_delta":
                index, delta = count(payload["index"]), payload["delta"]
                if delta["type"] == "text_delta":
                    text = string(delta["text"])
                    written += len(text)
                    yield TextChunk(text)
                elif delta["type"] == "thinking_delta":
                    yield ReasoningChunk(string(delta["thinking"]))
                elif delta["type"] == "input_json_delta" and index in tools:
                    tools[index]["args"] += string(delta["partial_json"])
                elif delta["type"] == "citations_delta" and index in texts:
                    cited = delta["citation"]
                    texts[index][1].append(
                        Citation(
                            url=string(cited.get("url", "")),
                            title=string(cited.get("title") or ""),
                            cited_text=string(cited.get("cited_text", "")),
                        )
                    )
            elif kind == "content_block_stop":
                index = count(payload["index"])
                tool = tools.pop(index, None)
                if tool is not None:
                    yield ToolCallEvent(tool["id"], tool["name"], tool["args"] or "{}")
                start, sources = texts.pop(index, (0, []))
                for source in sources:  # a citation supports the whole text block it arrived in
                    yield Citation(source.url, source.title, start, written, source.cited_text)
            elif kind == "message_delta":
                reason = payload["delta"].get("stop_reason")
                finish = _FINISH.get(string(reason), finish) if reason is not None else finish
                output_tokens = count((payload.get("usage") or {}).get("output_tokens", output_tokens))
            elif kind == "message_stop":
                yield Finished(finish, Usage(input_tokens, output_tokens))
                return
            elif kind == "error":
                raise _stream_error(self.name, payload.get("error") or {})
        raise bad_response(self.name, "a stream that ended without message_stop")
