"""OpenAI's media endpoints, non-streaming: `POST {base}/images/generations` (answers
`data[].b64_json` or `data[].url`, with `usage`), `POST {base}/images/edits` (multipart: `model`,
`prompt`, `n` and the input images as `image[]` files; the same answer) and
`POST {base}/audio/speech` (answers the audio bytes). xAI serves the same images API for its
image model (generation only here), and video generation as
`POST {base}/videos/generations` (answers `request_id`) polled with `GET {base}/videos/{id}`
until `status` is `done` (then `video.url`)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from typing import Any

from switchboard.errors import ProviderError
from switchboard.providers.http import Endpoint, HttpError, bad_response, check_status, from_exception
from switchboard.providers.openai_compat import OpenAICompatProvider
from switchboard.providers.simulated import estimate_tokens, request_text
from switchboard.types import (
    Artifact,
    Attachment,
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
    Model,
    ProviderEvent,
    Usage,
)


class OpenAIProvider(OpenAICompatProvider):
    """Text through Chat Completions streaming, images through the images API and, where
    ``speech`` is on, speech through the audio API."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        *,
        speech: bool = True,
        video: bool = False,
        edits: bool = True,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__(name, endpoint)
        extra = ({Modality.SPEECH} if speech else set()) | ({Modality.VIDEO} if video else set())
        self.modalities = frozenset({Modality.TEXT, Modality.IMAGE} | extra)
        self.edits = edits
        self.poll_s = poll_s

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Stream text; for images and speech, one artifact and the finish."""
        if model.modality is Modality.TEXT:
            async for event in super().stream(model, request):
                yield event
            return
        text = request_text(request)
        files = [*request.attachments, *(a for m in request.messages for a in m.attachments)]
        if files:
            self._check_inputs(model, files)
        headers = {"authorization": f"Bearer {self.endpoint.api_key}"}
        try:
            if model.modality is Modality.IMAGE:
                body: dict[str, Any] = {"model": model.upstream_model, "prompt": text, "n": 1}
                if files:
                    uploads = [("image[]", (_filename(i, a), a.data, a.mime_type)) for i, a in enumerate(files)]
                    form = {k: str(v) for k, v in body.items()}
                    response = await self._client.post("/images/edits", headers=headers, data=form, files=uploads)
                else:
                    response = await self._client.post("/images/generations", headers=headers, json=body)
                check_status(response, self.name, self.endpoint.api_key)
                yield self._image(response.json())
                usage = response.json().get("usage") or {}
                yield Finished(
                    FinishReason.STOP,
                    Usage(int(usage.get("input_tokens", estimate_tokens(text))), int(usage.get("output_tokens", 0))),
                )
                return
            if model.modality is Modality.VIDEO:
                yield await self._video(model, text, headers)
                yield Finished(FinishReason.STOP, Usage(estimate_tokens(text), 0))
                return
            body = {
                "model": model.upstream_model,
                "input": text,
                "voice": request.options.voice or "alloy",
                "response_format": "wav",
            }
            response = await self._client.post("/audio/speech", headers=headers, json=body)
            check_status(response, self.name, self.endpoint.api_key)
            if not response.content:
                raise bad_response(self.name, "empty audio")
            yield Artifact(response.headers.get("content-type", "audio/wav").split(";")[0], data=response.content)
            yield Finished(FinishReason.STOP, Usage(estimate_tokens(text), 0))
        except HttpError as exc:
            raise from_exception(exc, self.name) from None

    def _check_inputs(self, model: Model, files: list[Attachment]) -> None:
        """Refuse attachments this adapter cannot send (rather than ignore them); the error is
        retryable, so automatic selection falls back to a model that takes them."""
        problem = ""
        if model.modality is not Modality.IMAGE or not self.edits:
            problem = f"{self.name} {model.modality.name.lower()} calls with attachments are not supported"
        elif any(not a.data for a in files):
            # The edits endpoint takes uploaded files; fetching caller-given URLs is not done here.
            problem = f"{self.name} image edits need the image bytes in the request (attachments by URI are not sent)"
        if problem:
            raise ProviderError("PROVIDER_UNSUPPORTED_INPUT", problem, retryable=True)

    async def _video(self, model: Model, text: str, headers: dict[str, str]) -> Artifact:
        submitted = await self._client.post(
            "/videos/generations", headers=headers, json={"model": model.upstream_model, "prompt": text}
        )
        check_status(submitted, self.name, self.endpoint.api_key)
        request_id = str((submitted.json() or {}).get("request_id", ""))
        if not request_id:
            raise bad_response(self.name, "a video answer without request_id")
        while True:
            polled = await self._client.get(f"/videos/{request_id}", headers=headers)
            check_status(polled, self.name, self.endpoint.api_key)
            job = polled.json()
            status = str(job.get("status", ""))
            if status == "done":
                url = (job.get("video") or {}).get("url")
                if not url:
                    raise bad_response(self.name, "a finished video without a URL")
                return Artifact("video/mp4", uri=str(url))
            if status not in ("pending", "processing", "in_progress"):
                raise ProviderError(
                    "PROVIDER_GENERATION_FAILED", f"{self.name} video job ended {status!r}", retryable=True
                )
            await asyncio.sleep(self.poll_s)

    def _image(self, payload: Any) -> Artifact:
        try:
            first = payload["data"][0]
        except (KeyError, IndexError, TypeError):
            raise bad_response(self.name, "an images answer without data") from None
        if first.get("b64_json"):
            try:
                return Artifact("image/png", data=base64.b64decode(first["b64_json"], validate=True))
            except ValueError:
                raise bad_response(self.name, "an image that is not base64") from None
        if first.get("url"):
            return Artifact("image/png", uri=str(first["url"]))
        raise bad_response(self.name, "an image without b64_json or url")


def _filename(index: int, attachment: Attachment) -> str:
    """A safe upload name for an input image: ``image-<n>.<subtype>``."""
    subtype = attachment.mime_type.split("/")[-1].split(";")[0].lower()
    return f"image-{index}.{re.sub(r'[^a-z0-9]', '', subtype) or 'bin'}"
