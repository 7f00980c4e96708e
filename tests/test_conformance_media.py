"""Every (model, capability) pair of the shipped catalog's image, video and speech models reaches
its provider in the documented endpoint and field: one table, run against strict loopback fakes
of fal, OpenAI and xAI through the real adapters."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fake_fal import FakeFal
from fake_openai_media import PNG_1X1, FakeOpenAIMedia
from fake_xai import FakeXai
from switchboard.catalog import load_catalog
from switchboard.providers import fal, openai_media, real_adapters
from switchboard.providers.base import data_uri
from switchboard.providers.http import Endpoint
from switchboard.selection import derive_requirements
from switchboard.types import (
    Artifact,
    Attachment,
    Capability,
    Finished,
    GenerationOptions,
    GenerationRequest,
    Modality,
    SelectionRequest,
)

C = Capability
SECRET = "conformance-key-0123456789"
CATALOG = load_catalog(None)
MEDIA = (Modality.IMAGE, Modality.VIDEO, Modality.SPEECH)
PNG = base64.b64decode(PNG_1X1)
PNG_URI = data_uri("image/png", PNG)
IMG_A, IMG_B, VIDEO = "https://in.example/a.png", "https://in.example/b.png", "https://in.example/v.mp4"

INPUTS: dict[Capability, tuple[Attachment, ...]] = {
    C.IMAGE_EDITING: (Attachment("image/png", data=PNG),),
    C.IMAGE_TO_VIDEO: (Attachment("image/png", data=PNG),),
    C.REFERENCE_IMAGES: (Attachment("image/png", uri=IMG_A), Attachment("image/png", uri=IMG_B)),
    C.VIDEO_EDITING: (Attachment("video/mp4", uri=VIDEO),),
    C.VIDEO_EXTENSION: (Attachment("video/mp4", uri=VIDEO),),
    C.VIDEO_REFERENCE: (Attachment("video/mp4", uri=VIDEO),),
}
"""The attachments a request for each capability carries (images given as bytes go as data URIs)."""


@dataclass(frozen=True)
class Expect:
    """Where a pair's request must arrive: the provider, the endpoint (fal) or path, and fields of
    the body that must hold exactly these values."""

    provider: str
    endpoint: str
    fields: dict[str, Any] = field(default_factory=dict)


def _fal(endpoint: str, **fields: Any) -> Expect:
    return Expect("fal", endpoint, {"prompt": "A red fox", **fields})


def _veo(base: str) -> dict[tuple[str, Capability], Expect]:
    cases = {
        (base, C.TEXT_TO_VIDEO): _fal(base),
        (base, C.IMAGE_TO_VIDEO): _fal(f"{base}/image-to-video", image_url=PNG_URI),
        (base, C.NATIVE_AUDIO): _fal(base, generate_audio=True),
        (base, C.VIDEO_EXTENSION): _fal(f"{base}/extend-video", video_url=VIDEO),
    }
    if base == "fal-ai/veo3.1":
        cases[(base, C.REFERENCE_IMAGES)] = _fal(f"{base}/reference-to-video", image_urls=[IMG_A, IMG_B])
    return cases


def _seedance(base: str) -> dict[tuple[str, Capability], Expect]:
    return {
        (base, C.TEXT_TO_VIDEO): _fal(f"{base}/text-to-video"),
        (base, C.IMAGE_TO_VIDEO): _fal(f"{base}/image-to-video", image_url=PNG_URI),
        (base, C.NATIVE_AUDIO): _fal(f"{base}/text-to-video", generate_audio=True),
        (base, C.REFERENCE_IMAGES): _fal(f"{base}/reference-to-video", image_urls=[IMG_A, IMG_B]),
    }


def _kling(base: str) -> dict[tuple[str, Capability], Expect]:
    cases = {
        (base, C.TEXT_TO_VIDEO): _fal(f"{base}/text-to-video"),
        (base, C.IMAGE_TO_VIDEO): _fal(
            f"{base}/image-to-video", **{("start_image_url" if "/v3/" in base else "image_url"): PNG_URI}
        ),
    }
    if "/v3/" in base:
        cases[(base, C.MULTI_SHOT)] = _fal(f"{base}/text-to-video", shot_type="intelligent")
        if base.endswith("pro"):
            cases[(base, C.NATIVE_AUDIO)] = _fal(f"{base}/text-to-video", generate_audio=True)
    else:
        cases[(base, C.VIDEO_EDITING)] = _fal(f"{base}/video-to-video/edit", video_url=VIDEO)
        cases[(base, C.VIDEO_REFERENCE)] = _fal(f"{base}/video-to-video/reference", video_url=VIDEO)
    return cases


def _fal_image(base: str, *, web_search: bool = False) -> dict[tuple[str, Capability], Expect]:
    cases = {
        (base, C.IMAGE_GENERATION): _fal(base),
        (base, C.IMAGE_EDITING): _fal(f"{base}/edit", image_urls=[PNG_URI]),
    }
    if web_search:
        cases[(base, C.WEB_SEARCH)] = _fal(base, enable_web_search=True)
    return cases


def _xai_video(cap: Capability, path: str, **fields: Any) -> tuple[tuple[str, Capability], Expect]:
    body = {"model": "grok-imagine-video", "prompt": "A red fox", **fields}
    return ("xai/grok-imagine-video", cap), Expect("xai", path, body)


CASES: dict[tuple[str, Capability], Expect] = {
    ("openai/gpt-image-2", C.IMAGE_GENERATION): Expect(
        "openai", "/v1/images/generations", {"model": "gpt-image-2", "prompt": "A red fox", "n": 1}
    ),
    ("openai/gpt-image-2", C.IMAGE_EDITING): Expect(
        "openai", "/v1/images/edits", {"model": "gpt-image-2", "image[]": [("image-0.png", "image/png", len(PNG))]}
    ),
    ("xai/grok-imagine-image", C.IMAGE_GENERATION): Expect(
        "xai", "/v1/images/generations", {"model": "grok-imagine-image", "prompt": "A red fox"}
    ),
    ("xai/grok-imagine-image", C.IMAGE_EDITING): Expect(
        "xai", "/v1/images/edits", {"model": "grok-imagine-image", "image": {"url": PNG_URI, "type": "image_url"}}
    ),
    **_fal_image("fal-ai/gemini-25-flash-image"),
    **_fal_image("fal-ai/gemini-3.1-flash-image-preview"),
    **_fal_image("fal-ai/gemini-3-pro-image-preview", web_search=True),
    **dict(
        [
            _xai_video(C.TEXT_TO_VIDEO, "/v1/videos/generations"),
            _xai_video(C.IMAGE_TO_VIDEO, "/v1/videos/generations", image={"url": PNG_URI}),
            _xai_video(C.REFERENCE_IMAGES, "/v1/videos/generations", reference_images=[{"url": IMG_A}, {"url": IMG_B}]),
            _xai_video(C.VIDEO_EDITING, "/v1/videos/edits", video={"url": VIDEO}),
            _xai_video(C.VIDEO_EXTENSION, "/v1/videos/extensions", video={"url": VIDEO}),
            _xai_video(C.NATIVE_AUDIO, "/v1/videos/generations"),  # Grok Imagine Video always makes audio
        ]
    ),
    **_veo("fal-ai/veo3.1/fast"),
    **_veo("fal-ai/veo3.1"),
    **_seedance("bytedance/seedance-2.0/fast"),
    **_seedance("bytedance/seedance-2.0"),
    **_kling("fal-ai/kling-video/v3/standard"),
    **_kling("fal-ai/kling-video/v3/pro"),
    **_kling("fal-ai/kling-video/o3/standard"),
    **_kling("fal-ai/kling-video/o3/pro"),
    ("gpt-4o-mini-tts", C.TEXT_TO_SPEECH): Expect(
        "openai",
        "/v1/audio/speech",
        {
            "model": "gpt-4o-mini-tts",
            "input": "A red fox",
            "voice": "nova",
            "instructions": "Speak in the language with BCP-47 tag pt-BR.",
        },
    ),
    ("tts-1-hd", C.TEXT_TO_SPEECH): Expect(
        "openai", "/v1/audio/speech", {"model": "tts-1-hd", "input": "A red fox", "voice": "nova"}
    ),
    ("fal-ai/elevenlabs/tts/turbo-v2.5", C.TEXT_TO_SPEECH): Expect(
        "fal", "fal-ai/elevenlabs/tts/turbo-v2.5", {"text": "A red fox", "voice": "nova", "language_code": "pt-BR"}
    ),
    ("fal-ai/elevenlabs/tts/eleven-v3", C.TEXT_TO_SPEECH): Expect(
        "fal", "fal-ai/elevenlabs/tts/eleven-v3", {"text": "A red fox", "voice": "nova", "language_code": "pt-BR"}
    ),
}

PAIRS = sorted((m.id, c) for m in CATALOG.models if m.modality in MEDIA for c in m.capabilities)


def request_for(model_id: str, cap: Capability) -> GenerationRequest:
    """A request that needs ``cap`` of ``model_id``, derived as the server derives it."""
    model = CATALOG.model(model_id)
    assert model is not None
    files = INPUTS.get(cap, ())
    speech = model.modality is Modality.SPEECH
    options = GenerationOptions(voice="nova", language="pt-BR") if speech else GenerationOptions()
    # Attachments imply image editing, image-to-video and video editing; the rest is asked for.
    named = (
        (cap,)
        if cap in (C.REFERENCE_IMAGES, C.VIDEO_EXTENSION, C.VIDEO_REFERENCE, C.NATIVE_AUDIO, C.MULTI_SHOT)
        else ()
    )
    needs = derive_requirements(
        model.modality,
        named,
        [a.mime_type for a in files],
        web_search=cap is C.WEB_SEARCH,
        language=options.language,
    )
    return GenerationRequest(
        f"conf-{model_id}-{cap.name}",
        SelectionRequest("acct", needs, pinned_model_id=model_id),
        prompt="A red fox",
        attachments=files,
        options=options,
    )


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, Any]]:
    """The three fakes on loopback ports, and the real adapters pointed at them."""
    made = {"fal": FakeFal(), "openai": FakeOpenAIMedia(), "xai": FakeXai()}
    endpoints = {name: Endpoint(await fake.start(), SECRET) for name, fake in made.items()}
    adapters = real_adapters(endpoints)
    for adapter in adapters.values():
        adapter.poll_s = 0.01  # type: ignore[attr-defined]
    yield {"fakes": made, "adapters": adapters}
    for adapter in adapters.values():
        await adapter.close()  # type: ignore[attr-defined]
    for fake in made.values():
        await fake.stop()


def _recorded(fake: Any, provider: str) -> tuple[str, dict[str, str], Any]:
    if provider == "fal":
        assert fake.submitted, "nothing reached fal"
        return fake.submitted[-1]  # type: ignore[no-any-return]
    media = [r for r in fake.requests if "/videos/vid-" not in r[0]]
    assert media, f"nothing reached {provider}"
    return media[0]  # type: ignore[no-any-return]


class TestConformance:
    """Each pair reaches its provider in the documented endpoint and field; none is dropped."""

    @pytest.mark.parametrize(("model_id", "cap"), PAIRS, ids=[f"{m}:{c.name}" for m, c in PAIRS])
    async def test_pair_reaches_the_provider(self, fakes: dict[str, Any], model_id: str, cap: Capability) -> None:
        expect = CASES[(model_id, cap)]
        model = CATALOG.model(model_id)
        assert model is not None
        adapter = fakes["adapters"][model.adapter]
        events = [e async for e in adapter.stream(model, request_for(model_id, cap))]
        assert isinstance(events[0], Artifact)
        assert isinstance(events[-1], Finished)
        endpoint, headers, body = _recorded(fakes["fakes"][expect.provider], expect.provider)
        assert endpoint == expect.endpoint
        assert {k: body.get(k) for k in expect.fields} == expect.fields
        assert SECRET in headers["Authorization"]

    def test_every_media_pair_has_a_case(self) -> None:
        """A capability added to a media model of the catalog needs a row here; a row for a pair
        the catalog does not claim is stale."""
        assert sorted(CASES) == PAIRS

    def test_adapters_encode_every_claim(self) -> None:
        """Each media model claims only what its adapter's ``encodes`` says it carries."""
        encoders = {"fal": fal.encodes, "openai": openai_media.encodes, "xai": openai_media.encodes}
        for model in CATALOG.models:
            if model.modality in MEDIA:
                missing = model.capabilities - encoders[model.adapter](model)
                assert not missing, f"{model.id} claims {sorted(c.name for c in missing)}"

    def test_a_mode_without_an_endpoint_is_not_encoded(self) -> None:
        """Without its route's endpoint, a fal model's image-to-video is not encoded (it would
        reach the text-to-video endpoint)."""
        from dataclasses import replace  # noqa: PLC0415

        veo = CATALOG.model("fal-ai/veo3.1/fast")
        assert veo is not None
        assert C.IMAGE_TO_VIDEO in fal.encodes(veo)
        assert C.IMAGE_TO_VIDEO not in fal.encodes(replace(veo, mode_endpoints=()))
