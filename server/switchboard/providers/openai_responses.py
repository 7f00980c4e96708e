"""OpenAI's Responses API for GPT-5.x text (`POST {base}/responses`, `stream: true`).

Request: `input` is a list of messages whose `content` holds `input_text`, `input_image`
(`image_url`: a URL or a data: URI) and `input_file` (`file_url`, or `file_data` as a data: URI
with a `filename`) parts; the system text is `instructions`; `tools` holds `{"type":
"web_search"}` and function tools (`name`, `description`, `parameters`, `strict`); `reasoning` is
`{"effort", "summary"}`; structured output is `text.format` of type `json_schema`.

Events (each `data:` is an object whose `type` names it): `response.output_text.delta` (`delta`),
`response.reasoning_summary_text.delta` (`delta`), `response.output_text.annotation.added`
(`annotation`: a `url_citation` with `url`, `title`, `start_index`, `end_index`),
`response.output_item.done` (a `function_call` item: `call_id`, `name`, `arguments`),
`response.completed` / `response.incomplete` (`response.usage`, `response.incomplete_details`),
`response.failed` (`response.error`) and `error` (`code`, `message`). Other events (created,
in_progress, web_search_call.*, content_part.*, ...) carry nothing the caller needs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import HttpProvider, count, data_uri, inline_text, mime, string, turns, unsupported
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
_INCOMPLETE = {"max_output_tokens": FinishReason.LENGTH, "content_filter": FinishReason.CONTENT_FILTER}
MIN_OUTPUT_TOKENS = 16
"""The smallest `max_output_tokens` the Responses API takes; a smaller limit is raised to it."""
REASONING_EFFORT = "high"
"""The `reasoning.effort` sent when a request asks for reasoning (otherwise the model's default)."""


def encodes(model: Model) -> Capabilities:
    """What the Responses API carries for a text model: images, PDFs, web search, structured
    output, function tools and reasoning effort."""
    return _TEXT if model.modality is Modality.TEXT else frozenset()


def _part(provider: str, model: Model, a: Attachment) -> dict[str, Any]:
    kind = mime(a)
    if kind.startswith("image/"):
        return {"type": "input_image", "image_url": a.uri or data_uri(kind, a.data)}
    if kind == "application/pdf":
        if a.uri:
            return {"type": "input_file", "file_url": a.uri}
        return {"type": "input_file", "filename": a.name or "document.pdf", "file_data": data_uri(kind, a.data)}
    text = inline_text(a)
    if text is None:
        raise unsupported(provider, model, a)
    return {"type": "input_text", "text": text}


def _error(provider: str, error: Any) -> ProviderError:
    error = error if isinstance(error, dict) else {}
    if isinstance(error.get("error"), dict):  # an `error` event that nests its error object
        error = error["error"]
    code, message = str(error.get("code") or error.get("type") or ""), str(error.get("message", ""))[:200]
    if code in ("rate_limit_exceeded", "insufficient_quota"):
        return ProviderError("PROVIDER_RATE_LIMITED", f"{provider}: {message}", retryable=True)
    if code in ("server_error", "server_is_overloaded", "slow_down", ""):
        return ProviderError("PROVIDER_OVERLOADED", f"{provider}: {code or 'error'}: {message}", retryable=True)
    return ProviderError(
        "PROVIDER_INVALID_REQUEST", f"{provider}: {code}: {message}", retryable=False, code="INVALID_ARGUMENT"
    )


class OpenAIResponsesProvider(HttpProvider):
    """GPT-5.x text over the Responses API."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The responses request."""
        system, rest = turns(request)
        items: list[dict[str, Any]] = []
        for m in rest:
            if m.role is Role.ASSISTANT:
                items.append({"role": "assistant", "content": m.content})
                continue
            parts: list[dict[str, Any]] = [{"type": "input_text", "text": m.content}] if m.content else []
            parts += [_part(self.name, model, a) for a in m.attachments]
            items.append({"role": "user", "content": parts})
        body: dict[str, Any] = {"model": model.upstream_model, "input": items, "stream": True}
        if system:
            body["instructions"] = system
        o = request.options
        if o.max_output_tokens:  # the API refuses fewer than 16
            body["max_output_tokens"] = max(MIN_OUTPUT_TOKENS, o.max_output_tokens)
        if o.reasoning:
            body["reasoning"] = {"effort": REASONING_EFFORT, "summary": "auto"}
        if o.json_schema:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": o.schema_name or "output",
                    "schema": json.loads(o.json_schema),
                }
            }
        tools: list[dict[str, Any]] = [{"type": "web_search"}] if o.web_search else []
        tools += [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": json.loads(t.parameters_json_schema or '{"type": "object", "properties": {}}'),
                "strict": False,  # the caller's schema need not meet strict mode's rules
            }
            for t in o.tools
        ]
        if tools:
            body["tools"] = tools
        return "/responses", {"authorization": f"Bearer {self.endpoint.api_key}"}, body

    async def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """Text, reasoning summaries, citations and function calls, then the finish and usage."""
        calls = 0
        written = 0  # code points of answer text so far
        starts: dict[tuple[int, int], int] = {}  # (output, content part) -> where its text starts
        async for _, data in sse(response):
            event = parse_json(data, self.name)
            if not isinstance(event, dict):
                raise bad_response(self.name, "an event that is not an object")
            kind = event.get("type")
            if kind == "response.output_text.delta":
                text = string(event["delta"])
                starts.setdefault((count(event["output_index"]), count(event["content_index"])), written)
                written += len(text)
                yield TextChunk(text)
            elif kind == "response.reasoning_summary_text.delta":
                yield ReasoningChunk(string(event["delta"]))
            elif kind == "response.output_text.annotation.added":
                note = event["annotation"]
                if note["type"] == "url_citation":
                    # The span counts in the annotated part's text; the answer may hold several.
                    start = starts.get((count(event["output_index"]), count(event["content_index"])), 0)
                    yield Citation(
                        url=string(note["url"]),
                        title=string(note.get("title", "")),
                        start_index=start + count(note.get("start_index", 0)),
                        end_index=start + count(note.get("end_index", 0)),
                    )
            elif kind == "response.output_item.done":
                item = event["item"]
                if item["type"] == "function_call":
                    calls += 1
                    yield ToolCallEvent(
                        string(item["call_id"]), string(item["name"]), string(item["arguments"]) or "{}"
                    )
            elif kind in ("response.completed", "response.incomplete"):
                body = event["response"]
                usage = body.get("usage") or {}
                finish = FinishReason.TOOL_CALLS if calls else FinishReason.STOP
                if kind == "response.incomplete":
                    reason = (body.get("incomplete_details") or {}).get("reason")
                    finish = _INCOMPLETE.get(string(reason or ""), FinishReason.LENGTH)
                yield Finished(finish, Usage(count(usage.get("input_tokens", 0)), count(usage.get("output_tokens", 0))))
                return
            elif kind == "response.failed":
                raise _error(self.name, event["response"].get("error"))
            elif kind == "error":
                raise _error(self.name, event)
        raise bad_response(self.name, "a stream that ended without response.completed")
