"""The media adapters (fal, OpenAI images and speech, xAI images and video) against strict
loopback fakes: outputs, failures, refusals of inputs an endpoint cannot take, and answers of any
shape that are PROVIDER_BAD_RESPONSE, never INTERNAL. Each fake rejects a malformed body as the
real API does."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from fake_fal import FakeFal
from fake_openai_media import PNG_1X1, FakeOpenAIMedia
from fake_xai import FakeXai
from switchboard.catalog import load_catalog
from switchboard.errors import ProviderError
from switchboard.providers import real_adapters
from switchboard.providers.fal import FalProvider
from switchboard.providers.http import Endpoint
from switchboard.providers.openai_media import OpenAIProvider
from switchboard.selection import derive_requirements
from switchboard.types import (
    Artifact,
    Attachment,
    Capability,
    GenerationRequest,
    Model,
    ProviderEvent,
    SelectionRequest,
)

SECRET = "sk-media-0123456789abcdef-secret"
CATALOG = load_catalog(None)
PNG = base64.b64decode(PNG_1X1)


def model(model_id: str) -> Model:
    found = CATALOG.model(model_id)
    assert found is not None
    return found


def request(m: Model, *files: Attachment, caps: tuple[Capability, ...] = ()) -> GenerationRequest:
    needs = derive_requirements(m.modality, caps, [f.mime_type for f in files])
    return GenerationRequest("r", SelectionRequest("a", needs), prompt="Say hello", attachments=files)


async def run(adapter: Any, m: Model, req: GenerationRequest) -> tuple[list[ProviderEvent], ProviderError | None]:
    events: list[ProviderEvent] = []
    try:
        async for event in adapter.stream(m, req):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


@pytest.fixture
async def fal() -> AsyncIterator[tuple[FakeFal, FalProvider]]:
    fake = FakeFal()
    adapter = FalProvider("fal", Endpoint(await fake.start(), SECRET), poll_s=0.01)
    yield fake, adapter
    await adapter.close()
    await fake.stop()


@pytest.fixture
async def openai() -> AsyncIterator[tuple[FakeOpenAIMedia, OpenAIProvider]]:
    fake = FakeOpenAIMedia()
    adapter = OpenAIProvider("openai", Endpoint(await fake.start(), SECRET))
    yield fake, adapter
    await adapter.close()
    await fake.stop()


@pytest.fixture
async def xai() -> AsyncIterator[tuple[FakeXai, OpenAIProvider]]:
    fake = FakeXai()
    adapter = real_adapters({"xai": Endpoint(await fake.start(), SECRET)})["xai"]
    assert isinstance(adapter, OpenAIProvider)
    adapter.poll_s = 0.01
    yield fake, adapter
    await adapter.close()
    await fake.stop()


class TestFakesAreStrict:
    """Each fake rejects what its real API rejects."""

    async def test_fal_rejects_malformed_inputs(self, fal: tuple[FakeFal, FalProvider]) -> None:
        """Unknown field, missing field, wrong type, wrong field for the endpoint: 422; an unknown
        endpoint: 404."""
        fake, _ = fal
        auth = {"Authorization": f"Key {SECRET}"}
        cases = [
            ("fal-ai/veo3.1/fast", {"prompt": "x", "colour": "red"}, 422),
            ("fal-ai/veo3.1/fast/image-to-video", {"prompt": "x"}, 422),
            ("fal-ai/veo3.1/fast", {"prompt": "x", "generate_audio": "yes"}, 422),
            ("fal-ai/kling-video/v3/pro/image-to-video", {"prompt": "x", "image_url": "https://a/b.png"}, 422),
            ("fal-ai/kling-video/o3/pro/image-to-video", {"prompt": "x", "image_url": "not a url"}, 422),
            ("fal-ai/gemini-25-flash-image/edit", {"prompt": "x", "image_url": "https://a/b.png"}, 422),
            ("fal-ai/elevenlabs/tts/eleven-v3", {"prompt": "x"}, 422),
            ("fal-ai/veo3.1/fast/reference-to-video", {"prompt": "x", "image_urls": ["https://a/b.png"]}, 404),
        ]
        async with aiohttp.ClientSession() as session:
            for endpoint, body, status in cases:
                async with session.post(f"{fake.base}/{endpoint}", json=body, headers=auth) as resp:
                    assert (endpoint, resp.status) == (endpoint, status)
            ok = {"prompt": "x", "image_url": "data:image/png;base64,AAAA", "generate_audio": True}
            async with session.post(f"{fake.base}/fal-ai/veo3.1/fast/image-to-video", json=ok, headers=auth) as resp:
                assert resp.status == 200

    async def test_openai_rejects_malformed_bodies(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider]) -> None:
        """Unknown field, unknown voice, instructions for tts-1-hd, an edit without images or as
        JSON: 400."""
        fake, adapter = openai
        base = adapter.endpoint.base_url
        speech = {"model": "tts-1-hd", "input": "hi", "voice": "nova"}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("/images/generations", {"model": "gpt-image-2", "prompt": "x", "style": "vivid"}),
            ("/images/generations", {"model": "gpt-image-2"}),
            ("/audio/speech", {**speech, "voice": "Rachel"}),
            ("/audio/speech", {**speech, "instructions": "Speak in French."}),
            ("/audio/speech", {**speech, "language": "fr"}),
            ("/images/edits", {"model": "gpt-image-2", "prompt": "x", "image": "https://a/b.png"}),
        ]
        async with aiohttp.ClientSession() as session:
            for path, body in cases:
                async with session.post(base + path, json=body) as resp:
                    assert (path, resp.status) == (path, 400)
            form = aiohttp.FormData({"model": "gpt-image-2", "prompt": "x"})
            async with session.post(base + "/images/edits", data=form) as resp:
                assert resp.status == 400
            async with session.post(base + "/audio/speech", json=speech) as resp:
                assert resp.status == 200
        assert len(fake.requests) == len(cases) + 2

    async def test_xai_rejects_malformed_bodies(self, xai: tuple[FakeXai, OpenAIProvider]) -> None:
        """A multipart edit, two image fields at once, a video edit without the video, an image as a
        bare string: rejected."""
        _, adapter = xai
        base = adapter.endpoint.base_url
        image = {"url": "https://a/b.png", "type": "image_url"}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("/images/edits", {"model": "m", "prompt": "x", "image": image, "images": [image]}),
            ("/images/edits", {"model": "m", "prompt": "x"}),
            ("/videos/edits", {"model": "m", "prompt": "x"}),
            ("/videos/generations", {"model": "m", "prompt": "x", "image": "https://a/b.png"}),
            ("/videos/generations", {"model": "m", "prompt": "x", "image_url": "https://a/b.png"}),
        ]
        async with aiohttp.ClientSession() as session:
            for path, body in cases:
                async with session.post(base + path, json=body) as resp:
                    assert (path, resp.status) == (path, 400)
            async with session.post(
                base + "/images/edits", data=aiohttp.FormData({"model": "m", "prompt": "x"})
            ) as resp:
                assert resp.status == 415


class TestOutputs:
    """What each adapter answers."""

    async def test_openai_image_and_speech(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider]) -> None:
        """An image comes back as PNG bytes with the provider's usage; speech as audio bytes."""
        fake, adapter = openai
        image, speech = model("openai/gpt-image-2"), model("tts-1-hd")
        events, error = await run(adapter, image, request(image))
        assert error is None
        assert isinstance(events[0], Artifact)
        assert events[0].data.startswith(b"\x89PNG")
        assert events[-1].usage.input_tokens == 9  # type: ignore[union-attr]
        events, error = await run(adapter, speech, request(speech))
        assert error is None
        assert isinstance(events[0], Artifact)
        assert events[0].mime_type == "audio/wav"
        assert fake.requests[-1][2] == {
            "model": "tts-1-hd",
            "input": "Say hello",
            "voice": "alloy",
            "response_format": "wav",
        }

    async def test_openai_edits_send_every_image(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider]) -> None:
        """Input images go to `/images/edits` as `image[]` files, in order."""
        fake, adapter = openai
        image = model("openai/gpt-image-2")
        files = (Attachment("image/png", data=PNG), Attachment("image/jpeg", data=b"\xff\xd8jpeg"))
        events, error = await run(adapter, image, request(image, *files))
        assert error is None
        assert isinstance(events[0], Artifact)
        path, headers, form = fake.requests[-1]
        assert path == "/v1/images/edits"
        assert headers["Authorization"] == f"Bearer {SECRET}"
        assert (form["model"], form["prompt"], form["n"]) == ("gpt-image-2", "Say hello", "1")
        assert form["image[]"] == [("image-0.png", "image/png", len(PNG)), ("image-1.jpeg", "image/jpeg", 6)]

    @pytest.mark.parametrize(
        ("model_id", "mime"),
        [
            ("fal-ai/gemini-3-pro-image-preview", "image/png"),
            ("fal-ai/veo3.1/fast", "video/mp4"),
            ("bytedance/seedance-2.0", "video/mp4"),
            ("fal-ai/elevenlabs/tts/eleven-v3", "audio/mpeg"),
        ],
    )
    async def test_fal_queue(self, fal: tuple[FakeFal, FalProvider], model_id: str, mime: str) -> None:
        """Submit, poll until COMPLETED, read the output URL."""
        fake, adapter = fal
        m = model(model_id)
        events, error = await run(adapter, m, request(m))
        assert error is None
        assert isinstance(events[0], Artifact)
        assert (events[0].mime_type, events[0].uri.startswith("https://fal.media/")) == (mime, True)
        assert fake.submitted[-1][1]["Authorization"] == f"Key {SECRET}"
        assert not fake.cancelled.is_set()

    async def test_xai_video_and_failed_job(self, xai: tuple[FakeXai, OpenAIProvider]) -> None:
        """A finished job answers the video's URL; a failed one is PROVIDER_GENERATION_FAILED."""
        fake, adapter = xai
        m = model("xai/grok-imagine-video")
        events, error = await run(adapter, m, request(m))
        assert error is None
        assert isinstance(events[0], Artifact)
        assert (events[0].mime_type, events[0].uri) == ("video/mp4", "https://vidgen.x.ai/v.mp4")
        fake.scenario = "failed"
        _, error = await run(adapter, m, request(m))
        assert error is not None
        assert (error.reason, error.retryable) == ("PROVIDER_GENERATION_FAILED", True)


