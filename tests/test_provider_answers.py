"""What the text adapters make of their providers' answers, over a real gRPC server: an answer in a
shape the adapter cannot read is PROVIDER_BAD_RESPONSE (never INTERNAL), the providers' documented
error events keep their meaning, and attachments an adapter cannot send are refused, not dropped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest
from conftest import ServerFactory, error_info
from fake_anthropic import FakeAnthropic
from fake_gemini import FakeGemini
from fake_http import LoopbackFake, sse
from fake_openai_chat import FakeOpenAIChat
from fake_openai_responses import FakeOpenAIResponses
from switchboard.errors import ProviderError
from switchboard.providers import real_adapters
from switchboard.providers.anthropic import AnthropicProvider
from switchboard.providers.gemini import GeminiProvider
from switchboard.providers.http import Endpoint
from switchboard.providers.openai_compat import OpenAICompatProvider
from switchboard.providers.openai_responses import OpenAIResponsesProvider
from switchboard.providers.simulated import SimulationProfile
from switchboard.selection import derive_requirements
from switchboard.types import (
    Attachment,
    ChatMessage,
    Citation,
    GenerationOptions,
    GenerationRequest,
    Modality,
    Provider,
    ProviderEvent,
    Role,
    SelectionRequest,
    TextChunk,
)
from switchboard.v1 import catalog_pb2, router_pb2
from test_conformance import CATALOG

KEY = "sk-answers-0123456789"
Make = Callable[[str], Provider]
# adapter kind -> (its fake, the adapter name the catalog routes to it, a model it serves, the adapter)
KINDS: dict[str, tuple[Callable[[], LoopbackFake], str, str, Make]] = {
    "openai": (
        FakeOpenAIResponses,
        "openai",
        "gpt-5.4",
        lambda base: OpenAIResponsesProvider("openai", Endpoint(base, KEY)),
    ),
    "anthropic": (
        FakeAnthropic,
        "anthropic",
        "claude-sonnet-4-6",
        lambda base: AnthropicProvider("anthropic", Endpoint(base, KEY)),
    ),
    "gemini": (
        FakeGemini,
        "gemini",
        "gemini-3.1-pro-preview",
        lambda base: GeminiProvider("gemini", Endpoint(base, KEY)),
    ),
    # Chat Completions serving the openai route, as a self-hosted server would.
    "openai_compat": (
        FakeOpenAIChat,
        "openai",
        "gpt-5.4",
        lambda base: OpenAICompatProvider("openai", Endpoint(base, KEY)),
    ),
}

UNREADABLE: dict[str, list[Any]] = {
    "openai": [
        ["x"],
        {"type": "response.output_text.delta", "delta": 5},
        {"type": "response.completed", "response": "x"},
        {"type": "response.completed", "response": {"usage": {"input_tokens": "abc", "output_tokens": 1}}},
        {"type": "response.output_text.annotation.added", "annotation": {"type": "url_citation", "url": 7}},
    ],
    "anthropic": [
        {"type": "message_start", "message": "x"},
        {"type": "message_start", "message": {"usage": {"input_tokens": "abc"}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
        {"type": "content_block_start", "index": "zero", "content_block": {"type": "text", "text": ""}},
    ],
    "gemini": [
        {"candidates": ["x"]},
        {"candidates": [{"content": {"parts": [{"text": 5}]}, "finishReason": "STOP"}]},
        {"candidates": [], "usageMetadata": {"promptTokenCount": "abc"}},
        {"candidates": [{"content": {"parts": ["x"]}}]},
    ],
    "openai_compat": [
        {"choices": ["x"]},
        {"choices": [{"delta": {"content": 5}}]},
        {"usage": {"prompt_tokens": "abc"}, "choices": []},
        {"choices": [{"delta": {"tool_calls": [{"index": "a"}]}}]},
    ],
}
CASES = [(kind, i) for kind, shapes in UNREADABLE.items() for i in range(len(shapes))]


def _pinned(model_id: str, prompt: str = "Say hello") -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(
        account_id="answers", modality=catalog_pb2.MODALITY_TEXT, prompt=prompt, pinned_model_id=model_id
    )


class TestUnreadableAnswers:
    """Valid JSON in the wrong shape ends the attempt with PROVIDER_BAD_RESPONSE."""

    @pytest.mark.parametrize(("kind", "index"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
    async def test_pinned_gets_unavailable(self, start_server: ServerFactory, kind: str, index: int) -> None:
        """Pinned: UNAVAILABLE, with PROVIDER_BAD_RESPONSE as the provider's reason; never INTERNAL."""
        make_fake, route, model_id, make = KINDS[kind]
        fake = make_fake()
        base = await fake.start()
        fake.script = [sse(UNREADABLE[kind][index])]
        adapter = make(base)
        try:
            _, stub = await start_server(adapters={route: adapter})
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                _ = [f async for f in stub.Generate(_pinned(model_id), timeout=20)]
        finally:
            await adapter.close()
            await fake.stop()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        info = error_info(caught.value)
        assert info.reason == "PROVIDER_FAILED"
        assert info.metadata["provider_reason"] == "PROVIDER_BAD_RESPONSE"
        assert fake.rejected == []

    async def test_automatic_falls_back_and_the_breaker_counts(self, start_server: ServerFactory) -> None:
        """Automatic: the unreadable answer is a fallback before the first output, to the next
        model; three of them cool the model down."""
        fake = FakeGemini()
        base = await fake.start()
        fake.script = [sse({"candidates": ["x"]})]
        adapter = GeminiProvider("gemini", Endpoint(base, KEY))
        try:
            _, stub = await start_server(adapters={"gemini": adapter})
            for i in range(3):
                req = router_pb2.GenerateRequest(
                    account_id="auto", modality=catalog_pb2.MODALITY_TEXT, prompt="hi", request_id=f"a{i}"
                )
                frames = [f async for f in stub.Generate(req, timeout=20)]
                assert frames[0].decision.model.id == "gemini-3.1-flash-lite"
                assert frames[1].fallback.reason == "PROVIDER_BAD_RESPONSE"
                assert frames[-1].completion.model_id != "gemini-3.1-flash-lite"
            listing = await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
            flash = next(m for m in listing.models if m.model.id == "gemini-3.1-flash-lite")
            assert flash.health == router_pb2.MODEL_HEALTH_COOLING_DOWN
        finally:
            await adapter.close()
            await fake.stop()


