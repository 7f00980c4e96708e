"""fal's queue API on a loopback port, strict about each endpoint's input as fal's model pages
document it: an unknown endpoint is 404, an input with an unknown field, a missing required field
or a value of the wrong type is 422 with fal's `detail` list. Submit, status, result and cancel
follow the queue protocol; scenarios script failures and malformed answers."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from fakeschema import Schema, boolean, file_url, one_of, schema, serve, url_list

_COMMON = {
    "generate_audio": boolean,
    "image_url": file_url,
    "start_image_url": file_url,
    "end_image_url": file_url,
    "video_url": file_url,
    "image_urls": url_list,
    "video_urls": url_list,
    "audio_urls": url_list,
    "enable_web_search": boolean,
    "sync_mode": boolean,
    "auto_fix": boolean,
    "enhance_prompt": boolean,
    "keep_audio": boolean,
    "shot_type": one_of("customize", "intelligent"),
    "duration": lambda v: isinstance(v, str),
    "num_images": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "multi_prompt": lambda v: isinstance(v, list),
    "elements": lambda v: isinstance(v, list),
    "cfg_scale": lambda v: isinstance(v, (int, float)),
    "stability": lambda v: isinstance(v, (int, float)),
    "similarity_boost": lambda v: isinstance(v, (int, float)),
    "style": lambda v: isinstance(v, (int, float)),
    "speed": lambda v: isinstance(v, (int, float)),
    "timestamps": boolean,
}

_VEO = "aspect_ratio duration negative_prompt resolution generate_audio seed auto_fix"
_SEEDANCE = "aspect_ratio resolution duration generate_audio seed"
_KLING3 = "prompt multi_prompt shot_type duration generate_audio negative_prompt cfg_scale elements"
_KLINGO3 = "prompt multi_prompt shot_type duration generate_audio elements"
_IMAGE = "num_images output_format aspect_ratio sync_mode"


def _s(required: str, optional: str, **kw: str) -> Schema:
    return schema(required, optional, checks=_COMMON, **kw)


ENDPOINTS: dict[str, Schema] = {}
for _v in ("fal-ai/veo3.1", "fal-ai/veo3.1/fast"):
    ENDPOINTS[_v] = _s("prompt", _VEO + " enhance_prompt")
    ENDPOINTS[f"{_v}/image-to-video"] = _s("prompt image_url", _VEO)
    ENDPOINTS[f"{_v}/first-last-frame-to-video"] = _s("prompt first_frame_url last_frame_url", _VEO)
    ENDPOINTS[f"{_v}/extend-video"] = _s("prompt video_url", _VEO)
ENDPOINTS["fal-ai/veo3.1/reference-to-video"] = _s(
    "prompt image_urls", "duration resolution generate_audio seed auto_fix"
)
for _v in ("bytedance/seedance-2.0", "bytedance/seedance-2.0/fast"):
    ENDPOINTS[f"{_v}/text-to-video"] = _s("prompt", _SEEDANCE)
    ENDPOINTS[f"{_v}/image-to-video"] = _s("prompt image_url", _SEEDANCE + " end_image_url")
    ENDPOINTS[f"{_v}/reference-to-video"] = _s(
        "prompt", _SEEDANCE + " image_urls video_urls audio_urls", one_required="image_urls video_urls audio_urls"
    )
for _v in ("fal-ai/kling-video/v3/standard", "fal-ai/kling-video/v3/pro"):
    ENDPOINTS[f"{_v}/text-to-video"] = _s("", _KLING3 + " aspect_ratio", one_required="prompt multi_prompt")
    ENDPOINTS[f"{_v}/image-to-video"] = _s(
        "start_image_url", _KLING3 + " end_image_url", one_required="prompt multi_prompt"
    )
for _v in ("fal-ai/kling-video/o3/standard", "fal-ai/kling-video/o3/pro"):
    ENDPOINTS[f"{_v}/text-to-video"] = _s("", _KLINGO3 + " aspect_ratio", one_required="prompt multi_prompt")
    ENDPOINTS[f"{_v}/image-to-video"] = _s("image_url", _KLINGO3 + " end_image_url", one_required="prompt multi_prompt")
    ENDPOINTS[f"{_v}/reference-to-video"] = _s("prompt", "image_urls elements duration aspect_ratio generate_audio")
    ENDPOINTS[f"{_v}/video-to-video/edit"] = _s("prompt video_url", "image_urls elements keep_audio")
    ENDPOINTS[f"{_v}/video-to-video/reference"] = _s(
        "prompt video_url", "image_urls elements keep_audio duration aspect_ratio"
    )
ENDPOINTS["fal-ai/gemini-25-flash-image"] = _s("prompt", _IMAGE)
ENDPOINTS["fal-ai/gemini-25-flash-image/edit"] = _s("prompt image_urls", _IMAGE)
for _v in ("fal-ai/gemini-3.1-flash-image-preview", "fal-ai/gemini-3-pro-image-preview"):
    ENDPOINTS[_v] = _s("prompt", _IMAGE + " resolution enable_web_search")
    ENDPOINTS[f"{_v}/edit"] = _s("prompt image_urls", _IMAGE + " resolution enable_web_search")
ENDPOINTS["fal-ai/elevenlabs/tts/eleven-v3"] = _s(
    "text", "voice stability language_code apply_text_normalization timestamps"
)
ENDPOINTS["fal-ai/elevenlabs/tts/turbo-v2.5"] = _s(
    "text", "voice stability similarity_boost style speed timestamps previous_text next_text language_code"
)


def output_kind(endpoint: str) -> str:
    """What an endpoint answers: ``images``, ``audio`` or ``video``."""
    if "elevenlabs" in endpoint:
        return "audio"
    return "images" if "image" in endpoint.split("/")[1] else "video"


class FakeFal:
    """fal's queue on a free loopback port. ``submitted`` records (endpoint, headers, input) of
    every accepted or rejected submission; ``scenario`` scripts the next calls."""

    def __init__(self, polls_before_done: int = 1) -> None:
        self.polls_before_done = polls_before_done
        self.scenario = "normal"
        self.submitted: list[tuple[str, dict[str, str], Any]] = []
        self.rejected: list[tuple[str, list[str]]] = []
        self.cancelled = asyncio.Event()
        self._polls: dict[str, int] = {}
        self._endpoint_of: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{app:.*}/requests/{rid}/status", self.status)
        app.router.add_put("/{app:.*}/requests/{rid}/cancel", self.cancel)
        app.router.add_get("/{app:.*}/requests/{rid}", self.result)
        app.router.add_post("/{endpoint:.*}", self.submit)
        self._runner, port = await serve(app)
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def submit(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.submitted.append((endpoint, dict(request.headers), body))
        if not request.headers.get("Authorization", "").startswith("Key "):
            return web.json_response({"detail": "Unauthorized"}, status=401)
        if endpoint not in ENDPOINTS:
            return web.json_response({"detail": f"Application {endpoint!r} not found"}, status=404)
        problems = ENDPOINTS[endpoint].problems(body)
        if problems:
            self.rejected.append((endpoint, problems))
            detail = [{"loc": ["body", p.split(":")[0]], "msg": p, "type": "value_error"} for p in problems]
            return web.json_response({"detail": detail}, status=422)
        if self.scenario == "429":
            return web.json_response({"detail": "Too many requests"}, status=429, headers={"retry-after": "5"})
        rid = f"req-{len(self.submitted)}"
        self._endpoint_of[rid] = endpoint
        app = "/".join(endpoint.split("/")[:2])  # fal answers with URLs under the app id
        url = f"{self.base}/{app}/requests/{rid}"
        return web.json_response(
            {
                "request_id": rid,
                "status_url": f"{url}/status",
                "response_url": url,
                "cancel_url": f"{url}/cancel",
                "queue_position": 0,
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        self._polls[rid] = self._polls.get(rid, 0) + 1
        if self.scenario == "bad_status":
            return web.json_response({"status": 5})
        if self.scenario == "forever" or self._polls[rid] <= self.polls_before_done:
            return web.json_response({"status": "IN_QUEUE" if self._polls[rid] == 1 else "IN_PROGRESS"})
        return web.json_response({"status": "COMPLETED"})

    async def result(self, request: web.Request) -> web.Response:
        endpoint = self._endpoint_of.get(request.match_info["rid"], "")
        kind = output_kind(endpoint) if endpoint else "video"
        bad = {
            "500": web.json_response({"detail": "Internal error"}, status=500),
            "not_json": web.Response(text="<html>oops</html>", content_type="text/html"),
            "list": web.json_response(["x"]),
            "wrong_shape": web.json_response({"images": ["x"], "video": {"url": 5}, "audio": "a"}),
        }
        if self.scenario in bad:
            return bad[self.scenario]
        if kind == "audio":
            return web.json_response({"audio": {"url": "https://fal.media/files/a.mp3", "content_type": "audio/mpeg"}})
        if kind == "images":
            image = {"url": "https://fal.media/files/i.png", "content_type": "image/png", "width": 1024, "height": 1024}
            return web.json_response({"images": [image], "description": ""})
        return web.json_response({"video": {"url": "https://fal.media/files/v.mp4", "content_type": "video/mp4"}})

    async def cancel(self, request: web.Request) -> web.Response:
        self.cancelled.set()
        return web.json_response({"status": "CANCELLATION_REQUESTED"})