class TestRefusals:
    """An input the endpoint has no field for is refused (retryable), never dropped."""

    async def test_fal_refusals(self, fal: tuple[FakeFal, FalProvider]) -> None:
        """Three images for Veo's first frame, an audio file, a mode the route names no endpoint for."""
        fake, adapter = fal
        veo = model("fal-ai/veo3.1/fast")
        three = [Attachment("image/png", uri=f"https://in.example/{i}.png") for i in range(3)]
        cases = [
            (veo, GenerationRequest("r", request(veo, *three).selection, prompt="x", attachments=tuple(three))),
            (veo, replace(request(veo), attachments=(Attachment("audio/mpeg", uri="https://in.example/a.mp3"),))),
            (replace(veo, mode_endpoints=()), request(veo, Attachment("image/png", data=PNG))),
        ]
        for m, req in cases:
            _, error = await run(adapter, m, req)
            assert error is not None
            assert (error.reason, error.retryable) == ("PROVIDER_UNSUPPORTED_INPUT", True)
        assert fake.submitted == []

    async def test_openai_edits_need_bytes(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider]) -> None:
        """OpenAI's edits take uploaded files: an image by URI is refused before anything is sent."""
        fake, adapter = openai
        image = model("openai/gpt-image-2")
        _, error = await run(adapter, image, request(image, Attachment("image/png", uri="https://x.example/a.png")))
        assert error is not None
        assert (error.reason, error.retryable) == ("PROVIDER_UNSUPPORTED_INPUT", True)
        assert "bytes" in error.message
        assert fake.requests == []

    async def test_xai_video_input_by_url(self, xai: tuple[FakeXai, OpenAIProvider]) -> None:
        """xAI takes an input video by URL: one given as bytes is refused."""
        fake, adapter = xai
        m = model("xai/grok-imagine-video")
        _, error = await run(adapter, m, request(m, Attachment("video/mp4", data=b"\x00\x00\x00\x18ftypmp42")))
        assert error is not None
        assert error.reason == "PROVIDER_UNSUPPORTED_INPUT"
        assert fake.requests == []