ERROR_EVENTS: dict[str, list[tuple[list[bytes], str, bool]]] = {
    "openai": [
        (
            [
                sse(
                    {"type": "error", "code": "server_error", "message": "The server had an error", "param": None},
                    "error",
                )
            ],
            "PROVIDER_OVERLOADED",
            True,
        ),
        (
            [
                sse(
                    {
                        "type": "response.failed",
                        "response": {
                            "status": "failed",
                            "error": {"code": "rate_limit_exceeded", "message": "Slow down"},
                        },
                    },
                    "response.failed",
                )
            ],
            "PROVIDER_RATE_LIMITED",
            True,
        ),
    ],
    "anthropic": [
        (
            [
                sse({"type": "ping"}, "ping"),
                sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error"),
            ],
            "PROVIDER_OVERLOADED",
            True,
        ),
    ],
    "gemini": [
        (
            [sse({"candidates": [{"content": {"parts": []}}], "promptFeedback": {"blockReason": "SAFETY"}})],
            "PROVIDER_CONTENT_REFUSED",
            False,
        ),
    ],
}


async def _run(adapter: Provider, model_id: str, request: GenerationRequest) -> list[ProviderEvent]:
    return [e async for e in adapter.stream(CATALOG.by_id[model_id], request)]


def _request(*attachments: Attachment) -> GenerationRequest:
    mimes = [a.mime_type for a in attachments]
    return GenerationRequest(
        "r1",
        SelectionRequest("a", derive_requirements(Modality.TEXT, (), mimes)),
        prompt="Describe it",
        attachments=attachments,
    )


class TestDocumentedErrorEvents:
    """Error events of each provider's stream keep their meaning."""

    @pytest.mark.parametrize("kind", sorted(ERROR_EVENTS))
    async def test_error_event(self, kind: str) -> None:
        """Each documented error event becomes its classified ProviderError."""
        make_fake, _, model_id, make = KINDS[kind]
        for frames, reason, retryable in ERROR_EVENTS[kind]:
            fake = make_fake()
            base = await fake.start()
            fake.script = frames
            adapter = make(base)
            try:
                with pytest.raises(ProviderError) as caught:
                    await _run(adapter, model_id, _request())
            finally:
                await adapter.close()
                await fake.stop()
            assert (caught.value.reason, caught.value.retryable) == (reason, retryable)


