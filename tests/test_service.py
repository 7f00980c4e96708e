"""RouterService over a real channel: listing, selection, streaming, fallback, cancellation,
deadlines and bad input."""

from __future__ import annotations

import asyncio
import io
import wave
import zlib
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import FAST, ServerFactory, error_info, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from structlog.testing import capture_logs
from switchboard.providers.simulated import SimulationProfile
from switchboard.types import GenerationRequest, Model, ProviderEvent
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

TEXT = catalog_pb2.MODALITY_TEXT


def gen_request(prompt: str = "Summarise the plan", **kw: object) -> router_pb2.GenerateRequest:
    kw.setdefault("modality", TEXT)
    return router_pb2.GenerateRequest(account_id="acct-1", prompt=prompt, **kw)  # type: ignore[arg-type]


async def frames(stub: router_pb2_grpc.RouterServiceStub, req: router_pb2.GenerateRequest) -> list[str]:
    return [f.WhichOneof("event") async for f in stub.Generate(req, timeout=20)]


class TestListModels:
    """ListModels returns the catalog with filters and serving state."""

    async def test_all_and_filters(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """28 models; filters by modality, tier and provider (any case) combine."""
        everything = await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
        assert len(everything.models) == 28
        assert all(m.simulated and m.health == router_pb2.MODEL_HEALTH_SERVING for m in everything.models)
        video = await stub.ListModels(router_pb2.ListModelsRequest(modality=catalog_pb2.MODALITY_VIDEO), timeout=5)
        assert len(video.models) == 9
        kling = await stub.ListModels(
            router_pb2.ListModelsRequest(provider="kling", tier=catalog_pb2.TIER_ADVANCED), timeout=5
        )
        assert [m.model.id for m in kling.models] == ["fal-ai/kling-video/v3/pro", "fal-ai/kling-video/o3/pro"]
        assert kling.models[0].model.price.credits_per_request == 250

    async def test_unknown_enum_filter(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """An unknown modality value is INVALID_ARGUMENT."""
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListModels(router_pb2.ListModelsRequest(modality=42), timeout=5)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).reason == "INVALID_ENUM_VALUE"


class TestSelectModel:
    """SelectModel quotes a decision without side effects."""

    async def test_automatic_with_attachment(self, start_server: ServerFactory) -> None:
        """An audio attachment routes a free text request to Gemini; nothing runs."""
        handle, stub = await start_server()
        req = gen_request(attachments=[router_pb2.Attachment(mime_type="audio/mpeg")])
        resp = await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        d = resp.decision
        assert d.model.id == "gemini-3.1-flash-lite"
        assert d.mode == router_pb2.SELECTION_MODE_AUTOMATIC
        assert list(d.fallback_model_ids) == ["gemini-3-flash-preview", "gemini-3.1-pro-preview"]
        assert list(d.required_capabilities) == [catalog_pb2.CAPABILITY_AUDIO_INPUT]
        assert d.estimated_credits == 1
        assert d.simulated
        assert d.plan_id == "free"
        assert len(d.not_chosen) == 27
        nano = next(n for n in d.not_chosen if n.model_id == "gpt-5.4-nano")
        assert nano.reason == router_pb2.NOT_CHOSEN_REASON_MISSING_CAPABILITY
        assert list(nano.missing_capabilities) == [catalog_pb2.CAPABILITY_AUDIO_INPUT]
        assert handle.app.simulator.completed_streams == 0
        assert handle.app.simulator.active_streams == 0

    async def test_pinned(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """A pinned model comes back as is with no fallbacks."""
        req = gen_request(pinned_model_id="claude-opus-4-6")
        d = (await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)).decision
        assert d.model.id == "claude-opus-4-6"
        assert d.mode == router_pb2.SELECTION_MODE_PINNED
        assert not d.fallback_model_ids
        assert d.estimated_credits == 10

    @pytest.mark.parametrize(
        ("kw", "code", "reason"),
        [
            ({"pinned_model_id": "gpt-9"}, grpc.StatusCode.NOT_FOUND, "MODEL_NOT_FOUND"),
            (
                {"pinned_model_id": "gpt-5.4", "modality": catalog_pb2.MODALITY_IMAGE},
                grpc.StatusCode.FAILED_PRECONDITION,
                "MODEL_MODALITY_MISMATCH",
            ),
            (
                {"pinned_model_id": "gpt-5.4-nano", "options": router_pb2.GenerationOptions(web_search=True)},
                grpc.StatusCode.FAILED_PRECONDITION,
                "MODEL_MISSING_CAPABILITIES",
            ),
            (
                {
                    "modality": catalog_pb2.MODALITY_SPEECH,
                    "required_capabilities": [catalog_pb2.CAPABILITY_WEB_SEARCH],
                },
                grpc.StatusCode.FAILED_PRECONDITION,
                "NO_CAPABLE_MODEL",
            ),
        ],
    )
    async def test_selection_errors(
        self, stub: router_pb2_grpc.RouterServiceStub, kw: dict[str, object], code: grpc.StatusCode, reason: str
    ) -> None:
        """Pinned and no-candidate errors carry their code and reason, in SelectModel and Generate."""
        req = gen_request(**kw)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        assert (err.value.code(), error_info(err.value).reason) == (code, reason)
        with pytest.raises(grpc.aio.AioRpcError) as err2:
            await frames(stub, req)
        assert (err2.value.code(), error_info(err2.value).reason) == (code, reason)

    async def test_missing_capability_named(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """The pinned error's metadata names what is missing."""
        req = gen_request(pinned_model_id="gpt-5.4-nano", options=router_pb2.GenerationOptions(web_search=True))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        assert error_info(err.value).metadata["missing_capabilities"] == "WEB_SEARCH"

    async def test_request_required(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """An empty SelectModelRequest is INVALID_ARGUMENT FIELD_REQUIRED."""
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(router_pb2.SelectModelRequest(), timeout=5)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(err.value).metadata["field"] == "request"


class TestGenerate:
    """Generate streams a decision, output and a completion."""

    async def test_text_stream(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """Decision first, then deltas, then one completion; the same prompt streams the same text."""
        texts = []
        for n in (1, 2):
            out = [f async for f in stub.Generate(gen_request(request_id=f"req-{n}"), timeout=10)]
            kinds = [f.WhichOneof("event") for f in out]
            assert kinds[0] == "decision"
            assert kinds[-1] == "completion"
            assert set(kinds[1:-1]) == {"delta"}
            texts.append("".join(f.delta.text for f in out[1:-1]))
            c = out[-1].completion
            assert c.model_id == "gemini-3.1-flash-lite"
            assert c.finish_reason == router_pb2.FINISH_REASON_STOP
            assert c.usage.output_tokens == 12
            assert c.credits_charged == 1
            assert c.attempts == 1
            assert c.simulated
            assert c.request_id == f"req-{n}"
            assert c.balance_remaining == 500 - n
        assert texts[0] == texts[1]
        assert texts[0].startswith("[simulated gemini-3.1-flash-lite]")

    async def test_request_id_runs_once(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """A request id already used is ALREADY_EXISTS DUPLICATE_REQUEST: never run or charged twice."""
        await frames(stub, gen_request(request_id="once"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await frames(stub, gen_request(request_id="once"))
        assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
        assert error_info(err.value).reason == "DUPLICATE_REQUEST"

    async def test_conversation(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """A role-tagged conversation streams like a prompt."""
        convo = router_pb2.Conversation(
            messages=[
                router_pb2.ChatMessage(role=router_pb2.ROLE_SYSTEM, content="Be brief."),
                router_pb2.ChatMessage(role=router_pb2.ROLE_USER, content="Hello there"),
            ]
        )
        req = router_pb2.GenerateRequest(account_id="a", modality=TEXT, conversation=convo)
        kinds = await frames(stub, req)
        assert kinds[0] == "decision"
        assert kinds[-1] == "completion"

    async def test_max_output_tokens(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """max_output_tokens cuts the answer and says LENGTH."""
        out = [f async for f in stub.Generate(gen_request(options={"max_output_tokens": 3}), timeout=10)]
        assert sum(1 for f in out if f.WhichOneof("event") == "delta") == 3
        assert out[-1].completion.finish_reason == router_pb2.FINISH_REASON_LENGTH

    async def test_image_speech_video_artifacts(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """Image, speech and video requests return decodable simulated artifacts."""
        results = {}
        for modality in (catalog_pb2.MODALITY_IMAGE, catalog_pb2.MODALITY_SPEECH, catalog_pb2.MODALITY_VIDEO):
            out = [f async for f in stub.Generate(gen_request("A red fox", modality=modality), timeout=10)]
            assert [f.WhichOneof("event") for f in out] == ["decision", "artifact", "completion"]
            assert out[1].artifact.simulated
            results[modality] = out[1].artifact
        png = results[catalog_pb2.MODALITY_IMAGE]
        assert png.mime_type == "image/png"
        assert png.data.startswith(b"\x89PNG\r\n\x1a\n")
        idat = png.data.index(b"IDAT")
        length = int.from_bytes(png.data[idat - 4 : idat], "big")
        assert len(zlib.decompress(png.data[idat + 4 : idat + 4 + length])) == 512 * (1 + 512)  # indexed colour
        wav = results[catalog_pb2.MODALITY_SPEECH]
        with wave.open(io.BytesIO(wav.data)) as w:
            assert w.getnframes() > 0
            assert w.getframerate() == 16000
        gif = results[catalog_pb2.MODALITY_VIDEO]
        assert gif.mime_type == "image/gif"
        assert gif.data.startswith(b"GIF89a")
        assert gif.data.endswith(b";")

    async def test_tool_call(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """A request with tools may get a tool call and finishes with TOOL_CALLS."""
        req = gen_request(options=router_pb2.GenerationOptions(tools=[router_pb2.Tool(name="lookup")]))
        out = [f async for f in stub.Generate(req, timeout=10)]
        assert out[1].tool_call.name == "lookup"
        assert out[-1].completion.finish_reason == router_pb2.FINISH_REASON_TOOL_CALLS


class TestFallback:
    """Automatic mode falls back before the first token; never after; pinned never."""

    async def test_failure_before_first_token_falls_back(self, start_server: ServerFactory) -> None:
        """The first model fails before output: a fallback frame, then the next model answers."""
        profile = SimulationProfile(tokens=5, fail_before_first=frozenset({"gemini-3.1-flash-lite"}))
        _, stub = await start_server(simulation=profile)
        with capture_logs() as logs:
            out = [f async for f in stub.Generate(gen_request(), timeout=10)]
        kinds = [f.WhichOneof("event") for f in out]
        assert kinds[:2] == ["decision", "fallback"]
        fb = out[1].fallback
        assert (fb.from_model_id, fb.to_model_id, fb.reason, fb.attempt) == (
            "gemini-3.1-flash-lite",
            "gpt-5.4-nano",
            "PROVIDER_FAILED",
            2,
        )
        assert out[-1].completion.model_id == "gpt-5.4-nano"
        assert out[-1].completion.attempts == 2
        assert any(e["event"] == "fallback" for e in logs)
        rpc = [e for e in logs if e["event"] == "rpc"]
        assert len(rpc) == 1
        assert rpc[0]["model"] == "gpt-5.4-nano"
        assert rpc[0]["attempts"] == 2
        assert rpc[0]["status"] == "OK"

    async def test_every_model_fails(self, start_server: ServerFactory) -> None:
        """When the whole chain fails before output the error is UNAVAILABLE PROVIDER_FAILED."""
        _, stub = await start_server(simulation=SimulationProfile(fail_before_first=frozenset({"*"})))
        req = gen_request(modality=catalog_pb2.MODALITY_SPEECH)
        got: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for f in stub.Generate(req, timeout=10):
                got.append(f.WhichOneof("event"))
        assert got == ["decision", "fallback", "fallback", "fallback"]
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        info = error_info(err.value)
        assert info.reason == "PROVIDER_FAILED"
        assert info.metadata["attempts"] == "4"

    async def test_pinned_never_falls_back(self, start_server: ServerFactory) -> None:
        """A failing pinned model ends the request after one attempt."""
        _, stub = await start_server(simulation=SimulationProfile(fail_before_first=frozenset({"gpt-5.4"})))
        got: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for f in stub.Generate(gen_request(pinned_model_id="gpt-5.4"), timeout=10):
                got.append(f.WhichOneof("event"))
        assert got == ["decision"]
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value).metadata == {
            "model_id": "gpt-5.4",
            "attempts": "1",
            "provider_reason": "PROVIDER_FAILED",
        }

    async def test_failure_after_output_is_not_switched(self, start_server: ServerFactory) -> None:
        """A mid-stream failure ends the stream with STREAM_INTERRUPTED; no other model is tried."""
        profile = SimulationProfile(tokens=10, fail_mid_stream=frozenset({"*"}), fail_after_tokens=3)
        handle, stub = await start_server(simulation=profile)
        got: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for f in stub.Generate(gen_request(), timeout=10):
                got.append(f.WhichOneof("event"))
        assert got == ["decision", "delta", "delta", "delta"]
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value).reason == "STREAM_INTERRUPTED"
        assert handle.app.simulator.completed_streams == 0


class TestCancellationAndDeadlines:
    """A caller that goes away stops the provider call promptly."""

    async def test_cancel_mid_stream(self, start_server: ServerFactory) -> None:
        """Cancelling after two deltas closes the provider stream within a second."""
        slow = SimulationProfile(tokens=1000, inter_token_s=0.02)
        handle, stub = await start_server(simulation=slow)
        call = stub.Generate(gen_request(), timeout=30)
        deltas = 0
        async for f in call:
            deltas += f.WhichOneof("event") == "delta"
            if deltas == 2:
                break
        assert handle.app.simulator.active_streams == 1
        call.cancel()
        await wait_until(lambda: handle.app.simulator.active_streams == 0, within=1.0)
        assert handle.app.simulator.cancelled_streams == 1
        assert handle.app.simulator.completed_streams == 0

    async def test_deadline(self, start_server: ServerFactory) -> None:
        """A deadline that passes mid-stream is DEADLINE_EXCEEDED and the provider call stops."""
        handle, stub = await start_server(simulation=SimulationProfile(tokens=1000, inter_token_s=0.02))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(gen_request(), timeout=0.3):
                pass
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert loop.time() - started < 3
        await wait_until(lambda: handle.app.simulator.active_streams == 0, within=1.0)
        assert handle.app.simulator.cancelled_streams == 1


def _conversation(*roles: int) -> router_pb2.Conversation:
    return router_pb2.Conversation(messages=[router_pb2.ChatMessage(role=r, content="hi") for r in roles])


BAD_INPUTS = [
    ("no account", {"account_id": ""}, "FIELD_REQUIRED"),
    ("no modality", {"modality": 0}, "FIELD_REQUIRED"),
    ("unknown modality", {"modality": 77}, "INVALID_ENUM_VALUE"),
    ("unknown capability", {"required_capabilities": [999]}, "INVALID_ENUM_VALUE"),
    ("unspecified capability", {"required_capabilities": [0]}, "FIELD_REQUIRED"),
    ("unknown tier", {"preferred_tier": 9}, "INVALID_ENUM_VALUE"),
    ("empty prompt", {"prompt": ""}, "EMPTY_PROMPT"),
    ("blank prompt", {"prompt": "   \n"}, "EMPTY_PROMPT"),
    ("oversize prompt", {"prompt": "x" * 5000}, "PROMPT_TOO_LARGE"),
    ("malformed MIME", {"attachments": [router_pb2.Attachment(mime_type="png", data=b"1")]}, "INVALID_MIME_TYPE"),
    ("MIME missing", {"attachments": [router_pb2.Attachment(data=b"1")]}, "FIELD_REQUIRED"),
    ("empty conversation", {"conversation": router_pb2.Conversation()}, "EMPTY_PROMPT"),
    ("role unspecified", {"conversation": _conversation(0)}, "FIELD_REQUIRED"),
    ("role unknown", {"conversation": _conversation(router_pb2.ROLE_USER, 12)}, "INVALID_ENUM_VALUE"),
    ("only system", {"conversation": _conversation(router_pb2.ROLE_SYSTEM)}, "EMPTY_PROMPT"),
    ("schema not JSON", {"options": {"structured_output": {"json_schema": "{nope"}}}, "INVALID_FIELD"),
    ("schema not object", {"options": {"structured_output": {"json_schema": "[1]"}}}, "INVALID_FIELD"),
    ("duplicate tools", {"options": {"tools": [{"name": "a"}, {"name": "a"}]}}, "INVALID_FIELD"),
    ("bad language", {"options": {"language": "english please"}}, "INVALID_FIELD"),
    ("negative cap", {"max_credits": -1}, "INVALID_FIELD"),
    ("huge account id", {"account_id": "a" * 300}, "INVALID_FIELD"),
]


class TestBadInput:
    """Bad input gets INVALID_ARGUMENT with a reason, in both RPCs; never INTERNAL."""

    @pytest.mark.parametrize(("name", "kw", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
    async def test_rejected(self, start_server: ServerFactory, name: str, kw: dict[str, object], reason: str) -> None:
        """The request is refused with INVALID_ARGUMENT and the expected reason."""
        from dataclasses import replace  # noqa: PLC0415

        from switchboard.settings import Settings  # noqa: PLC0415

        _, stub = await start_server(limits=replace(Settings().limits, max_prompt_chars=4000))
        base: dict[str, object] = {"account_id": "acct", "modality": TEXT, "prompt": "hello"}
        if "conversation" in kw:
            base.pop("prompt")
        base.update(kw)
        req = router_pb2.GenerateRequest(**base)  # type: ignore[arg-type]
        for call in (
            lambda: stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5),
            lambda: frames(stub, req),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call()
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, name
            assert error_info(err.value).reason == reason

    async def test_generate_needs_attachment_content(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """SelectModel takes a bare MIME type; Generate needs the bytes or a URI."""
        req = gen_request(attachments=[router_pb2.Attachment(mime_type="image/png")])
        await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await frames(stub, req)
        assert error_info(err.value).metadata["field"] == "attachments[0].data"

    async def test_unsupported_attachment(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """A zip file on a text request is FAILED_PRECONDITION UNSUPPORTED_ATTACHMENT_TYPE."""
        req = gen_request(attachments=[router_pb2.Attachment(mime_type="application/zip", data=b"PK")])
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await frames(stub, req)
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(err.value).reason == "UNSUPPORTED_ATTACHMENT_TYPE"

    async def test_garbage_bytes(self, start_server: ServerFactory) -> None:
        """Bytes that do not parse are INVALID_ARGUMENT MALFORMED_MESSAGE, and the server keeps serving."""
        handle, stub = await start_server()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            raw = channel.unary_unary("/switchboard.v1.RouterService/SelectModel")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw(b"\xff\xff\xff\xff", timeout=5)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(err.value).reason == "MALFORMED_MESSAGE"
            stream = channel.unary_stream("/switchboard.v1.RouterService/Generate")
            with pytest.raises(grpc.aio.AioRpcError) as err2:
                async for _ in stream(b"\x0a\xff", timeout=5):
                    pass
            assert error_info(err2.value).reason == "MALFORMED_MESSAGE"
        assert len((await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models) == 28


class BrokenProvider:
    """A provider fake whose call fails with an error no adapter should ever raise."""

    name = "broken"
    simulated = False

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        raise RuntimeError("secret internal detail")
        yield  # pragma: no cover - makes this an async generator

    def supports(self, model: Model) -> bool:
        return True

    async def close(self) -> None:
        return None


class TestUnexpectedErrors:
    """An unexpected exception becomes INTERNAL with the request id and no internals."""

    async def test_internal_hides_details(self, start_server: ServerFactory) -> None:
        """The caller sees INTERNAL and a request id; the log has the traceback."""
        _, stub = await start_server(adapters={"anthropic": BrokenProvider()})
        with capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as err:
            await frames(stub, gen_request(request_id="req-x", pinned_model_id="claude-haiku-4-5"))
        assert err.value.code() is grpc.StatusCode.INTERNAL
        assert "secret" not in (err.value.details() or "")
        info = error_info(err.value)
        assert info.reason == "INTERNAL"
        assert info.metadata["request_id"] == "req-x"
        assert any(e["event"] == "unexpected_error" and e.get("exc_info") for e in logs)


class TestServiceBasics:
    """Health, reflection and one log event per RPC."""

    async def test_health_and_reflection(self, start_server: ServerFactory) -> None:
        """Health says SERVING; reflection lists RouterService."""
        handle, _ = await start_server()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "switchboard.v1.RouterService"):
                resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)

            async def ask() -> reflection_pb2.ServerReflectionRequest:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            names = []
            async for resp in refl.ServerReflectionInfo(ask(), timeout=5):
                names = [s.name for s in resp.list_services_response.service]
            assert "switchboard.v1.RouterService" in names

    async def test_one_log_event_per_rpc(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """Each RPC logs one rpc event with request id, account, model, attempts, status and latency."""
        with capture_logs() as logs:
            await stub.SelectModel(router_pb2.SelectModelRequest(request=gen_request(request_id="r-9")), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.SelectModel(
                    router_pb2.SelectModelRequest(request=gen_request(pinned_model_id="nope")), timeout=5
                )
        rpc = [e for e in logs if e["event"] == "rpc"]
        assert len(rpc) == 2
        assert rpc[0]["request_id"] == "r-9"
        assert rpc[0]["account"] == "acct-1"
        assert rpc[0]["model"] == "gemini-3.1-flash-lite"
        assert rpc[0]["attempts"] == 1
        assert rpc[0]["status"] == "OK"
        assert rpc[0]["latency_ms"] >= 0
        assert rpc[1]["status"] == "NOT_FOUND"
        assert rpc[1]["reason"] == "MODEL_NOT_FOUND"


assert FAST.tokens == 12
