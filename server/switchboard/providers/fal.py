"""fal's queue API for image, video and speech models (`fal-ai/...`, and the ElevenLabs and
Seedance models the catalog routes through fal).

Submit `POST {queue}/{endpoint}` (header `Authorization: Key <FAL_KEY>`) → `request_id`,
`status_url`, `response_url`, `cancel_url`; poll `GET status_url` until `COMPLETED`; read the
output from `GET response_url`: `images[].url`, `video.url` or `audio.url`. A cancelled call
sends `PUT cancel_url`.

fal serves each mode of a model at its own endpoint with its own input fields. The mode comes
from the request's inputs (no attachment: text-to-video or image generation; images: image-to-
video, reference images or an image edit; a video: edit, extension or video reference, as the
request asks) and its endpoint from the model's route (`modeEndpoints`). Attachments given as bytes
are sent as data URIs, which fal accepts wherever it takes a file URL. An input the chosen
endpoint has no field for is refused (`PROVIDER_UNSUPPORTED_INPUT`, retryable), never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import HttpProvider, data_uri
from switchboard.providers.http import Endpoint, HttpError, Response, bad_response, check_status, from_exception
from switchboard.providers.simulated import estimate_tokens, request_text
from switchboard.types import (
    Artifact,
    Attachment,
    Capability,
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
    Model,
    ProviderEvent,
    Usage,
)

C = Capability


@dataclass(frozen=True, slots=True)
class Fields:
    """The input fields one mode of a fal endpoint takes, besides ``prompt``."""

    first_frame: str = ""
    """The field of the first (or only) image, for example ``image_url`` or ``start_image_url``."""
    last_frame: str = ""
    """The field of a second image, the last frame, where the endpoint takes one."""
    images: str = ""
    """The field of a list of images (``image_urls``)."""
    video: str = ""
    """The field of the input video (``video_url``)."""
    audio: bool = False
    """The endpoint takes ``generate_audio``."""
    shots: bool = False
    """The endpoint takes ``shot_type`` (``intelligent``: the model plans the shots of one prompt)."""
    web_search: bool = False
    """The endpoint takes ``enable_web_search``."""


_VEO = Fields(audio=True)
FAMILIES: tuple[tuple[str, Mapping[Capability, Fields]], ...] = (
    (
        "fal-ai/veo3.1",
        {
            C.TEXT_TO_VIDEO: _VEO,
            C.IMAGE_TO_VIDEO: Fields(first_frame="image_url", audio=True),
            C.REFERENCE_IMAGES: Fields(images="image_urls", audio=True),
            C.VIDEO_EXTENSION: Fields(video="video_url", audio=True),
        },
    ),
    (
        "bytedance/seedance-2.0",
        {
            C.TEXT_TO_VIDEO: Fields(audio=True),
            C.IMAGE_TO_VIDEO: Fields(first_frame="image_url", last_frame="end_image_url", audio=True),
            C.REFERENCE_IMAGES: Fields(images="image_urls", audio=True),
        },
    ),
    (
        "fal-ai/kling-video/v3",
        {
            C.TEXT_TO_VIDEO: Fields(audio=True, shots=True),
            C.IMAGE_TO_VIDEO: Fields(first_frame="start_image_url", last_frame="end_image_url", audio=True, shots=True),
        },
    ),
    (
        "fal-ai/kling-video/o3",
        {
            C.TEXT_TO_VIDEO: Fields(audio=True),
            C.IMAGE_TO_VIDEO: Fields(first_frame="image_url", last_frame="end_image_url", audio=True),
            C.VIDEO_REFERENCE: Fields(video="video_url", images="image_urls"),
            C.VIDEO_EDITING: Fields(video="video_url", images="image_urls"),
        },
    ),
    (
        "fal-ai/gemini-3-pro-image-preview",
        {
            C.IMAGE_GENERATION: Fields(web_search=True),
            C.IMAGE_EDITING: Fields(images="image_urls", web_search=True),
        },
    ),
)
"""Model families by upstream name prefix (the first match counts), from fal's model pages."""

