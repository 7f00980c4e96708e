"""OpenAI's and xAI's media endpoints, non-streaming.

OpenAI: `POST {base}/images/generations` (answers `data[].b64_json` or `data[].url`, with
`usage`); `POST {base}/images/edits` (multipart: `model`, `prompt`, `n` and the input images as
`image[]` files; the same answer); `POST {base}/audio/speech` (`model`, `input`, `voice`,
`response_format`, and for `gpt-4o-mini-tts` the language as `instructions`; answers the audio
bytes: `tts-1` and `tts-1-hd` take no instructions and speak the language of the input text).

xAI: the same images API, with edits as JSON (`image: {url, type: "image_url"}`, or `images`
for several; bytes as data URIs); video as `POST {base}/videos/generations` (`image: {url}` for
image-to-video, `reference_images: [{url}]` for reference images), `POST {base}/videos/edits` and
`POST {base}/videos/extensions` (`video: {url}`), each answering `request_id`, polled with
`GET {base}/videos/{id}` until `status` is `done` (then `video.url`). Grok Imagine Video makes its
audio itself: native audio needs no field.

Whatever an answer holds that cannot be read is PROVIDER_BAD_RESPONSE; an input an endpoint has
no field for is refused (PROVIDER_UNSUPPORTED_INPUT, retryable), never dropped."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.base import data_uri
from switchboard.providers.http import (
    Endpoint,
    HttpError,
    Response,
    bad_response,
    check_status,
    from_exception,
)
from switchboard.providers.openai_compat import OpenAICompatProvider
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
NO_INSTRUCTIONS = frozenset({"tts-1", "tts-1-hd"})
"""OpenAI speech models that take no `instructions` (and so no language)."""


def encodes(model: Model) -> frozenset[Capability]:
    """The media capabilities this adapter carries for ``model`` on its route: OpenAI images
    (generation, edits) and speech; xAI images (generation, edits) and video (text, first frame,
    reference images, edits, extensions; native audio always on). Text models are the text
    adapter's."""
    xai = model.adapter == "xai"
    if model.modality is Modality.IMAGE:
        return frozenset({C.IMAGE_GENERATION, C.IMAGE_EDITING})
    if model.modality is Modality.SPEECH and not xai:
        return frozenset({C.TEXT_TO_SPEECH})
    if model.modality is Modality.VIDEO and xai:
        return frozenset(
            {
                C.TEXT_TO_VIDEO,
                C.IMAGE_TO_VIDEO,
                C.REFERENCE_IMAGES,
                C.VIDEO_EDITING,
                C.VIDEO_EXTENSION,
                C.NATIVE_AUDIO,
            }
        )
    return frozenset()


def _unsupported(message: str) -> ProviderError:
    return ProviderError("PROVIDER_UNSUPPORTED_INPUT", message, retryable=True)