class TestBadAnswers:
    """Any answer an adapter cannot read is PROVIDER_BAD_RESPONSE (retryable), whatever its shape."""

    @pytest.mark.parametrize("scenario", ["not_json", "list", "wrong_shape", "bad_status"])
    async def test_fal(self, fal: tuple[FakeFal, FalProvider], scenario: str) -> None:
        fake, adapter = fal
        fake.scenario = scenario
        for model_id in ("fal-ai/gemini-25-flash-image", "fal-ai/veo3.1", "fal-ai/elevenlabs/tts/eleven-v3"):
            m = model(model_id)
            _, error = await run(adapter, m, request(m))
            assert error is not None
            assert (error.reason, error.retryable) == ("PROVIDER_BAD_RESPONSE", True)

    @pytest.mark.parametrize("scenario", ["not_json", "wrong_shape", "bad_usage", "bad_base64"])
    async def test_openai(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider], scenario: str) -> None:
        fake, adapter = openai
        fake.scenario = scenario
        image = model("openai/gpt-image-2")
        _, error = await run(adapter, image, request(image))
        assert error is not None
        assert (error.reason, error.retryable) == ("PROVIDER_BAD_RESPONSE", True)

    @pytest.mark.parametrize("scenario", ["wrong_shape", "bad_status"])
    async def test_xai(self, xai: tuple[FakeXai, OpenAIProvider], scenario: str) -> None:
        fake, adapter = xai
        fake.scenario = scenario
        for model_id in ("xai/grok-imagine-image", "xai/grok-imagine-video"):
            m = model(model_id)
            if scenario == "bad_status" and m.modality.name == "IMAGE":
                continue
            _, error = await run(adapter, m, request(m))
            assert error is not None
            assert (error.reason, error.retryable) == ("PROVIDER_BAD_RESPONSE", True)


class TestFailures:
    """Provider failures are classified; a cancelled queued job is cancelled at fal."""

    async def test_openai_rate_limit(self, openai: tuple[FakeOpenAIMedia, OpenAIProvider]) -> None:
        fake, adapter = openai
        fake.scenario = "429"
        image = model("openai/gpt-image-2")
        _, error = await run(adapter, image, request(image))
        assert error is not None
        assert (error.reason, error.retryable) == ("PROVIDER_RATE_LIMITED", True)

    async def test_fal_failures_and_cancel(self, fal: tuple[FakeFal, FalProvider]) -> None:
        """A 429 at submission is retryable; a 500 on the result too; cancelling while queued cancels the job."""
        fake, adapter = fal
        m = model("fal-ai/veo3.1")
        fake.scenario = "429"
        _, error = await run(adapter, m, request(m))
        assert error is not None
        assert (error.reason, error.retryable) == ("PROVIDER_RATE_LIMITED", True)
        fake.scenario = "500"
        _, error = await run(adapter, m, request(m))
        assert error is not None
        assert error.reason == "PROVIDER_OVERLOADED"
        fake.scenario = "forever"
        task = asyncio.create_task(run(adapter, m, request(m)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.cancelled.wait(), timeout=3)