GENERIC: Mapping[Modality, Mapping[Capability, Fields]] = {
    Modality.IMAGE: {C.IMAGE_GENERATION: Fields(), C.IMAGE_EDITING: Fields(images="image_urls")},
    Modality.VIDEO: {
        C.TEXT_TO_VIDEO: Fields(),
        C.IMAGE_TO_VIDEO: Fields(first_frame="image_url"),
        C.REFERENCE_IMAGES: Fields(images="image_urls"),
        C.VIDEO_EDITING: Fields(video="video_url"),
        C.VIDEO_EXTENSION: Fields(video="video_url"),
    },
    Modality.SPEECH: {C.TEXT_TO_SPEECH: Fields()},
}
"""The field names most fal endpoints use, for models of no family above (the Gemini image models
and ElevenLabs among them)."""

BASE_MODES = frozenset({C.TEXT_TO_VIDEO, C.IMAGE_GENERATION, C.TEXT_TO_SPEECH})
"""Modes served at the model's own upstream name when the route names no endpoint for them."""


def modes(model: Model) -> Mapping[Capability, Fields]:
    """The fields of each mode fal offers for ``model``'s family."""
    for prefix, family in FAMILIES:
        if model.upstream_model.startswith(prefix):
            return family
    return GENERIC.get(model.modality, {})


def encodes(model: Model) -> frozenset[Capability]:
    """What this adapter carries to fal for ``model``: each mode its family has fields for and its
    route names an endpoint for (base modes need none), and the options those modes take."""
    routed = {c for c, _ in model.mode_endpoints}
    out: set[Capability] = set()
    for mode, fields in modes(model).items():
        if mode in BASE_MODES or mode in routed:
            out.add(mode)
            out |= {c for c, on in ((C.NATIVE_AUDIO, fields.audio), (C.MULTI_SHOT, fields.shots)) if on}
            if fields.web_search:
                out.add(C.WEB_SEARCH)
    return frozenset(out)


def choose_mode(model: Model, request: GenerationRequest, images: list[str], videos: list[str]) -> Capability:
    """The mode the request's inputs ask for."""
    wanted = request.selection.requirements.capabilities
    if model.modality is Modality.SPEECH:
        return C.TEXT_TO_SPEECH
    if model.modality is Modality.IMAGE:
        return C.IMAGE_EDITING if images else C.IMAGE_GENERATION
    if videos:
        return next((m for m in (C.VIDEO_EXTENSION, C.VIDEO_REFERENCE) if m in wanted), C.VIDEO_EDITING)
    if images:
        return C.REFERENCE_IMAGES if C.REFERENCE_IMAGES in wanted else C.IMAGE_TO_VIDEO
    return C.TEXT_TO_VIDEO


def _unsupported(message: str) -> ProviderError:
    return ProviderError("PROVIDER_UNSUPPORTED_INPUT", message, retryable=True)


