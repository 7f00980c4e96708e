"""Every (model, capability) pair the shipped catalog claims for text reaches the provider in the
field its API documents, over a real gRPC server and real loopback fakes that validate requests
as the real APIs do; and what the provider answers for it (reasoning, sources, tool calls) comes
back as its own typed frame."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from conftest import ServerFactory
from fake_anthropic import FakeAnthropic
from fake_gemini import FakeGemini
from fake_http import LoopbackFake
from fake_openai_chat import FakeOpenAIChat
from fake_openai_responses import FakeOpenAIResponses
from switchboard.app import build_app
from switchboard.catalog import default_config_text, load_catalog
from switchboard.convert import Limits, generation_request
from switchboard.errors import ConfigError
from switchboard.providers import real_adapters
from switchboard.providers.http import Endpoint
from switchboard.settings import Settings
from switchboard.types import (
    Capability,
    Citation,
    Finished,
    FinishReason,
    Modality,
    ReasoningChunk,
    TextChunk,
    ToolCallEvent,
    Usage,
)
from switchboard.v1 import catalog_pb2, router_pb2

CATALOG = load_catalog(None)
TEXT_PAIRS = [(m.id, c) for m in CATALOG.models if m.modality is Modality.TEXT for c in sorted(m.capabilities)]
KEY = "sk-conformance-0123456789"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVQI12P4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 8
VIDEO_URI = "https://example.org/clip.mp4"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
SOURCE = Citation("https://example.org/source", "Example source", 0, len("Hello, world!"))
"""The source every fake cites, over its whole answer."""
USAGE = {"openai": Usage(11, 9), "anthropic": Usage(11 + 2, 9), "gemini": Usage(11, 5 + 4)}
"""The fakes' figures: Claude's cached input counts as input, Gemini's thought tokens as output."""
FAKES: dict[str, Callable[[], LoopbackFake]] = {
    "openai": FakeOpenAIResponses,
    "anthropic": FakeAnthropic,
    "gemini": FakeGemini,
}


def request_for(model_id: str, capability: Capability) -> router_pb2.GenerateRequest:
    """A Generate request pinned to the model that needs exactly ``capability``."""
    req = router_pb2.GenerateRequest(
        account_id="conformance",
        modality=catalog_pb2.MODALITY_TEXT,
        prompt="Say hello",
        pinned_model_id=model_id,
        request_id=f"{model_id}-{capability.name}",
    )
    files = {
        Capability.IMAGE_INPUT: router_pb2.Attachment(mime_type="image/png", data=PNG, name="dot.png"),
        Capability.DOCUMENT_INPUT: router_pb2.Attachment(mime_type="application/pdf", data=PDF, name="doc.pdf"),
        Capability.AUDIO_INPUT: router_pb2.Attachment(mime_type="audio/mpeg", data=MP3, name="clip.mp3"),
        Capability.VIDEO_INPUT: router_pb2.Attachment(mime_type="video/mp4", uri=VIDEO_URI),
    }
    if capability in files:
        req.attachments.append(files[capability])
    elif capability is Capability.WEB_SEARCH:
        req.options.web_search = True
    elif capability is Capability.STRUCTURED_OUTPUT:
        req.options.structured_output.json_schema = json.dumps(SCHEMA)
        req.options.structured_output.name = "answer"
    elif capability is Capability.TOOL_CALLING:
        req.options.tools.add(
            name="get_weather", description="The weather", parameters_json_schema=json.dumps(TOOL_SCHEMA)
        )
    elif capability is Capability.REASONING:
        req.options.reasoning = True
    return req


def _parts(body: Any) -> list[dict[str, Any]]:
    """Every content part of every message (OpenAI, Anthropic) or content (Gemini)."""
    out: list[dict[str, Any]] = []
    for m in body.get("input") or body.get("messages") or body.get("contents") or []:
        content = m.get("content", m.get("parts"))
        out += content if isinstance(content, list) else []
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


