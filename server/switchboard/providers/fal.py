"""fal's queue API for image, video and speech models (`fal-ai/...`, and the ElevenLabs and
Seedance models the catalog routes through fal).

Submit `POST {queue}/{model}` (header `Authorization: Key <FAL_KEY>`) → `request_id`,
`status_url`, `response_url`, `cancel_url`; poll `GET status_url` until `COMPLETED`; read the
output from `GET response_url`: `images[].url`, `video.url` or `audio.url`. A cancelled call
sends `PUT cancel_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from switchboard.providers.base import HttpProvider
from switchboard.providers.http import Endpoint, HttpError, Response, bad_response, check_status, from_exception
from switchboard.providers.simulated import estimate_tokens, request_text
from switchboard.types import Artifact, Finished, FinishReason, GenerationRequest, Modality, Model, ProviderEvent, Usage


class FalProvider(HttpProvider):
    """Queue-based media generation; answers with the artifact's URL."""

    modalities = frozenset({Modality.IMAGE, Modality.VIDEO, Modality.SPEECH})

    def __init__(self, name: str, endpoint: Endpoint, poll_s: float = 0.5) -> None:
        super().__init__(name, endpoint)
        self.poll_s = poll_s

    def _input(self, model: Model, request: GenerationRequest) -> dict[str, Any]:
        text = request_text(request)
        if model.modality is Modality.SPEECH:
            body: dict[str, Any] = {"text": text}
            if request.options.voice:
                body["voice"] = request.options.voice
            if request.options.language:
                body["language_code"] = request.options.language
            return body
        body = {"prompt": text}
        urls = [a.uri for a in request.attachments if a.uri]
        if urls and model.modality is Modality.IMAGE:
            body["image_urls"] = urls
        elif urls:
            body["image_url"] = urls[0]
        return body

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Submit, poll, fetch: one artifact, then the finish."""
        headers = {"authorization": f"Key {self.endpoint.api_key}"}
        cancel_url = ""
        try:
            submitted = await self._client.post(
                f"/{model.upstream_model}", headers=headers, json=self._input(model, request)
            )
            job = self._json(submitted)
            status_url, response_url = str(job.get("status_url", "")), str(job.get("response_url", ""))
            cancel_url = str(job.get("cancel_url", ""))
            if not status_url or not response_url:
                raise bad_response(self.name, "a queue answer without status_url or response_url")
            while True:
                status = self._json(await self._client.get(status_url, headers=headers))
                state = status.get("status")
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
        try:
            if model.modality is Modality.IMAGE:
                item = output["images"][0]
                return Artifact(str(item.get("content_type") or "image/png"), uri=str(item["url"]))
            key = "video" if model.modality is Modality.VIDEO else "audio"
            item = output[key]
            default = "video/mp4" if key == "video" else "audio/mpeg"
            return Artifact(str(item.get("content_type") or default), uri=str(item["url"]))
        except (KeyError, IndexError, TypeError):
            raise bad_response(self.name, f"an output without the {model.modality.name.lower()} URL") from None