def build(model: Model, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """The fal endpoint and the input of the call."""
    text = request_text(request)
    if model.modality is Modality.SPEECH:
        body: dict[str, Any] = {"text": text}
        if request.options.voice:
            body["voice"] = request.options.voice
        if request.options.language:
            body["language_code"] = request.options.language
        return model.endpoint(C.TEXT_TO_SPEECH), body
    files = [*request.attachments, *(a for m in request.messages for a in m.attachments)]
    images = [_url(a) for a in files if a.mime_type.startswith("image/")]
    videos = [_url(a) for a in files if a.mime_type.startswith("video/")]
    if len(images) + len(videos) < len(files):
        raise _unsupported(f"fal {model.modality.name.lower()} calls take only image and video attachments")
    mode = choose_mode(model, request, images, videos)
    fields = modes(model).get(mode)
    if fields is None or mode not in encodes(model):
        raise _unsupported(f"{model.id} has no fal endpoint for {mode.name.lower()}")
    body = {"prompt": text}
    if images:
        if fields.first_frame and len(images) <= 1 + bool(fields.last_frame):
            body[fields.first_frame] = images[0]
            if len(images) > 1:
                body[fields.last_frame] = images[1]
        elif fields.images:
            body[fields.images] = images
        else:
            raise _unsupported(
                f"{model.id} takes no more than {1 + bool(fields.last_frame)} images for {mode.name.lower()}"
            )
    if videos:
        if not fields.video or len(videos) > 1:
            raise _unsupported(f"{model.id} takes one input video for {mode.name.lower()}")
        body[fields.video] = videos[0]
    wanted = request.selection.requirements.capabilities
    if fields.audio and C.NATIVE_AUDIO in wanted:
        body["generate_audio"] = True
    if fields.shots and C.MULTI_SHOT in wanted:
        body["shot_type"] = "intelligent"
    if fields.web_search and C.WEB_SEARCH in wanted:
        body["enable_web_search"] = True
    return model.endpoint(mode), body


def _url(attachment: Attachment) -> str:
    return attachment.uri or data_uri(attachment.mime_type, attachment.data)


class FalProvider(HttpProvider):
    """Queue-based media generation; answers with the artifact's URL."""

    modalities = frozenset({Modality.IMAGE, Modality.VIDEO, Modality.SPEECH})

    def __init__(self, name: str, endpoint: Endpoint, poll_s: float = 0.5) -> None:
        super().__init__(name, endpoint)
        self.poll_s = poll_s

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Submit, poll, fetch: one artifact, then the finish."""
        path, body = build(model, request)
        headers = {"authorization": f"Key {self.endpoint.api_key}"}
        cancel_url = ""
        try:
            job = self._json(await self._client.post(f"/{path}", headers=headers, json=body))
            status_url, response_url = job.get("status_url"), job.get("response_url")
            cancel_url = str(job.get("cancel_url") or "")
            if not isinstance(status_url, str) or not isinstance(response_url, str) or not status_url:
                raise bad_response(self.name, "a queue answer without status_url or response_url")
            while True:
                state = self._json(await self._client.get(status_url, headers=headers)).get("status")
                if state == "COMPLETED":
                    break
                if state not in ("IN_QUEUE", "IN_PROGRESS"):
                    raise bad_response(self.name, f"an unknown queue status {str(state)[:40]!r}")
                await asyncio.sleep(self.poll_s)
            cancel_url = ""
            output = self._json(await self._client.get(response_url, headers=headers))
        except HttpError as exc:
            raise from_exception(exc, self.name) from None
        finally:
            if cancel_url:  # the caller went away or the call failed while queued: free the job
                with contextlib.suppress(HttpError):
                    await asyncio.shield(self._client.put(cancel_url, headers=headers, timeout=2.0))
        yield self._artifact(model, output)
        yield Finished(FinishReason.STOP, Usage(estimate_tokens(request_text(request)), 0))

    def _json(self, response: Response) -> dict[str, Any]:
        check_status(response, self.name, self.endpoint.api_key)
        try:
            data = response.json()
        except ValueError:
            raise bad_response(self.name, "an answer that is not JSON") from None
        if not isinstance(data, dict):
            raise bad_response(self.name, "an answer that is not an object")
        return data

    def _artifact(self, model: Model, output: dict[str, Any]) -> Artifact:
        if model.modality is Modality.IMAGE:
            images = output.get("images")
            item = images[0] if isinstance(images, list) and images else None
            default = "image/png"
        else:
            item = output.get("video" if model.modality is Modality.VIDEO else "audio")
            default = "video/mp4" if model.modality is Modality.VIDEO else "audio/mpeg"
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or not url:
            raise bad_response(self.name, f"an output without the {model.modality.name.lower()} URL")
        mime = item.get("content_type") if isinstance(item, dict) else None
        return Artifact(mime if isinstance(mime, str) and "/" in mime else default, uri=url)
