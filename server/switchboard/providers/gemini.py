"""Google Gemini streaming (`POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`).

Each event is a GenerateContentResponse: candidates[0].content.parts[] (text or functionCall),
finishReason on the last one, usageMetadata (promptTokenCount, candidatesTokenCount), and
promptFeedback.blockReason when the prompt is blocked.
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

_FINISH = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
}


class GeminiProvider(HttpProvider):
    """Gemini models over streamGenerateContent."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The generateContent request."""
        system, rest = turns(request)
        body: dict[str, Any] = {
            "contents": [
                {"role": "model" if m.role is Role.ASSISTANT else "user", "parts": [{"text": m.content}]} for m in rest
            ]
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        o = request.options
        if o.max_output_tokens:
            config["maxOutputTokens"] = o.max_output_tokens
        if o.json_schema:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = json.loads(o.json_schema)
        if config:
            body["generationConfig"] = config
        tools: list[dict[str, Any]] = []
        if o.web_search:
            tools.append({"googleSearch": {}})
        if o.tools:
            tools.append(
                {
                    "functionDeclarations": [
                        {
                            "name": t.name,
                            "description": t.description,
                            **(
                                {"parameters": json.loads(t.parameters_json_schema)} if t.parameters_json_schema else {}
                            ),
                        }
                        for t in o.tools
                    ]
                }
            )
        if tools:
            body["tools"] = tools
        path = f"/v1beta/models/{model.upstream_model}:streamGenerateContent?alt=sse"
        return path, {"x-goog-api-key": self.endpoint.api_key}, body

    async def events(self, response: StreamResponse, model: Model) -> AsyncIterator[ProviderEvent]:
        """Text and function calls, then the finish reason and usage."""
        usage = Usage()
        finish: FinishReason | None = None
        calls = 0
        async for _, data in sse(response):
            chunk = parse_json(data, self.name)
            if not isinstance(chunk, dict):
                raise bad_response(self.name, "an event that is not an object")
            if "error" in chunk:
                raise bad_response(self.name, f"an error event: {str(chunk['error'])[:200]}")
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
            if blocked:
                raise ProviderError(
                    "PROVIDER_CONTENT_REFUSED",
                    f"{self.name} blocked the prompt ({blocked})",
                    retryable=False,
                    code="FAILED_PRECONDITION",
                )
            meta = chunk.get("usageMetadata")
            if meta:
                usage = Usage(int(meta.get("promptTokenCount", 0)), int(meta.get("candidatesTokenCount", 0)))
            for candidate in (chunk.get("candidates") or [])[:1]:
                for part in (candidate.get("content") or {}).get("parts") or []:
                    if "text" in part:
                        yield TextChunk(str(part["text"]))
                    elif "functionCall" in part:
                        fc = part["functionCall"]
                        calls += 1
                        yield ToolCallEvent(f"call_{calls}", str(fc.get("name", "")), json.dumps(fc.get("args") or {}))
                if candidate.get("finishReason"):
                    finish = _FINISH.get(candidate["finishReason"], FinishReason.STOP)
        if finish is None:
            raise bad_response(self.name, "a stream that ended without a finish reason")
        yield Finished(FinishReason.TOOL_CALLS if calls and finish is FinishReason.STOP else finish, usage)
