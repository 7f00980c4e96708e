"""Each provider adapter against a real loopback fake of its API, and fallback with cool-down
over a real gRPC channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory, wait_until
from fakes import TOKENS, FakeProvider
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs
from switchboard.app import provider_endpoints
from switchboard.catalog import default_config_text, load_catalog
from switchboard.errors import ProviderError
from switchboard.health import CircuitBreaker
from switchboard.providers import real_adapters
from switchboard.providers.anthropic import AnthropicProvider
from switchboard.providers.base import HttpProvider
from switchboard.providers.gemini import GeminiProvider
from switchboard.providers.http import Endpoint
from switchboard.providers.openai_compat import OpenAICompatProvider
from switchboard.selection import derive_requirements
from switchboard.settings import Settings
from switchboard.types import (
    Finished,
    FinishReason,
    GenerationRequest,
    Modality,
    Model,
    ProviderEvent,
    SelectionRequest,
    TextChunk,
)
from switchboard.v1 import catalog_pb2, router_pb2

KINDS = {"openai": OpenAICompatProvider, "anthropic": AnthropicProvider, "gemini": GeminiProvider}
SECRET = "sk-test-0123456789abcdef-secret"
MODEL = replace(load_catalog(None).models[0], upstream_model="m-1")
REQUEST = GenerationRequest("r1", SelectionRequest("a", derive_requirements(Modality.TEXT)), prompt="Say hello")


@pytest.fixture(params=sorted(KINDS))
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FakeProvider, HttpProvider]]:
    """A fake provider and the adapter pointed at it (0.5 s read timeout for the stall test)."""
    fake = FakeProvider(request.param)
    base = await fake.start()
    fake.echo_key = SECRET
    adapter = KINDS[request.param](request.param, Endpoint(base, SECRET, 2.0, 0.5))
    yield fake, adapter
    await adapter.close()
    await fake.stop()


async def run(adapter: HttpProvider, model: Model = MODEL) -> tuple[list[ProviderEvent], ProviderError | None]:
    events: list[ProviderEvent] = []
    try:
        async for event in adapter.stream(model, REQUEST):
            events.append(event)
    except ProviderError as exc:
        return events, exc
    return events, None


class TestStreams:
    """Normal and slow streams."""

    async def test_normal_stream(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """Text arrives in order; usage and finish reason come from the provider's own fields."""
        fake, adapter = pair
        events, error = await run(adapter)
        assert error is None
        assert "".join(e.text for e in events if isinstance(e, TextChunk)) == "".join(TOKENS)
        assert events[-1] == Finished(FinishReason.STOP, events[-1].usage)  # type: ignore[union-attr]
        assert (events[-1].usage.input_tokens, events[-1].usage.output_tokens) == (7, len(TOKENS))  # type: ignore[union-attr]
        path, headers, body = fake.requests[0]
        if fake.kind == "openai":
            assert path == "/v1/chat/completions"
            assert headers["Authorization"] == f"Bearer {SECRET}"
            assert body["stream"] is True
            assert body["messages"] == [{"role": "user", "content": "Say hello"}]
        elif fake.kind == "anthropic":
            assert path == "/v1/messages"
            assert headers["x-api-key"] == SECRET
            assert headers["anthropic-version"] == "2023-06-01"
            assert body["messages"] == [{"role": "user", "content": "Say hello"}]
        else:
            assert path == "/v1beta/models/m-1:streamGenerateContent?alt=sse"
            assert headers["x-goog-api-key"] == SECRET
            assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hello"}]}]

    async def test_slow_first_token(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """A slow first token is waited for (within the read timeout)."""
        fake, adapter = pair
        fake.scenario = "slow_first"
        events, error = await run(adapter)
        assert error is None
        assert isinstance(events[-1], Finished)


class TestFailures:
    """Provider failures are classified; retryable ones allow fallback."""

    @pytest.mark.parametrize(
        ("scenario", "reason", "retryable"),
        [
            ("429", "PROVIDER_RATE_LIMITED", True),
            ("500", "PROVIDER_OVERLOADED", True),
            ("401", "PROVIDER_AUTH_FAILED", True),
            ("400_context", "PROVIDER_CONTEXT_TOO_LONG", False),
        ],
    )
    async def test_before_first_token(
        self, pair: tuple[FakeProvider, HttpProvider], scenario: str, reason: str, retryable: bool
    ) -> None:
        """An HTTP error status is one ProviderError with the right reason and no output."""
        fake, adapter = pair
        fake.scenario = scenario
        events, error = await run(adapter)
        assert events == []
        assert error is not None
        assert (error.reason, error.retryable) == (reason, retryable)
        if scenario == "429":
            assert "retry after 7 s" in error.message
        assert SECRET not in error.message
        assert SECRET[:12] not in error.message

    async def test_dropped_mid_stream(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """A connection dropped after output is an error after the first text."""
        fake, adapter = pair
        fake.scenario = "drop"
        events, error = await run(adapter)
        assert [e for e in events if isinstance(e, TextChunk)]
        assert error is not None
        assert error.reason in ("PROVIDER_UNAVAILABLE", "PROVIDER_BAD_RESPONSE")

    async def test_malformed_event(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """An event that is not JSON is PROVIDER_BAD_RESPONSE."""
        fake, adapter = pair
        fake.scenario = "malformed"
        _, error = await run(adapter)
        assert error is not None
        assert error.reason == "PROVIDER_BAD_RESPONSE"

    async def test_stalled_stream_times_out(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """A stream that stops sending is PROVIDER_TIMEOUT after the read timeout."""
        fake, adapter = pair
        fake.scenario = "stall"
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, error = await run(adapter)
        assert error is not None
        assert error.reason == "PROVIDER_TIMEOUT"
        assert loop.time() - started < 5

    async def test_cancellation_closes_the_connection(self, pair: tuple[FakeProvider, HttpProvider]) -> None:
        """Cancelling the consumer closes the upstream request; the fake sees it."""
        fake, adapter = pair
        fake.scenario = "slow"
        two = asyncio.Event()

        async def consume() -> None:
            got = 0
            async for event in adapter.stream(MODEL, REQUEST):
                got += isinstance(event, TextChunk)
                if got == 2:
                    two.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(two.wait(), timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.disconnected.wait(), timeout=3)


class TestCircuitBreaker:
    """Consecutive failures cool a model down; success closes the breaker."""

    def test_cooldown_and_recovery(self) -> None:
        """Three failures open it for the cool-down; after it, one more failure re-opens it."""
        now = [100.0]
        breaker = CircuitBreaker(threshold=3, cooldown_s=30, clock=lambda: now[0])
        for _ in range(2):
            breaker.record_failure("m")
        assert breaker.is_available("m")
        breaker.record_failure("m")
        assert not breaker.is_available("m")
        assert breaker.cooldown_remaining_ms("m") == 30_000
        now[0] += 31
        assert breaker.is_available("m")
        breaker.record_failure("m")
        assert not breaker.is_available("m")
        now[0] += 31
        breaker.record_success("m")
        assert breaker.is_available("m")
        assert breaker.cooldown_remaining_ms("m") == 0
        assert breaker.cooldowns == 2


class TestFallbackOverTheWire:
    """A failing real provider: automatic fallback, then cool-down, visible in ListModels."""

    async def test_fallback_and_cooldown(self, start_server: ServerFactory) -> None:
        """Gemini's fake answers 500: each request falls back to gpt-5.4-nano; after three failures
        gemini-3.1-flash-lite cools down and selection skips it."""
        fake = FakeProvider("gemini")
        base = await fake.start()
        fake.scenario = "500"
        try:
            adapter = GeminiProvider("gemini", Endpoint(base, SECRET, 2.0, 2.0))
            handle, stub = await start_server(adapters={"gemini": adapter})
            req = router_pb2.GenerateRequest(account_id="f", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")
            with capture_logs() as logs:
                for i in range(3):
                    req.request_id = f"r{i}"
                    frames = [f async for f in stub.Generate(req, timeout=20)]
                    assert frames[1].fallback.reason == "PROVIDER_OVERLOADED"
                    assert frames[-1].completion.model_id == "gpt-5.4-nano"
            assert any(e["event"] == "model_cooling_down" for e in logs)
            listing = {m.model.id: m for m in (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models}
            flash = listing["gemini-3.1-flash-lite"]
            assert flash.health == router_pb2.MODEL_HEALTH_COOLING_DOWN
            assert flash.cooldown_remaining_ms > 0
            assert not flash.simulated
            assert listing["gpt-5.4-nano"].health == router_pb2.MODEL_HEALTH_SERVING
            decision = (await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)).decision
            assert decision.model.id == "gpt-5.4-nano"
            skipped = next(n for n in decision.not_chosen if n.model_id == "gemini-3.1-flash-lite")
            assert skipped.reason == router_pb2.NOT_CHOSEN_REASON_UNAVAILABLE
            assert len(fake.requests) == 3
            async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for model_id, want in (("gemini-3.1-flash-lite", "NOT_SERVING"), ("gpt-5.4-nano", "SERVING")):
                    check = health_pb2.HealthCheckRequest(service=f"switchboard.model/{model_id}")
                    got = (await health.Check(check, timeout=5)).status
                    assert health_pb2.HealthCheckResponse.ServingStatus.Name(got) == want
            await handle.app.providers.close()
        finally:
            await fake.stop()

    async def test_other_modalities_stay_simulated(self, start_server: ServerFactory) -> None:
        """An adapter serves only the modalities it implements; the rest stay simulated and say so."""
        adapter = OpenAICompatProvider("openai", Endpoint("http://127.0.0.1:9", SECRET))
        _, stub = await start_server(adapters={"openai": adapter})
        listing = {m.model.id: m for m in (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models}
        assert not listing["gpt-5.4"].simulated
        assert listing["openai/gpt-image-2"].simulated
        assert listing["tts-1-hd"].simulated
        await adapter.close()


class TestAdapters:
    """Every catalog model has a real adapter (the media adapters' own tests are in
    test_media_providers.py and test_conformance_media.py)."""

    async def test_every_model_has_a_real_adapter(self, start_server: ServerFactory) -> None:
        """With every key configured, no catalog model is simulated."""
        endpoints = {
            name: Endpoint("http://127.0.0.1:9", SECRET) for name in ("openai", "xai", "anthropic", "gemini", "fal")
        }
        _, stub = await start_server(adapters=real_adapters(endpoints))
        listing = (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models
        assert [m.model.id for m in listing if m.simulated] == []


class TestReloadClosesRetiredClients:
    """A reload builds new provider clients; the replaced ones close once their streams end."""

    async def test_old_clients_close_after_their_last_stream(self, start_server: ServerFactory) -> None:
        """A stream that started before the reload finishes on the old Gemini client; that client
        closes when the stream ends, not before, and the new one stays open and serves."""
        fake = FakeProvider("gemini")
        base = await fake.start()
        fake.scenario = "slow_first"  # 0.3 s to the first token: the stream outlives the reload
        old = GeminiProvider("gemini", Endpoint(base, SECRET, 2.0, 2.0))
        new = GeminiProvider("gemini", Endpoint(base, SECRET, 2.0, 2.0))
        try:
            handle, stub = await start_server(adapters={"gemini": old})
            req = router_pb2.GenerateRequest(
                account_id="reload",
                modality=catalog_pb2.MODALITY_TEXT,
                prompt="hi",
                pinned_model_id="gemini-3.1-flash-lite",
            )
            call = stub.Generate(req, timeout=30)
            first = await call.read()
            assert first.WhichOneof("event") == "decision"
            assert handle.reload({"gemini": new}) is True
            await asyncio.sleep(0.1)
            assert not old.closed  # its stream is still waiting for the first token
            rest = []
            while (frame := await call.read()) is not grpc.aio.EOF:
                rest.append(frame)
            assert rest[0].WhichOneof("event") == "delta"
            assert rest[-1].completion.model_id == "gemini-3.1-flash-lite"
            await wait_until(lambda: old.closed)
            assert not new.closed
            fake.scenario = "normal"
            req.request_id = "after-reload"
            after = [f async for f in stub.Generate(req, timeout=30)]
            assert after[-1].completion.model_id == "gemini-3.1-flash-lite"
        finally:
            await new.close()
            await fake.stop()

    async def test_idle_old_clients_close_at_once(self, start_server: ServerFactory) -> None:
        """With no stream running, the replaced clients close right after the reload."""
        old = GeminiProvider("gemini", Endpoint("http://127.0.0.1:9", SECRET))
        new = GeminiProvider("gemini", Endpoint("http://127.0.0.1:9", SECRET))
        handle, _ = await start_server(adapters={"gemini": old})
        assert handle.reload({"gemini": new}) is True
        await wait_until(lambda: old.closed)
        assert not new.closed
        assert handle.reload({"gemini": new}) is True  # the same client carried over stays open
        await asyncio.sleep(0.1)
        assert not new.closed


class TestProviderKeysFile:
    """Keys from a secrets file the config names: used, overridden by the environment, re-read on
    reload (key rotation), and a missing file is a config error that names it."""

    async def test_keys_file_named_by_the_config(self, start_server: ServerFactory, tmp_path: Path) -> None:
        fake = FakeProvider("gemini")
        base = await fake.start()
        keys = tmp_path / "keys.yaml"
        keys.write_text("GEMINI_API_KEY: key-one\n")
        config = tmp_path / "switchboard.yaml"
        config.write_text(default_config_text() + "\nproviderKeysFile: keys.yaml\n")
        try:
            handle, stub = await start_server(config_path=str(config), provider_base_urls={"gemini": base})
            listing = {m.model.id: m for m in (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models}
            assert not listing["gemini-3.1-flash-lite"].simulated
            assert listing["gpt-5.4-nano"].simulated  # no key for OpenAI in the file
            req = router_pb2.GenerateRequest(
                account_id="k", modality=1, prompt="hi", pinned_model_id="gemini-3.1-flash-lite"
            )
            frames = [f async for f in stub.Generate(req, timeout=10)]
            assert not frames[-1].completion.simulated
            assert fake.requests[-1][1]["x-goog-api-key"] == "key-one"

            keys.write_text("GEMINI_API_KEY: key-two\n")  # rotated, then SIGHUP
            assert handle.reload() is True
            req.request_id = "after-rotation"
            frames = [f async for f in stub.Generate(req, timeout=10)]
            assert fake.requests[-1][1]["x-goog-api-key"] == "key-two"

            keys.unlink()
            with capture_logs() as logs:
                assert handle.reload() is False  # the running config and its keys stay
            refused = next(e for e in logs if e["event"] == "reload_refused")["reason"]
            assert str(config) in refused
            assert "providerKeysFile" in refused
            assert "key-two" not in refused
        finally:
            await fake.stop()

    def test_environment_overrides_the_file(self, tmp_path: Path) -> None:
        (tmp_path / "keys.yaml").write_text("GEMINI_API_KEY: from-file\nANTHROPIC_API_KEY: a-file\n")
        config = catalog_pb2.Config(provider_keys_file="keys.yaml")
        settings = Settings(config_path=str(tmp_path / "c.yaml"), provider_keys={"GEMINI_API_KEY": "from-env"})
        endpoints = provider_endpoints(settings, config, "c.yaml")
        assert endpoints["gemini"].api_key == "from-env"
        assert endpoints["anthropic"].api_key == "a-file"
        assert "from-env" not in repr(endpoints) + repr(settings)  # keys stay out of reprs
