"""Anthropic's Messages API (`POST /v1/messages`, streaming) on loopback.

The request is checked as the API documents it: headers (`x-api-key`, `anthropic-version`), the
body's fields, content blocks (`text`, `image` and `document` with `base64`, `url` or `text`
sources and the documented media types), tools (custom tools with `input_schema`, the
`web_search_20250305` server tool), `thinking` (a budget of at least 1,024 tokens, below
`max_tokens`) and `output_config.format`; anything else is a 400 with Anthropic's error body. The
answer replays the documented event sequence: message_start, a thinking block (thinking and
signature deltas) when thinking is enabled, a server_tool_use block and a web_search_tool_result
block then a text block with a citations_delta when web search is on, a ping, the text deltas, a
tool_use block with input_json_delta pieces when tools are given, message_delta with the stop
reason and usage, and message_stop.
"""

from __future__ import annotations

from typing import Any

from fake_http import Invalid, LoopbackFake, any_json, base64_data, by_type, const, items, obj, of, sse

TOKENS = ["Hel", "lo", ",", " world", "!"]
CITED = {"url": "https://example.org/source", "title": "Example source"}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

_IMAGE_SOURCE = by_type(
    {
        "base64": obj({"type": of(str), "media_type": const(*IMAGE_TYPES), "data": base64_data}),
        "url": obj({"type": of(str), "url": of(str)}),
    }
)
_DOCUMENT_SOURCE = by_type(
    {
        "base64": obj({"type": of(str), "media_type": const("application/pdf"), "data": base64_data}),
        "url": obj({"type": of(str), "url": of(str)}),
        "text": obj({"type": of(str), "media_type": const("text/plain"), "data": of(str)}),
    }
)
_BLOCK = by_type(
    {
        "text": obj({"type": of(str), "text": of(str)}, {"citations": any_json, "cache_control": of(dict)}),
        "image": obj({"type": of(str), "source": _IMAGE_SOURCE}, {"cache_control": of(dict)}),
        "document": obj(
            {"type": of(str), "source": _DOCUMENT_SOURCE},
            {"title": of(str), "context": of(str), "citations": of(dict), "cache_control": of(dict)},
        ),
    }
)


def _content(value: Any, path: str) -> None:
    if not isinstance(value, str):
        items(_BLOCK, non_empty=True)(value, path)


def _tool(value: Any, path: str) -> None:
    if isinstance(value, dict) and value.get("type") == "web_search_20250305":
        obj(
            {"type": of(str), "name": const("web_search")},
            {"max_uses": of(int), "allowed_domains": items(of(str)), "blocked_domains": items(of(str))},
        )(value, path)
        return
    obj(
        {
            "name": of(str),
            "input_schema": obj({"type": const("object")}, {"properties": of(dict), "required": any_json}),
        },
        {"description": of(str), "type": const("custom"), "cache_control": of(dict)},
    )(value, path)


_BODY = obj(
    {
        "model": of(str),
        "max_tokens": of(int),
        "messages": items(obj({"role": const("user", "assistant"), "content": _content}), non_empty=True),
    },
    {
        "stream": of(bool),
        "system": of(str, list),
        "thinking": by_type(
            {"enabled": obj({"type": of(str), "budget_tokens": of(int)}), "disabled": obj({"type": of(str)})}
        ),
        "tools": items(_tool),
        "tool_choice": of(dict),
        "output_config": obj(
            {}, {"format": obj({"type": const("json_schema"), "schema": of(dict)}), "effort": of(str)}
        ),
        "temperature": of(int, float),
        "stop_sequences": items(of(str)),
        "metadata": of(dict),
    },
)


class FakeAnthropic(LoopbackFake):
    """The Messages API."""

    def check(self, path: str, headers: dict[str, str], body: Any) -> None:
        if path != "/v1/messages":
            raise Invalid(f"{path}: no such endpoint")
        if not headers.get("x-api-key"):
            raise Invalid("x-api-key: header is required")
        if not headers.get("anthropic-version"):
            raise Invalid("anthropic-version: header is required")
        _BODY(body, "body")
        if body["max_tokens"] < 1:
            raise Invalid("body.max_tokens: must be at least 1")
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled":
            if thinking["budget_tokens"] < 1024:
                raise Invalid("body.thinking.budget_tokens: must be at least 1024")
            if thinking["budget_tokens"] >= body["max_tokens"]:
                raise Invalid("body.max_tokens: must be greater than thinking.budget_tokens")
        if body["messages"][0]["role"] != "user":
            raise Invalid("body.messages[0].role: the first message must use the user role")

    def error_body(self, status: int, message: str) -> Any:
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}

    def frames(self, body: Any) -> list[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, **fields}, kind)

        tools = body.get("tools", [])
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": body["model"],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 11,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 2,
                "output_tokens": 1,
            },
        }
        out = [event("message_start", message=message)]
        index = 0
        if (body.get("thinking") or {}).get("type") == "enabled":
            out.append(event("content_block_start", index=index, content_block={"type": "thinking", "thinking": ""}))
            for piece in ("Weighing", " the question."):
                out.append(
                    event("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": piece})
                )
            out.append(
                event("content_block_delta", index=index, delta={"type": "signature_delta", "signature": "EqQB"})
            )
            out.append(event("content_block_stop", index=index))
            index += 1
        searched = any(t.get("type") == "web_search_20250305" for t in tools)
        if searched:
            use = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
            result = {
                "type": "web_search_tool_result",
                "tool_use_id": "srvtoolu_1",
                "content": [
                    {
                        "type": "web_search_result",
                        **CITED,
                        "encrypted_content": "EqgfCioIARgB",
                        "page_age": "May 1, 2026",
                    }
                ],
            }
            out += [
                event("content_block_start", index=index, content_block=use),
                event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": ""}),
                event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": '{"query": "hello"}'},
                ),
                event("content_block_stop", index=index),
                event("content_block_start", index=index + 1, content_block=result),
                event("content_block_stop", index=index + 1),
            ]
            index += 2
        out.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        out.append(event("ping"))
        if searched:
            citation = {
                "type": "web_search_result_location",
                **CITED,
                "encrypted_index": "Eo8BCioIAhgB",
                "cited_text": "Hello, world",
            }
            out.append(
                event("content_block_delta", index=index, delta={"type": "citations_delta", "citation": citation})
            )
        for token in TOKENS:
            out.append(event("content_block_delta", index=index, delta={"type": "text_delta", "text": token}))
        out.append(event("content_block_stop", index=index))
        index += 1
        custom = [t for t in tools if "input_schema" in t]
        if custom:
            use = {"type": "tool_use", "id": "toolu_1", "name": custom[0]["name"], "input": {}}
            out.append(event("content_block_start", index=index, content_block=use))
            for piece in ("", '{"city"', ': "Paris"}'):
                out.append(
                    event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": piece})
                )
            out.append(event("content_block_stop", index=index))
        reason = "tool_use" if custom else "end_turn"
        out.append(
            event("message_delta", delta={"stop_reason": reason, "stop_sequence": None}, usage={"output_tokens": 9})
        )
        out.append(event("message_stop"))
        return out
