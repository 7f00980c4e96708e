"""The Chat Completions API (`POST /v1/chat/completions`, streaming) that OpenAI-compatible servers
(vLLM, Ollama, llama.cpp) and xAI speak, on loopback.

The request is checked as the API documents it: the body's fields, each message (a string or a
list of `text` and `image_url` parts), `response_format` and function tools; anything else is a
400 with OpenAI's error body. The answer replays chunks with the text deltas, a tool call when
tools are given, the finish reason, a usage chunk and `[DONE]`.
"""

from __future__ import annotations

from typing import Any

from fake_http import Invalid, LoopbackFake, by_type, const, data_or_url, items, obj, of, sse

TOKENS = ["Hel", "lo", ",", " world", "!"]

_PART = by_type(
    {
        "text": obj({"type": of(str), "text": of(str)}),
        "image_url": obj({"type": of(str), "image_url": obj({"url": data_or_url}, {"detail": of(str)})}),
    }
)


def _content(value: Any, path: str) -> None:
    if not isinstance(value, str):
        items(_PART, non_empty=True)(value, path)


_BODY = obj(
    {
        "model": of(str),
        "messages": items(
            obj({"role": const("system", "user", "assistant", "tool"), "content": _content}, {"name": of(str)}),
            non_empty=True,
        ),
    },
    {
        "stream": const(True),
        "stream_options": obj({}, {"include_usage": of(bool)}),
        "max_completion_tokens": of(int),
        "response_format": by_type(
            {
                "json_schema": obj(
                    {"type": of(str), "json_schema": obj({"name": of(str), "schema": of(dict)}, {"strict": of(bool)})}
                ),
                "json_object": obj({"type": of(str)}),
                "text": obj({"type": of(str)}),
            }
        ),
        "tools": items(
            obj(
                {
                    "type": const("function"),
                    "function": obj({"name": of(str)}, {"description": of(str), "parameters": of(dict)}),
                }
            )
        ),
        "temperature": of(int, float),
    },
)


class FakeOpenAIChat(LoopbackFake):
    """Chat Completions; the base URL it gives ends in /v1."""

    async def start(self) -> str:
        return await super().start() + "/v1"

    def check(self, path: str, headers: dict[str, str], body: Any) -> None:
        if path != "/v1/chat/completions":
            raise Invalid(f"{path}: no such endpoint")
        _BODY(body, "body")

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    def frames(self, body: Any) -> list[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return sse({"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "choices": [choice]})

        out = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": t}) for t in TOKENS]
        tools = body.get("tools", [])
        if tools:
            call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": tools[0]["function"]["name"]}}
            out.append(chunk({"tool_calls": [{**call, "function": {**call["function"], "arguments": ""}}]}))
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]}))
        out.append(chunk({}, "tool_calls" if tools else "stop"))
        usage = {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}
        out.append(
            sse({"id": "c1", "object": "chat.completion.chunk", "model": body["model"], "choices": [], "usage": usage})
        )
        out.append(sse("[DONE]"))
        return out