class TestAttachments:
    """Attachments by URI go in each API's URL form; what an adapter cannot send is refused."""

    @pytest.mark.parametrize(
        ("kind", "attachment", "part"),
        [
            (
                "openai",
                Attachment("image/png", uri="https://example.org/a.png"),
                {"type": "input_image", "image_url": "https://example.org/a.png"},
            ),
            (
                "openai",
                Attachment("application/pdf", uri="https://example.org/a.pdf"),
                {"type": "input_file", "file_url": "https://example.org/a.pdf"},
            ),
            (
                "anthropic",
                Attachment("image/png", uri="https://example.org/a.png"),
                {"type": "image", "source": {"type": "url", "url": "https://example.org/a.png"}},
            ),
            (
                "anthropic",
                Attachment("application/pdf", uri="https://example.org/a.pdf"),
                {"type": "document", "source": {"type": "url", "url": "https://example.org/a.pdf"}},
            ),
            (
                "anthropic",
                Attachment("text/plain", data=b"plain words", name="notes.txt"),
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "plain words"},
                    "title": "notes.txt",
                },
            ),
            (
                "gemini",
                Attachment("application/pdf", uri="https://example.org/a.pdf"),
                {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.org/a.pdf"}},
            ),
            (
                "gemini",
                Attachment("text/markdown", data=b"# Title", name="a.md"),
                {"text": "[a.md (text/markdown)]\n# Title"},
            ),
            (
                "gemini",
                Attachment("text/csv", uri="https://example.org/a.csv"),
                {"fileData": {"mimeType": "text/csv", "fileUri": "https://example.org/a.csv"}},
            ),
            (
                "openai_compat",
                Attachment("application/json", data=b'{"a": 1}', name="a.json"),
                {"type": "text", "text": '[a.json (application/json)]\n{"a": 1}'},
            ),
        ],
    )
    async def test_sent_in_the_documented_form(self, kind: str, attachment: Attachment, part: dict[str, Any]) -> None:
        """The fake accepts the request and the part is there."""
        make_fake, _, model_id, make = KINDS[kind]
        fake = make_fake()
        base = await fake.start()
        adapter = make(base)
        try:
            events = await _run(adapter, model_id, _request(attachment))
        finally:
            await adapter.close()
            await fake.stop()
        assert fake.rejected == []
        assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "Hello, world!"
        body = fake.body
        messages = body.get("input") or body.get("messages") or body.get("contents")
        parts = messages[0].get("content", messages[0].get("parts"))
        assert part in parts, json.dumps(parts)[:500]

    @pytest.mark.parametrize(
        ("kind", "attachment"),
        [
            ("anthropic", Attachment("image/bmp", data=b"BM")),
            ("anthropic", Attachment("text/markdown", uri="https://example.org/a.md")),
            ("openai", Attachment("audio/mpeg", data=b"ID3")),
            ("openai", Attachment("text/csv", uri="https://example.org/a.csv")),
            ("openai_compat", Attachment("application/pdf", data=b"%PDF")),
            ("gemini", Attachment("image/gif", data=b"GIF89a")),
            ("gemini", Attachment("audio/x-m4a", uri="https://example.org/a.m4a")),
        ],
    )
    async def test_unsendable_is_refused_not_dropped(self, kind: str, attachment: Attachment) -> None:
        """PROVIDER_UNSUPPORTED_INPUT, retryable (automatic selection falls back); nothing is sent."""
        make_fake, _, model_id, make = KINDS[kind]
        fake = make_fake()
        base = await fake.start()
        adapter = make(base)
        try:
            with pytest.raises(ProviderError) as caught:
                await _run(adapter, model_id, _request(attachment))
        finally:
            await adapter.close()
            await fake.stop()
        assert (caught.value.reason, caught.value.retryable) == ("PROVIDER_UNSUPPORTED_INPUT", True)
        assert fake.requests == []

    async def test_automatic_falls_back_past_an_unsendable_image(self, start_server: ServerFactory) -> None:
        """A BMP image, not pinned: the models ahead of Claude Haiku fail, Claude cannot take the
        image (it is refused before any call), and the next model that can take it answers."""
        fake = FakeAnthropic()
        base = await fake.start()
        adapters = real_adapters({"anthropic": Endpoint(base, KEY)})
        try:
            ahead = frozenset({"gemini-3-flash-preview", "gpt-5.4-mini"})
            _, stub = await start_server(adapters=adapters, simulation=SimulationProfile(fail_before_first=ahead))
            req = router_pb2.GenerateRequest(
                account_id="bmp",
                modality=catalog_pb2.MODALITY_TEXT,
                prompt="Describe it",
                preferred_tier=catalog_pb2.TIER_STANDARD,
            )
            req.attachments.add(mime_type="image/bmp", data=b"BM")
            frames = [f async for f in stub.Generate(req, timeout=20)]
        finally:
            for adapter in adapters.values():
                await adapter.close()
            await fake.stop()
        chain = [frames[0].decision.model.id, *frames[0].decision.fallback_model_ids]
        assert chain[:3] == ["gemini-3-flash-preview", "gpt-5.4-mini", "claude-haiku-4-5"]
        fallbacks = [f.fallback for f in frames if f.HasField("fallback")]
        assert any(
            f.from_model_id == "claude-haiku-4-5" and f.reason == "PROVIDER_UNSUPPORTED_INPUT" for f in fallbacks
        )
        assert frames[-1].completion.model_id == chain[3]
        assert fake.requests == []


