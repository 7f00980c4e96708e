"""OpenAI's Responses API (`POST /v1/responses`, streaming) on loopback.

The request is checked as the API documents it: the fields of the body, of each input message and
content part (`input_text`, `input_image`, `input_file`), of `reasoning`, of `text.format` and of
each tool (`web_search`, `function`); anything else is a 400 with OpenAI's error body. The answer
replays the documented event sequence: created, in_progress, a reasoning summary when reasoning
was asked for, a web search call and a `url_citation` annotation when the web_search tool was
given, the message's text deltas, a function call when function tools were given, and completed
with usage.
"""

from __future__ import annotations

from typing import Any

from fake_http import (
    Invalid,
    LoopbackFake,
    any_json,
    by_type,
    const,
    data_or_url,
    items,
    obj,
    of,
    sse,
)

TOKENS = ["Hel", "lo", ",", " world", "!"]
CITED = {"url": "https://example.org/source", "title": "Example source"}

_PART = by_type(
    {
        "input_text": obj({"type": of(str), "text": of(str)}),
        "input_image": obj(
            {"type": of(str), "image_url": data_or_url}, {"detail": const("low", "high", "auto"), "file_id": of(str)}
        ),
        "input_file": obj({"type": of(str)}, {"file_data": data_or_url, "filename": of(str), "file_url": of(str)}),
        "output_text": obj({"type": of(str), "text": of(str)}, {"annotations": items(any_json)}),
    }
)


def _content(value: Any, path: str) -> None:
    if isinstance(value, str):
        return
    items(_PART, non_empty=True)(value, path)
    for i, part in enumerate(value):
        if part["type"] == "input_file" and "file_data" in part and "filename" not in part:
            raise Invalid(f"{path}[{i}].filename: required with file_data")
        if part["type"] == "input_file" and not ({"file_data", "file_url"} & part.keys()):
            raise Invalid(f"{path}[{i}]: one of file_data, file_url or file_id is required")


_MESSAGE = obj(
    {"role": const("user", "assistant", "system", "developer"), "content": _content}, {"type": const("message")}
)
_FORMAT = by_type(
    {
        "text": obj({"type": of(str)}),
        "json_object": obj({"type": of(str)}),
        "json_schema": obj(
            {"type": of(str), "name": of(str), "schema": of(dict)}, {"strict": of(bool), "description": of(str)}
        ),
    }
)
_TOOL = by_type(
    {
        "web_search": obj(
            {"type": of(str)},
            {"search_context_size": const("low", "medium", "high"), "user_location": of(dict), "filters": of(dict)},
        ),
        "function": obj(
            {"type": of(str), "name": of(str), "parameters": of(dict)}, {"strict": of(bool), "description": of(str)}
        ),
    }
)
_BODY = obj(
    {"model": of(str), "input": items(_MESSAGE, non_empty=True)},
    {
        "stream": const(True),
        "instructions": of(str),
        "max_output_tokens": of(int),
        "reasoning": obj(
            {},
            {
                "effort": const("none", "minimal", "low", "medium", "high", "xhigh"),
                "summary": const("auto", "concise", "detailed"),
            },
        ),
        "text": obj({}, {"format": _FORMAT, "verbosity": const("low", "medium", "high")}),
        "tools": items(_TOOL),
        "tool_choice": any_json,
        "temperature": of(int, float),
        "store": of(bool),
    },
)


class FakeOpenAIResponses(LoopbackFake):
    """The Responses API; the base URL it gives ends in /v1, as OpenAI's does."""

    async def start(self) -> str:
        return await super().start() + "/v1"

    def check(self, path: str, headers: dict[str, str], body: Any) -> None:
        if path != "/v1/responses":
            raise Invalid(f"{path}: no such endpoint")
        if not headers.get("Authorization", "").startswith("Bearer "):
            raise Invalid("Authorization: a Bearer key is required")
        _BODY(body, "body")
        if "stream" not in body:
            raise Invalid("body.stream: this fake answers streams only")
        if body.get("max_output_tokens", 16) < 16:
            raise Invalid("body.max_output_tokens: must be at least 16")
        if any(t["type"] == "function" and not t["name"].replace("_", "").isalnum() for t in body.get("tools", [])):
            raise Invalid("body.tools[].name: letters, digits and underscores only")

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}

    def frames(self, body: Any) -> list[bytes]:
        seq = iter(range(1000))

        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        tools = body.get("tools", [])
        response = {"id": "resp_1", "object": "response", "status": "in_progress", "model": body["model"]}
        out = [event("response.created", response=response), event("response.in_progress", response=response)]
        index = 0
        if "reasoning" in body:
            item = {"id": "rs_1", "type": "reasoning", "summary": []}
            out.append(event("response.output_item.added", output_index=index, item=item))
            for piece in ("Weighing", " the question."):
                out.append(
                    event(
                        "response.reasoning_summary_text.delta",
                        item_id="rs_1",
                        output_index=index,
                        summary_index=0,
                        delta=piece,
                    )
                )
            out.append(event("response.output_item.done", output_index=index, item=item))
            index += 1
        searched = any(t["type"] == "web_search" for t in tools)
        if searched:
            call = {"id": "ws_1", "type": "web_search_call", "status": "completed"}
            out += [
                event("response.output_item.added", output_index=index, item=call),
                event("response.web_search_call.in_progress", output_index=index, item_id="ws_1"),
                event("response.web_search_call.searching", output_index=index, item_id="ws_1"),
                event("response.web_search_call.completed", output_index=index, item_id="ws_1"),
                event("response.output_item.done", output_index=index, item=call),
            ]
            index += 1
        message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(event("response.output_item.added", output_index=index, item=message))
        out.append(
            event("response.content_part.added", item_id="msg_1", output_index=index, content_index=0, part=part)
        )
        for token in TOKENS:
            out.append(
                event("response.output_text.delta", item_id="msg_1", output_index=index, content_index=0, delta=token)
            )
        if searched:
            note = {"type": "url_citation", "start_index": 0, "end_index": len("".join(TOKENS)), **CITED}
            out.append(
                event(
                    "response.output_text.annotation.added",
                    item_id="msg_1",
                    output_index=index,
                    content_index=0,
                    annotation_index=0,
                    annotation=note,
                )
            )
        out.append(
            event(
                "response.output_text.done", item_id="msg_1", output_index=index, content_index=0, text="".join(TOKENS)
            )
        )
        out.append(event("response.output_item.done", output_index=index, item={**message, "status": "completed"}))
        index += 1
        functions = [t for t in tools if t["type"] == "function"]
        if functions:
            call = {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "call_1",
                "name": functions[0]["name"],
                "arguments": "",
                "status": "in_progress",
            }
            out.append(event("response.output_item.added", output_index=index, item=call))
            for piece in ('{"city"', ': "Paris"}'):
                out.append(
                    event("response.function_call_arguments.delta", item_id="fc_1", output_index=index, delta=piece)
                )
            done = {**call, "arguments": '{"city": "Paris"}', "status": "completed"}
            out.append(event("response.output_item.done", output_index=index, item=done))
        usage = {
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 9,
            "output_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 20,
        }
        out.append(event("response.completed", response={**response, "status": "completed", "usage": usage}))
        return out