WIRE: dict[tuple[str, Capability], tuple[str, Callable[[Any], bool]]] = {
    # OpenAI Responses API
    ("openai", Capability.IMAGE_INPUT): (
        "`input[].content[]` part `input_image`, `image_url` a data: URI (or the URL)",
        lambda b: {"type": "input_image", "image_url": f"data:image/png;base64,{_b64(PNG)}"} in _parts(b),
    ),
    ("openai", Capability.DOCUMENT_INPUT): (
        "`input[].content[]` part `input_file`, `file_data` a data: URI with `filename` (or `file_url`)",
        lambda b: (
            {"type": "input_file", "filename": "doc.pdf", "file_data": f"data:application/pdf;base64,{_b64(PDF)}"}
            in _parts(b)
        ),
    ),
    ("openai", Capability.WEB_SEARCH): (
        '`tools[]`: `{"type": "web_search"}`',
        lambda b: {"type": "web_search"} in b["tools"],
    ),
    ("openai", Capability.STRUCTURED_OUTPUT): (
        "`text.format`: `type: json_schema`, `name`, `schema`",
        lambda b: b["text"]["format"] == {"type": "json_schema", "name": "answer", "schema": SCHEMA},
    ),
    ("openai", Capability.TOOL_CALLING): (
        "`tools[]`: `type: function`, `name`, `description`, `parameters`, `strict: false`",
        lambda b: any(t.get("name") == "get_weather" and t["parameters"] == TOOL_SCHEMA for t in b["tools"]),
    ),
    ("openai", Capability.REASONING): (
        "`reasoning`: `effort: high`, `summary: auto`",
        lambda b: b["reasoning"] == {"effort": "high", "summary": "auto"},
    ),
    # Anthropic Messages API
    ("anthropic", Capability.IMAGE_INPUT): (
        "`messages[].content[]` block `image`, source `base64` (or `url`)",
        lambda b: (
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _b64(PNG)}} in _parts(b)
        ),
    ),
    ("anthropic", Capability.DOCUMENT_INPUT): (
        "`messages[].content[]` block `document`, source `base64` (or `url`; `text` for plain text)",
        lambda b: (
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": _b64(PDF)}}
            in _parts(b)
        ),
    ),
    ("anthropic", Capability.WEB_SEARCH): (
        "`tools[]`: server tool `web_search_20250305`",
        lambda b: {"type": "web_search_20250305", "name": "web_search", "max_uses": 5} in b["tools"],
    ),
    ("anthropic", Capability.STRUCTURED_OUTPUT): (
        "`output_config.format`: `type: json_schema`, `schema`",
        lambda b: b["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}},
    ),
    ("anthropic", Capability.TOOL_CALLING): (
        "`tools[]`: `name`, `description`, `input_schema`",
        lambda b: any(t.get("name") == "get_weather" and t["input_schema"] == TOOL_SCHEMA for t in b["tools"]),
    ),
    ("anthropic", Capability.REASONING): (
        "`thinking`: `type: enabled`, `budget_tokens` 4096, `max_tokens` raised by as much",
        lambda b: b["thinking"]["type"] == "enabled" and 1024 <= b["thinking"]["budget_tokens"] < b["max_tokens"],
    ),
    # Gemini generateContent
    ("gemini", Capability.IMAGE_INPUT): (
        "`contents[].parts[]`: `inlineData` `{mimeType, data}` (`fileData` for a URI)",
        lambda b: {"inlineData": {"mimeType": "image/png", "data": _b64(PNG)}} in _parts(b),
    ),
    ("gemini", Capability.DOCUMENT_INPUT): (
        "`contents[].parts[]`: `inlineData` `application/pdf` (`fileData` for a URI)",
        lambda b: {"inlineData": {"mimeType": "application/pdf", "data": _b64(PDF)}} in _parts(b),
    ),
    ("gemini", Capability.AUDIO_INPUT): (
        "`contents[].parts[]`: `inlineData` `audio/*` (`fileData` for a URI)",
        lambda b: {"inlineData": {"mimeType": "audio/mpeg", "data": _b64(MP3)}} in _parts(b),
    ),
    ("gemini", Capability.VIDEO_INPUT): (
        "`contents[].parts[]`: `fileData` `{mimeType, fileUri}` (`inlineData` for bytes)",
        lambda b: {"fileData": {"mimeType": "video/mp4", "fileUri": VIDEO_URI}} in _parts(b),
    ),
    ("gemini", Capability.WEB_SEARCH): (
        "`tools[]`: `{googleSearch: {}}`",
        lambda b: {"googleSearch": {}} in b["tools"],
    ),
    ("gemini", Capability.STRUCTURED_OUTPUT): (
        "`generationConfig`: `responseMimeType: application/json`, `responseJsonSchema`",
        lambda b: b["generationConfig"]["responseJsonSchema"] == SCHEMA,
    ),
    ("gemini", Capability.TOOL_CALLING): (
        "`tools[].functionDeclarations[]`: `name`, `description`, `parameters`",
        lambda b: b["tools"][0]["functionDeclarations"][0]["parameters"] == TOOL_SCHEMA,
    ),
    ("gemini", Capability.REASONING): (
        "`generationConfig.thinkingConfig`: `thinkingLevel: high` (Gemini 3; `thinkingBudget: -1` before), `includeThoughts: true`",
        lambda b: b["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "high", "includeThoughts": True},
    ),
}
"""(adapter, capability) -> the documented field the capability becomes, and a check of the body."""


class TestEveryClaimReachesTheWire:
    """The table covers the catalog, and each claimed capability arrives in its documented field."""

    def test_every_claim_has_a_case(self) -> None:
        """A text capability added to the catalog without a wire case fails here."""
        by_id = {m.id: m for m in CATALOG.models}
        missing = [(mid, c.name) for mid, c in TEXT_PAIRS if (by_id[mid].adapter, c) not in WIRE]
        assert missing == []
        assert len(TEXT_PAIRS) >= 60

    @pytest.mark.parametrize(("model_id", "capability"), TEXT_PAIRS, ids=[f"{m}-{c.name}" for m, c in TEXT_PAIRS])
    async def test_capability_arrives(self, model_id: str, capability: Capability) -> None:
        """The request passes the fake's checks and carries the capability in its field; the
        answer's text, reasoning, sources, tool calls, usage and finish reason come back apart."""
        model = CATALOG.by_id[model_id]
        field, arrived = WIRE[(model.adapter, capability)]
        fake = FAKES[model.adapter]()
        base = await fake.start()
        adapter = real_adapters({model.adapter: Endpoint(base, KEY)})[model.adapter]
        request = generation_request(request_for(model_id, capability), Limits(), need_content=True)
        try:
            events = [e async for e in adapter.stream(model, request)]
        finally:
            await adapter.close()
            await fake.stop()
        assert fake.rejected == []
        assert len(fake.requests) == 1
        assert arrived(fake.body), f"{model_id}: {capability.name} is not in {field}: {json.dumps(fake.body)[:600]}"
        text = "".join(e.text for e in events if isinstance(e, TextChunk))
        assert text == "Hello, world!"
        reasoning = "".join(e.text for e in events if isinstance(e, ReasoningChunk))
        assert bool(reasoning) is (capability is Capability.REASONING)
        assert "Weighing" not in text  # reasoning never mixed into the answer
        citations = [e for e in events if isinstance(e, Citation)]
        quoted = "Hello, world" if model.adapter == "anthropic" else ""  # only Claude quotes the source
        assert citations == ([replace(SOURCE, cited_text=quoted)] if capability is Capability.WEB_SEARCH else [])
        calls = [(e.name, json.loads(e.arguments_json)) for e in events if isinstance(e, ToolCallEvent)]
        finished = events[-1]
        assert isinstance(finished, Finished)
        assert finished.usage == USAGE[model.adapter]
        if capability is Capability.TOOL_CALLING:
            assert calls == [("get_weather", {"city": "Paris"})]
            assert finished.finish_reason is FinishReason.TOOL_CALLS
        else:
            assert calls == []
            assert finished.finish_reason is FinishReason.STOP


class TestTypedFramesOverTheWire:
    """Reasoning and sources reach a gRPC caller as their own frames, never inside the text."""

    @pytest.mark.parametrize("model_id", ["gpt-5.4", "claude-sonnet-4-6", "gemini-3.1-pro-preview"])
    async def test_reasoning_and_citation_frames(self, start_server: ServerFactory, model_id: str) -> None:
        """One request with reasoning and web search: reasoning frames before the text, a citation
        frame with the source and its span, the provider's usage in the completion."""
        model = CATALOG.by_id[model_id]
        fake = FAKES[model.adapter]()
        base = await fake.start()
        adapters = real_adapters({model.adapter: Endpoint(base, KEY)})
        req = request_for(model_id, Capability.REASONING)
        req.options.web_search = True
        try:
            _, stub = await start_server(adapters=adapters)
            frames = [f async for f in stub.Generate(req, timeout=20)]
        finally:
            for adapter in adapters.values():
                await adapter.close()
            await fake.stop()
        assert fake.rejected == []
        kinds = [f.WhichOneof("event") for f in frames]
        assert kinds[0] == "decision"
        assert not frames[0].decision.simulated
        assert kinds.index("reasoning") < kinds.index("delta")
        text = "".join(f.delta.text for f in frames if f.HasField("delta"))
        assert text == "Hello, world!"
        assert "Weighing" in "".join(f.reasoning.text for f in frames if f.HasField("reasoning"))
        citations = [f.citation for f in frames if f.HasField("citation")]
        assert [(c.url, c.title, c.start_index, c.end_index) for c in citations] == [
            (SOURCE.url, SOURCE.title, 0, len(text))
        ]
        completion = frames[-1].completion
        assert (completion.model_id, completion.simulated) == (model_id, False)
        usage = USAGE[model.adapter]
        assert (completion.usage.input_tokens, completion.usage.output_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
        )

    async def test_simulated_provider_sends_the_same_frames(self, start_server: ServerFactory) -> None:
        """Without keys, a reasoning and web-search request still shows both frames, labelled
        simulated, so callers can build against them."""
        _, stub = await start_server()
        req = request_for("claude-opus-4-6", Capability.REASONING)
        req.options.web_search = True
        frames = [f async for f in stub.Generate(req, timeout=20)]
        kinds = [f.WhichOneof("event") for f in frames]
        assert frames[0].decision.simulated
        assert kinds.index("reasoning") < kinds.index("delta") < kinds.index("citation") < kinds.index("completion")
        text = "".join(f.delta.text for f in frames if f.HasField("delta"))
        citation = next(f.citation for f in frames if f.HasField("citation"))
        assert (citation.start_index, citation.end_index) == (0, len(text))
        assert "simulated" in citation.url


class TestTheCatalogCannotClaimWhatTheWireCannotCarry:
    """Loading a config whose model claims a capability its adapter cannot encode fails."""

    @pytest.mark.parametrize(
        ("model_id", "capability"),
        [("claude-haiku-4-5", "CAPABILITY_AUDIO_INPUT"), ("gpt-5.4", "CAPABILITY_VIDEO_INPUT")],
    )
    def test_unencodable_claim_is_refused_without_keys(self, tmp_path: Path, model_id: str, capability: str) -> None:
        """With no provider keys (simulation serves everything) the config still fails, naming the
        model and the capability."""
        config = yaml.safe_load(default_config_text())
        entry = next(m for m in config["models"] if m["id"] == model_id)
        entry["capabilities"].append(capability)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError) as caught:
            build_app(Settings(config_path=str(path), ledger=f"sqlite:{tmp_path / 'l.db'}"))
        assert model_id in str(caught.value)
        assert capability in str(caught.value)

    def test_shipped_catalog_loads(self, tmp_path: Path) -> None:
        """The shipped catalog passes the check."""
        app = build_app(Settings(ledger=f"sqlite:{tmp_path / 'l.db'}"))
        assert len(app.catalog.models) == len(CATALOG.models)


