"""Google's Gemini API (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`) on loopback.

The request is checked as the API documents it: the `x-goog-api-key` header, the body's fields,
each part (exactly one of `text`, `inlineData` with base64 `data`, `fileData` with a `fileUri`,
`functionCall`, `functionResponse`), `generationConfig` (a `responseJsonSchema` needs
`responseMimeType: application/json`; `thinkingConfig` takes a level or a budget, never both) and
`tools` (one kind per tool: `googleSearch` or `functionDeclarations`); anything else is a 400 with
Google's error body. The answer replays GenerateContentResponse chunks: a thought summary part
(`thought: true`) when thoughts are included, the text parts, a functionCall part when functions
are declared, and a last chunk with finishReason, usageMetadata and, when Google Search grounding
is on, groundingMetadata with web chunks and supports.
"""

from __future__ import annotations

import re
from typing import Any

from fake_http import Invalid, LoopbackFake, any_json, base64_data, const, items, obj, of, sse

TOKENS = ["Hel", "lo", ",", " world", "!"]
CITED = {"uri": "https://example.org/source", "title": "Example source"}

_PART_KINDS: dict[str, Any] = {
    "text": of(str),
    "inlineData": obj({"mimeType": of(str), "data": base64_data}),
    "fileData": obj({"fileUri": of(str)}, {"mimeType": of(str)}),
    "functionCall": obj({"name": of(str)}, {"args": of(dict), "id": of(str)}),
    "functionResponse": obj({"name": of(str), "response": of(dict)}, {"id": of(str)}),
}


def _part(value: Any, path: str) -> None:
    obj({}, {**_PART_KINDS, "thought": of(bool), "thoughtSignature": of(str)})(value, path)
    kinds = [k for k in value if k in _PART_KINDS]
    if len(kinds) != 1:
        raise Invalid(f"{path}: a part holds exactly one of {sorted(_PART_KINDS)}")


_CONTENT = obj({"parts": items(_part, non_empty=True)}, {"role": const("user", "model")})
_FUNCTION = obj({"name": of(str)}, {"description": of(str), "parameters": of(dict), "parametersJsonSchema": any_json})
_TOOL_KINDS: dict[str, Any] = {
    "googleSearch": obj({}, {"timeRangeFilter": of(dict)}),
    "functionDeclarations": items(_FUNCTION, non_empty=True),
    "codeExecution": obj({}),
    "urlContext": obj({}),
}


def _tool(value: Any, path: str) -> None:
    obj({}, _TOOL_KINDS)(value, path)
    if len(value) != 1:
        raise Invalid(f"{path}: a tool holds exactly one kind")


_CONFIG = obj(
    {},
    {
        "maxOutputTokens": of(int),
        "temperature": of(int, float),
        "responseMimeType": const("text/plain", "application/json", "text/x.enum"),
        "responseJsonSchema": of(dict),
        "responseSchema": of(dict),
        "thinkingConfig": obj(
            {},
            {
                "thinkingBudget": of(int),
                "thinkingLevel": const("minimal", "low", "medium", "high"),
                "includeThoughts": of(bool),
            },
        ),
        "stopSequences": items(of(str)),
    },
)
_BODY = obj(
    {"contents": items(_CONTENT, non_empty=True)},
    {
        "systemInstruction": obj({"parts": items(_part, non_empty=True)}, {"role": of(str)}),
        "generationConfig": _CONFIG,
        "tools": items(_tool),
        "toolConfig": of(dict),
        "safetySettings": items(of(dict)),
    },
)
_PATH = re.compile(r"^/v1beta/models/([\w.-]+):streamGenerateContent\?alt=sse$")


class FakeGemini(LoopbackFake):
    """streamGenerateContent."""

    def check(self, path: str, headers: dict[str, str], body: Any) -> None:
        if not _PATH.match(path):
            raise Invalid(f"{path}: no such endpoint")
        if not headers.get("x-goog-api-key"):
            raise Invalid("x-goog-api-key: header is required")
        _BODY(body, "body")
        config = body.get("generationConfig", {})
        if "responseJsonSchema" in config and config.get("responseMimeType") != "application/json":
            raise Invalid("generationConfig.responseJsonSchema: requires responseMimeType application/json")
        thinking = config.get("thinkingConfig", {})
        if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
            raise Invalid("generationConfig.thinkingConfig: thinkingLevel and thinkingBudget cannot both be set")

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}

    def frames(self, body: Any) -> list[bytes]:
        model = _PATH.match(self.requests[-1][0]).group(1)  # type: ignore[union-attr]

        def chunk(parts: list[dict[str, Any]], **more: Any) -> bytes:
            candidate = {"content": {"parts": parts, "role": "model"}, "index": 0, **more.pop("candidate", {})}
            return sse({"candidates": [candidate], "modelVersion": model, "responseId": "r1", **more})

        out = []
        config = body.get("generationConfig", {})
        if config.get("thinkingConfig", {}).get("includeThoughts"):
            out.append(chunk([{"text": "**Weighing the question.**", "thought": True}]))
        out += [chunk([{"text": t}]) for t in TOKENS[:-1]]
        tools = body.get("tools", [])
        declared = [f for t in tools for f in t.get("functionDeclarations", [])]
        if declared:
            out.append(chunk([{"functionCall": {"name": declared[0]["name"], "args": {"city": "Paris"}}}]))
        last: dict[str, Any] = {"finishReason": "STOP"}
        if any("googleSearch" in t for t in tools):
            text = "".join(TOKENS)
            last["groundingMetadata"] = {
                "webSearchQueries": ["hello"],
                "searchEntryPoint": {"renderedContent": "<div></div>"},
                "groundingChunks": [{"web": CITED}],
                "groundingSupports": [
                    {
                        "segment": {"startIndex": 0, "endIndex": len(text.encode()), "text": text},
                        "groundingChunkIndices": [0],
                    }
                ],
            }
        usage = {"promptTokenCount": 11, "candidatesTokenCount": 5, "thoughtsTokenCount": 4, "totalTokenCount": 20}
        out.append(chunk([{"text": TOKENS[-1]}], candidate=last, usageMetadata=usage))
        return out