class OpenAIProvider(OpenAICompatProvider):
    """Text through the text adapter, images through the images API, speech through the audio API
    (where ``speech`` is on) and video through xAI's video API (where ``video`` is on).
    ``json_edits`` sends image edits as xAI's JSON instead of OpenAI's multipart form."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        *,
        speech: bool = True,
        video: bool = False,
        json_edits: bool = False,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__(name, endpoint)
        extra = ({Modality.SPEECH} if speech else set()) | ({Modality.VIDEO} if video else set())
        self.modalities = frozenset({Modality.TEXT, Modality.IMAGE} | extra)
        self.json_edits = json_edits
        self.poll_s = poll_s

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Stream text; for images, video and speech, one artifact and the finish."""
        if model.modality is Modality.TEXT:
            async for event in super().stream(model, request):
                yield event
            return
        text = request_text(request)
        files = [*request.attachments, *(a for m in request.messages for a in m.attachments)]
        headers = {"authorization": f"Bearer {self.endpoint.api_key}"}
        usage = Usage(estimate_tokens(text), 0)
        try:
            if model.modality is Modality.IMAGE:
                artifact, usage = await self._image(model, text, files, headers)
            elif model.modality is Modality.VIDEO:
                artifact = await self._video(model, request, text, files, headers)
            else:
                artifact = await self._speech(model, request, text, files, headers)
        except HttpError as exc:
            raise from_exception(exc, self.name) from None
        yield artifact
        yield Finished(FinishReason.STOP, usage)

    async def _image(
        self, model: Model, text: str, files: list[Attachment], headers: dict[str, str]
    ) -> tuple[Artifact, Usage]:
        body: dict[str, Any] = {"model": model.upstream_model, "prompt": text, "n": 1}
        if any(not a.mime_type.startswith("image/") for a in files):
            raise _unsupported(f"{self.name} image calls take only image attachments")
        if not files:
            response = await self._client.post("/images/generations", headers=headers, json=body)
        elif self.json_edits:
            refs = [{"url": a.uri or data_uri(a.mime_type, a.data), "type": "image_url"} for a in files]
            body["image" if len(refs) == 1 else "images"] = refs[0] if len(refs) == 1 else refs
            response = await self._client.post("/images/edits", headers=headers, json=body)
        else:
            if any(not a.data for a in files):
                # The edits endpoint takes uploaded files; fetching caller-given URLs is not done here.
                raise _unsupported(
                    f"{self.name} image edits need the image bytes in the request (attachments by URI are not sent)"
                )
            uploads = [("image[]", (_filename(i, a), a.data, a.mime_type)) for i, a in enumerate(files)]
            form = {k: str(v) for k, v in body.items()}
            response = await self._client.post("/images/edits", headers=headers, data=form, files=uploads)
        payload = self._object(response)
        usage = payload.get("usage")
        counts = usage if isinstance(usage, dict) else {}
        return self._image_artifact(payload), Usage(
            self._count(counts, "input_tokens", estimate_tokens(text)), self._count(counts, "output_tokens", 0)
        )

    async def _speech(
        self, model: Model, request: GenerationRequest, text: str, files: list[Attachment], headers: dict[str, str]
    ) -> Artifact:
        if files:
            raise _unsupported(f"{self.name} speech calls take no attachments")
        body: dict[str, Any] = {
            "model": model.upstream_model,
            "input": text,
            "voice": request.options.voice or "alloy",
            "response_format": "wav",
        }
        if request.options.language and model.upstream_model not in NO_INSTRUCTIONS:
            body["instructions"] = f"Speak in the language with BCP-47 tag {request.options.language}."
        response = await self._client.post("/audio/speech", headers=headers, json=body)
        check_status(response, self.name, self.endpoint.api_key)
        if not response.content:
            raise bad_response(self.name, "empty audio")
        mime = (response.headers.get("content-type") or "audio/wav").split(";")[0].strip()
        return Artifact(mime if mime.startswith("audio/") else "audio/wav", data=response.content)

    async def _video(
        self, model: Model, request: GenerationRequest, text: str, files: list[Attachment], headers: dict[str, str]
    ) -> Artifact:
        images = [a for a in files if a.mime_type.startswith("image/")]
        videos = [a for a in files if a.mime_type.startswith("video/")]
        wanted = request.selection.requirements.capabilities
        body: dict[str, Any] = {"model": model.upstream_model, "prompt": text}
        path = "/videos/generations"
        if len(images) + len(videos) < len(files):
            raise _unsupported(f"{self.name} video calls take only image and video attachments")
        if videos:
            if len(videos) > 1 or images or not videos[0].uri:
                raise _unsupported(f"{self.name} takes one input video, by URL, and no images with it")
            path = "/videos/extensions" if C.VIDEO_EXTENSION in wanted else "/videos/edits"
            body["video"] = {"url": videos[0].uri}
        elif C.REFERENCE_IMAGES in wanted and images:
            body["reference_images"] = [{"url": a.uri or data_uri(a.mime_type, a.data)} for a in images]
        elif len(images) == 1:
            body["image"] = {"url": images[0].uri or data_uri(images[0].mime_type, images[0].data)}
        elif images:
            raise _unsupported(f"{self.name} image-to-video takes one image (ask for reference images to send more)")
        request_id = self._object(await self._client.post(path, headers=headers, json=body)).get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise bad_response(self.name, "a video answer without request_id")
        while True:
            job = self._object(await self._client.get(f"/videos/{request_id}", headers=headers))
            status = job.get("status")
            if status == "done":
                video = job.get("video")
                url = video.get("url") if isinstance(video, dict) else None
                if not isinstance(url, str) or not url:
                    raise bad_response(self.name, "a finished video without a URL")
                return Artifact("video/mp4", uri=url)
            if status in ("failed", "expired"):
                raise ProviderError(
                    "PROVIDER_GENERATION_FAILED", f"{self.name} video job ended {status!r}", retryable=True
                )
            if status not in ("pending", "processing", "in_progress"):
                raise bad_response(self.name, f"an unknown video status {str(status)[:40]!r}")
            await asyncio.sleep(self.poll_s)

    def _object(self, response: Response) -> dict[str, Any]:
        """The JSON object of a successful answer, or the classified error."""
        check_status(response, self.name, self.endpoint.api_key)
        try:
            data = response.json()
        except ValueError:
            raise bad_response(self.name, "an answer that is not JSON") from None
        if not isinstance(data, dict):
            raise bad_response(self.name, "an answer that is not an object")
        return data

    def _count(self, usage: dict[str, Any], key: str, default: int) -> int:
        value = usage.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_response(self.name, f"usage.{key} that is not a count")
        return value

    def _image_artifact(self, payload: dict[str, Any]) -> Artifact:
        data = payload.get("data")
        first = data[0] if isinstance(data, list) and data else None
        if not isinstance(first, dict):
            raise bad_response(self.name, "an images answer without data")
        encoded, url = first.get("b64_json"), first.get("url")
        if isinstance(encoded, str) and encoded:
            try:
                return Artifact("image/png", data=base64.b64decode(encoded, validate=True))
            except (ValueError, binascii.Error):
                raise bad_response(self.name, "an image that is not base64") from None
        if isinstance(url, str) and url:
            return Artifact("image/png", uri=url)
        raise bad_response(self.name, "an image without b64_json or url")


def _filename(index: int, attachment: Attachment) -> str:
    """A safe upload name for an input image: ``image-<n>.<subtype>``."""
    subtype = attachment.mime_type.split("/")[-1].split(";")[0].lower()
    return f"image-{index}.{re.sub(r'[^a-z0-9]', '', subtype) or 'bin'}"
