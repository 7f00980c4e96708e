"""xAI's image and video API on a loopback port, strict as its reference describes it:
`/v1/images/generations` and `/v1/images/edits` (JSON only; the input image as `image:
{url, type}` or several as `images`), `/v1/videos/generations` (`image: {url}` or
`reference_images: [{url}]`), `/v1/videos/edits` and `/v1/videos/extensions` (`video: {url}`),
polled at `GET /v1/videos/{request_id}`. A body with an unknown field, a missing required one or a
bad value is 400; ``requests`` records (path, headers, body) of every call."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from fake_openai_media import PNG_1X1, error
from fakeschema import integer, one_of, schema, serve, url_object, url_objects

IMAGES = schema(
    "model prompt",
    "n response_format aspect_ratio resolution",
    checks={"n": integer, "response_format": one_of("url", "b64_json")},
)
EDITS = schema(
    "model prompt",
    "image images n response_format aspect_ratio resolution",
    checks={"image": url_object, "images": url_objects, "n": integer, "response_format": one_of("url", "b64_json")},
    one_required="image images",
    exclusive="image images",
)
_VIDEO_OPTIONS = {"image": url_object, "reference_images": url_objects, "video": url_object, "duration": integer}
VIDEOS = schema(
    "model prompt",
    "image reference_images duration aspect_ratio resolution",
    checks=_VIDEO_OPTIONS,
    exclusive="image reference_images",
)
VIDEO_EDITS = schema("model prompt video", "duration aspect_ratio resolution", checks=_VIDEO_OPTIONS)
EXTENSIONS = schema("model prompt video", "duration", checks=_VIDEO_OPTIONS)
SCHEMAS = {
    "/v1/images/generations": IMAGES,
    "/v1/images/edits": EDITS,
    "/v1/videos/generations": VIDEOS,
    "/v1/videos/edits": VIDEO_EDITS,
    "/v1/videos/extensions": EXTENSIONS,
}


class FakeXai:
    """xAI's media API on a free loopback port. Set ``scenario`` before a call: ``normal``,
    ``429``, ``failed`` (the video job fails), or a malformed answer (``wrong_shape``,
    ``bad_status``)."""

    def __init__(self) -> None:
        self.scenario = "normal"
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self._polls: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/videos/{rid}", self.video_status)
        app.router.add_post("/v1/{kind}/{action}", self.handle)
        self._runner, port = await serve(app)
        return f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append((request.path, dict(request.headers), body))
        if request.path not in SCHEMAS:
            return error(404, f"no route {request.path}")
        if request.content_type != "application/json":
            return error(415, "the body must be application/json")
        problems = SCHEMAS[request.path].problems(body)
        if problems:
            return error(400, "; ".join(problems))
        if self.scenario == "429":
            return error(429, "Too many requests")
        if self.scenario == "wrong_shape":
            return web.json_response({"data": [5], "request_id": 7})
        if request.path.startswith("/v1/images/"):
            return web.json_response({"data": [{"b64_json": PNG_1X1}]})
        rid = f"vid-{len(self.requests)}"
        return web.json_response({"request_id": rid})

    async def video_status(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self._polls[rid] = self._polls.get(rid, 0) + 1
        if self.scenario == "bad_status":
            return web.json_response({"status": "weird"})
        if self._polls[rid] < 2:
            return web.json_response({"status": "pending"})
        if self.scenario == "failed":
            return web.json_response({"status": "failed"})
        video = {"url": "https://vidgen.x.ai/v.mp4", "duration": 6}
        return web.json_response({"status": "done", "model": "grok-imagine-video", "video": video})