class TestRequestShapes:
    """Edges of the request each API constrains."""

    @pytest.mark.parametrize("max_output_tokens", [0, 100, 64_000])
    async def test_thinking_budget_fits_the_model(self, max_output_tokens: int) -> None:
        """Claude's thinking budget stays at least 1,024 and below max_tokens, and max_tokens
        within the model's limit, whatever answer limit the caller sets."""
        fake = FakeAnthropic()
        base = await fake.start()
        adapter = AnthropicProvider("anthropic", Endpoint(base, KEY))
        request = replace(_request(), options=GenerationOptions(reasoning=True, max_output_tokens=max_output_tokens))
        try:
            await _run(adapter, "claude-haiku-4-5", request)
        finally:
            await adapter.close()
            await fake.stop()
        assert fake.rejected == []
        body = fake.body
        assert 1024 <= body["thinking"]["budget_tokens"] < body["max_tokens"] <= 64_000
        if max_output_tokens == 100:
            assert body["max_tokens"] == 100 + body["thinking"]["budget_tokens"]

    async def test_openai_output_limit_is_at_least_16(self) -> None:
        """A caller's limit under the Responses API's minimum is raised to it, not refused."""
        fake = FakeOpenAIResponses()
        base = await fake.start()
        adapter = OpenAIResponsesProvider("openai", Endpoint(base, KEY))
        try:
            await _run(adapter, "gpt-5.4", replace(_request(), options=GenerationOptions(max_output_tokens=5)))
        finally:
            await adapter.close()
            await fake.stop()
        assert fake.rejected == []
        assert fake.body["max_output_tokens"] == 16

    async def test_no_attachment_is_left_behind(self) -> None:
        """The request's attachments and a system message's go with the last user message."""
        fake = FakeGemini()
        base = await fake.start()
        adapter = GeminiProvider("gemini", Endpoint(base, KEY))
        png, pdf = (
            Attachment("image/png", data=b"\x89PNG"),
            Attachment("application/pdf", uri="https://example.org/a.pdf"),
        )
        messages = (
            ChatMessage(Role.SYSTEM, "Be brief.", (pdf,)),
            ChatMessage(Role.USER, "First"),
            ChatMessage(Role.ASSISTANT, "Yes"),
            ChatMessage(Role.USER, "Describe them"),
        )
        request = replace(_request(png), messages=messages)
        try:
            await _run(adapter, "gemini-3.1-pro-preview", request)
        finally:
            await adapter.close()
            await fake.stop()
        contents = fake.body["contents"]
        assert [c["role"] for c in contents] == ["user", "model", "user"]
        assert contents[-1]["parts"] == [
            {"text": "Describe them"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.org/a.pdf"}},
        ]
        assert fake.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}

    async def test_nested_error_event(self) -> None:
        """An OpenAI `error` event that nests its error object keeps its meaning."""
        fake = FakeOpenAIResponses()
        base = await fake.start()
        fake.script = [
            sse(
                {
                    "type": "error",
                    "error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded", "message": "Slow"},
                }
            )
        ]
        adapter = OpenAIResponsesProvider("openai", Endpoint(base, KEY))
        try:
            with pytest.raises(ProviderError) as caught:
                await _run(adapter, "gpt-5.4", _request())
        finally:
            await adapter.close()
            await fake.stop()
        assert caught.value.reason == "PROVIDER_RATE_LIMITED"

    async def test_openai_citation_span_counts_in_the_whole_answer(self) -> None:
        """A url_citation's indices count in its own message's text; the frame's count in the
        whole answer, so a source of the second message points past the first."""

        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, **fields}, kind)

        note = {"type": "url_citation", "url": "https://example.org/b", "title": "B", "start_index": 0, "end_index": 7}
        done = {"id": "r", "status": "completed", "usage": {"input_tokens": 3, "output_tokens": 4}}
        fake = FakeOpenAIResponses()
        base = await fake.start()
        fake.script = [
            event("response.output_text.delta", item_id="m1", output_index=0, content_index=0, delta="First. "),
            event("response.output_text.delta", item_id="m2", output_index=1, content_index=0, delta="Second."),
            event(
                "response.output_text.annotation.added",
                item_id="m2",
                output_index=1,
                content_index=0,
                annotation_index=0,
                annotation=note,
            ),
            event("response.completed", response=done),
        ]
        adapter = OpenAIResponsesProvider("openai", Endpoint(base, KEY))
        try:
            events = await _run(adapter, "gpt-5.4", _request())
        finally:
            await adapter.close()
            await fake.stop()
        assert [e for e in events if isinstance(e, Citation)] == [Citation("https://example.org/b", "B", 7, 14)]
