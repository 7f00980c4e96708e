"""Google Gemini streaming (`POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`).

Request: `contents[].parts[]` hold `text`, `inlineData` (`mimeType`, base64 `data`) and
`fileData` (`mimeType`, `fileUri`) for images, PDFs, audio, video and text; `systemInstruction`;
`generationConfig` (`maxOutputTokens`, `responseMimeType` + `responseJsonSchema`, and
`thinkingConfig`: `thinkingLevel` for Gemini 3, `thinkingBudget` before it, `includeThoughts`);
`tools` with `googleSearch` and `functionDeclarations`.

Each event is a GenerateContentResponse: candidates[0].content.parts[] (text, a thought summary
when `thought` is true, or functionCall), finishReason on the last one, groundingMetadata
(groundingChunks[].web and groundingSupports[].segment) when search grounded the answer,
usageMetadata (promptTokenCount, candidatesTokenCount, thoughtsTokenCount), and
promptFeedback.blockReason when the prompt is blocked.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import (
    TEXT_ATTACHMENTS,
    HttpProvider,
    count,
    inline_text,
    mime,
    string,
    turns,
    unsupported,
)
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
        Capability.AUDIO_INPUT,
        Capability.VIDEO_INPUT,
        Capability.WEB_SEARCH,
        Capability.STRUCTURED_OUTPUT,
        Capability.TOOL_CALLING,
        Capability.REASONING,
    }
)
_FINISH = {
    "STOP": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
}


def encodes(model: Model) -> Capabilities:
    """What generateContent carries for a text model: images, PDFs, audio and video inline or
    by URI, Google Search grounding, structured output, function tools and thinking."""
    return _TEXT if model.modality is Modality.TEXT else frozenset()


def thinking_config(model: Model) -> dict[str, Any]:
    """The thinkingConfig of a reasoning request: the highest thinking level on Gemini 3 (which
    refuses a budget beside a level), a dynamic budget before it; thought summaries included."""
    if model.upstream_model.startswith("gemini-3"):
        return {"thinkingLevel": "high", "includeThoughts": True}
    return {"thinkingBudget": -1, "includeThoughts": True}


MEDIA_TYPES = frozenset(
    {
        "application/pdf",
        *(f"image/{t}" for t in ("png", "jpeg", "webp", "heic", "heif")),
        *(f"audio/{t}" for t in ("wav", "x-wav", "mp3", "mpeg", "aiff", "aac", "ogg", "flac")),
        *(f"video/{t}" for t in ("mp4", "mpeg", "mov", "quicktime", "avi", "x-flv", "mpg", "webm", "wmv", "3gpp")),
    }
)
"""The documented image, audio, video and document types Gemini reads; others are refused here
(retryable) rather than by the API (a 400 that would end the request)."""


def _part(provider: str, model: Model, a: Attachment) -> dict[str, Any]:
    kind = mime(a)
    text = inline_text(a)
    if text is not None:
        return {"text": text}
    if kind not in MEDIA_TYPES and not kind.startswith(TEXT_ATTACHMENTS):
        raise unsupported(provider, model, a)
    if a.uri:
        return {"fileData": {"mimeType": kind, "fileUri": a.uri}}
    return {"inlineData": {"mimeType": kind, "data": base64.b64encode(a.data).decode()}}


def _citations(meta: dict[str, Any], text: bytes) -> list[Citation]:
    """Sources from groundingMetadata; segment offsets count bytes of the answer's UTF-8 text and
    are turned into code points."""
    chunks = [c.get("web") or {} for c in meta.get("groundingChunks") or []]
    out: list[Citation] = []
    cited: set[int] = set()
    for support in meta.get("groundingSupports") or []:
        segment = support.get("segment") or {}
        start, end = count(segment.get("startIndex", 0)), count(segment.get("endIndex", 0))
        span = (len(text[:start].decode(errors="ignore")), len(text[:end].decode(errors="ignore")))
        for i in support.get("groundingChunkIndices") or []:
            web = chunks[count(i)]
            cited.add(i)
            # segment.text is the answer's own span, not a quote of the source: no cited_text.
            out.append(Citation(string(web["uri"]), string(web.get("title", "")), *span))
    out += [
        Citation(string(w["uri"]), string(w.get("title", ""))) for i, w in enumerate(chunks) if i not in cited and w
    ]
    return out


class GeminiProvider(HttpProvider):
    """Gemini models over streamGenerateContent."""

    def build(self, model: Model, request: GenerationRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The generateContent request."""
        system, rest = turns(request)
        contents = []
        for m in rest:
            parts: list[dict[str, Any]] = [{"text": m.content}] if m.content else []
            parts += [_part(self.name, model, a) for a in m.attachments]
            contents.append({"role": "model" if m.role is Role.ASSISTANT else "user", "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        o = request.options
        if o.max_output_tokens:
            config["maxOutputTokens"] = o.max_output_tokens
        if o.json_schema:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = json.loads(o.json_schema)
        if o.reasoning:
            config["thinkingConfig"] = thinking_config(model)
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
        """Text, thought summaries and function calls, the sources, then the finish and usage."""
        usage = Usage()
        finish: FinishReason | None = None
        calls = 0
        answer = bytearray()  # the answer's UTF-8 text, which grounding offsets count in
        grounding: dict[str, Any] = {}
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
                usage = Usage(
                    count(meta.get("promptTokenCount", 0)),
                    count(meta.get("candidatesTokenCount", 0)) + count(meta.get("thoughtsTokenCount", 0)),
                )
            for candidate in (chunk.get("candidates") or [])[:1]:
                for part in (candidate.get("content") or {}).get("parts") or []:
                    if "text" in part and part.get("thought") is True:
                        yield ReasoningChunk(string(part["text"]))
                    elif "text" in part:
                        text = string(part["text"])
                        answer += text.encode()
                        yield TextChunk(text)
                    elif "functionCall" in part:
                        fc = part["functionCall"]
                        calls += 1
                        call_id = string(
                            fc.get("id") or f"call_{calls}"
                        )  # Gemini 3 gives calls an id; older models do not
                        yield ToolCallEvent(call_id, string(fc["name"]), json.dumps(fc.get("args") or {}))
                if candidate.get("groundingMetadata"):
                    grounding = candidate["groundingMetadata"]
                if candidate.get("finishReason"):
                    finish = _FINISH.get(string(candidate["finishReason"]), FinishReason.STOP)
        if finish is None:
            raise bad_response(self.name, "a stream that ended without a finish reason")
        for citation in _citations(grounding, bytes(answer)) if grounding else []:
            yield citation
        yield Finished(FinishReason.TOOL_CALLS if calls and finish is FinishReason.STOP else finish, usage)