@pytest.fixture(params=["openai", "anthropic", "gemini", "openai_compat"])
async def fake_and_body(request: pytest.FixtureRequest) -> AsyncIterator[tuple[LoopbackFake, str, dict[str, Any]]]:
    """A fake, its request path, and a body the real API accepts."""
    fakes: dict[str, tuple[LoopbackFake, str, dict[str, Any]]] = {
        "openai": (
            FakeOpenAIResponses(),
            "/responses",
            {"model": "gpt-5.4", "input": [{"role": "user", "content": "hi"}], "stream": True},
        ),
        "anthropic": (
            FakeAnthropic(),
            "/v1/messages",
            {"model": "claude-opus-4-6", "max_tokens": 2048, "messages": [{"role": "user", "content": "hi"}]},
        ),
        "gemini": (
            FakeGemini(),
            "/v1beta/models/gemini-3-flash-preview:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        ),
        "openai_compat": (
            FakeOpenAIChat(),
            "/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
    }
    fake, path, body = fakes[str(request.param)]
    await fake.start()
    yield fake, path, body
    await fake.stop()


MALFORMED: dict[str, list[Callable[[dict[str, Any]], None]]] = {
    "openai": [
        lambda b: b.update(messages=b.pop("input")),  # Chat Completions' field on the Responses API
        lambda b: b["input"][0].update(
            content=[{"type": "input_file", "file_data": "data:application/pdf;base64,AA=="}]
        ),
        lambda b: b.update(reasoning={"effort": "extreme"}),
        lambda b: b.update(tools=[{"type": "function", "function": {"name": "f"}}]),
    ],
    "anthropic": [
        lambda b: b.pop("max_tokens"),
        lambda b: b.update(thinking={"type": "enabled", "budget_tokens": 4096}),  # not below max_tokens 2048
        lambda b: b.update(max_tokens=8192, thinking={"type": "enabled", "budget_tokens": 512}),
        lambda b: b["messages"][0].update(content=[{"type": "image", "source": {"type": "base64", "data": "AA=="}}]),
        lambda b: b.update(response_format={"type": "json_object"}),
    ],
    "gemini": [
        lambda b: b["contents"][0]["parts"].append(
            {"text": "a", "inlineData": {"mimeType": "image/png", "data": "AA=="}}
        ),
        lambda b: b.update(generationConfig={"thinkingConfig": {"thinkingLevel": "high", "thinkingBudget": 1024}}),
        lambda b: b.update(generationConfig={"responseJsonSchema": {"type": "object"}}),
        lambda b: b.update(tools=[{"googleSearch": {}, "functionDeclarations": [{"name": "f"}]}]),
        lambda b: b.update(contents=[]),
    ],
    "openai_compat": [
        lambda b: b.update(input=b.pop("messages")),
        lambda b: b["messages"][0].update(content=[{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]),
    ],
}


class TestFakesRejectMalformedBodies:
    """A fake that accepted anything would prove nothing: each rejects what its API rejects."""

    async def test_valid_body_accepted_malformed_rejected(
        self, fake_and_body: tuple[LoopbackFake, str, dict[str, Any]]
    ) -> None:
        """The valid body streams; each malformed variant is a 400 naming the problem."""
        fake, path, body = fake_and_body
        kind = {FakeOpenAIResponses: "openai", FakeAnthropic: "anthropic", FakeGemini: "gemini"}.get(
            type(fake), "openai_compat"
        )
        base = fake.base + ("/v1" if kind in ("openai", "openai_compat") else "")
        headers = {
            "authorization": f"Bearer {KEY}",
            "x-api-key": KEY,
            "anthropic-version": "2023-06-01",
            "x-goog-api-key": KEY,
        }
        async with aiohttp.ClientSession() as client:
            async with client.post(base + path, json=body, headers=headers) as ok:
                assert ok.status == 200, await ok.text()
            for i, breaks in enumerate(MALFORMED[kind]):
                bad = json.loads(json.dumps(body))
                breaks(bad)
                async with client.post(base + path, json=bad, headers=headers) as answer:
                    assert answer.status == 400, f"variant {i} was accepted: {bad}"
                    assert "error" in await answer.json(content_type=None)
            async with client.post(base + path, json=body) as missing_key:
                if kind != "openai_compat":  # self-hosted servers may need no key
                    assert missing_key.status == 400
        assert len(fake.rejected) == len(MALFORMED[kind]) + (kind != "openai_compat")


def wire_table() -> list[str]:
    """The README's table of what reaches each provider (text rows), as the catalog and the wire
    cases make it."""
    rows = []
    for (adapter, capability), (field, _) in WIRE.items():
        models = [m.id for m in CATALOG.models if m.adapter == adapter and capability in m.capabilities]
        if models:
            names = ", ".join(f"`{m}`" for m in models)
            rows.append(f"| {names} | `CAPABILITY_{capability.name}` | `{adapter}` | {field} |")
    return rows


class TestReadme:
    """The README's table says what the conformance test checks."""

    def test_wire_table_matches(self) -> None:
        """Every text row of "What reaches each provider" is in the README, as generated here."""
        readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
        section = readme.split("### What reaches each provider", 1)[1].split("\n## ", 1)[0]
        lines = {line.strip() for line in section.splitlines()}
        missing = [row for row in wire_table() if row not in lines]
        assert missing == [], "README rows to add or update:\n" + "\n".join(missing)
