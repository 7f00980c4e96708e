"""OpenAI's media endpoints on a loopback port, strict as the API reference describes them:
`/v1/images/generations` (JSON), `/v1/images/edits` (a multipart form with `image[]` files) and
`/v1/audio/speech` (JSON; `instructions` only for models other than `tts-1` and `tts-1-hd`).
A body with an unknown field, a missing required one or a bad value is 400 with OpenAI's error
body; ``requests`` records (path, headers, body or form) of every call."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from fakeschema import integer, one_of, schema, serve

PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108020000009077"
        "53de0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
    )
).decode()

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav"}
GENERATIONS = schema(
    "model prompt",
    "n size quality background moderation output_format output_compression user",
    checks={"n": integer, "output_compression": integer},
)
EDIT_FIELDS = frozenset(
    {"model", "prompt", "n", "size", "quality", "background", "input_fidelity", "output_format", "user"}
)
SPEECH = schema(
    "model input voice",
    "instructions response_format speed",
    checks={"voice": one_of(*VOICES), "response_format": one_of(*FORMATS), "speed": lambda v: isinstance(v, float)},
)


def error(status: int, message: str, param: str | None = None) -> web.Response:
    """OpenAI's error body."""
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return web.json_response(body, status=status)


class FakeOpenAIMedia:
    """OpenAI's images and speech API on a free loopback port. Set ``scenario`` before a call:
    ``normal``, ``429``, ``500``, or a malformed answer (``not_json``, ``wrong_shape``,
    ``bad_usage``, ``bad_base64``)."""

    def __init__(self) -> None:
        self.scenario = "normal"
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/images/generations", self.generations)
        app.router.add_post("/v1/images/edits", self.edits)
        app.router.add_post("/v1/audio/speech", self.speech)
        self._runner, port = await serve(app)
        return f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _json(self, request: web.Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append((request.path, dict(request.headers), body))
        return body

    def _scripted(self) -> web.Response | None:
        if self.scenario == "429":
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": None}},
                status=429,
                headers={"retry-after": "3"},
            )
        if self.scenario == "500":
            return error(500, "The server had an error")
        return None

    def _image_answer(self) -> web.Response:
        answers = {
            "not_json": web.Response(text="upstream error", content_type="text/plain"),
            "wrong_shape": web.json_response({"data": ["x"]}),
            "bad_usage": web.json_response({"data": [{"b64_json": PNG_1X1}], "usage": {"input_tokens": "abc"}}),
            "bad_base64": web.json_response({"data": [{"b64_json": "%%%"}]}),
        }
        if self.scenario in answers:
            return answers[self.scenario]
        usage = {"input_tokens": 9, "output_tokens": 272, "total_tokens": 281}
        return web.json_response({"created": 1, "data": [{"b64_json": PNG_1X1}], "usage": usage})

    async def generations(self, request: web.Request) -> web.Response:
        problems = GENERATIONS.problems(await self._json(request))
        if problems:
            return error(400, "; ".join(problems))
        return self._scripted() or self._image_answer()

    async def edits(self, request: web.Request) -> web.Response:
        """A multipart form: fields as strings, each `image[]` file as (filename, content type, size)."""
        if not request.content_type.startswith("multipart/form-data"):
            self.requests.append((request.path, dict(request.headers), await request.text()))
            return error(400, "Invalid Content-Type header; expected multipart/form-data")
        form = await request.post()
        fields: dict[str, Any] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                fields.setdefault(key, []).append((value.filename, value.content_type, len(value.file.read())))
            else:
                fields[key] = value
        self.requests.append((request.path, dict(request.headers), fields))
        unknown = set(fields) - EDIT_FIELDS - {"image[]"}
        if unknown:
            return error(400, f"Unrecognized request argument supplied: {sorted(unknown)[0]}", sorted(unknown)[0])
        if not fields.get("image[]"):
            return error(400, "image is required", "image")
        if not fields.get("model") or not fields.get("prompt"):
            return error(400, "model and prompt are required")
        return self._scripted() or self._image_answer()

    async def speech(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        problems = SPEECH.problems(body)
        if not problems and body["model"] in ("tts-1", "tts-1-hd") and "instructions" in body:
            problems = ["instructions is not supported for tts-1 and tts-1-hd"]
        if problems:
            return error(400, "; ".join(problems))
        scripted = self._scripted()
        if scripted is not None:
            return scripted
        fmt = body.get("response_format", "mp3")
        return web.Response(body=b"RIFF$\x00\x00\x00WAVEfmt ", content_type=FORMATS[fmt])
