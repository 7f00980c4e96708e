"""OpenTelemetry tracing against a real OTLP/HTTP receiver on loopback: the server exports its
spans as OTLP protobuf (POST /v1/traces), continues the caller's W3C trace, and puts each
provider attempt under the RPC's span."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator

import grpc
import pytest
from aiohttp import web
from conftest import ServerFactory, wait_until
from fakes import FakeProvider
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from switchboard.providers.gemini import GeminiProvider
from switchboard.providers.http import Endpoint
from switchboard.providers.simulated import SimulationProfile
from switchboard.v1 import catalog_pb2, router_pb2


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes every export request and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.services: set[str] = set()
        self.content_types: set[str] = set()
        self._runner: web.AppRunner | None = None

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.content_types.add(request.headers.get("Content-Type", ""))
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    self.services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/traces", self.traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def attributes(span: Span) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value") or "string_value")
    return out


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    await r.stop()


async def test_generate_continues_the_callers_trace(start_server: ServerFactory, receiver: OtlpReceiver) -> None:
    """A Generate carrying `traceparent` is a SERVER span in the caller's trace, with the model,
    account and credits; its provider attempt is a CLIENT span under it."""
    endpoint = await receiver.start()
    handle, stub = await start_server(otlp_endpoint=endpoint)
    trace_id, parent_id = os.urandom(16), os.urandom(8)
    traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
    req = router_pb2.GenerateRequest(account_id="traced", modality=catalog_pb2.MODALITY_TEXT, prompt="hello")
    frames = [f async for f in stub.Generate(req, timeout=10, metadata=(("traceparent", traceparent),))]
    model_id = frames[-1].completion.model_id
    with pytest.raises(grpc.aio.AioRpcError):
        pinned = router_pb2.GenerateRequest(account_id="traced", modality=1, prompt="x", pinned_model_id="nope")
        await stub.SelectModel(router_pb2.SelectModelRequest(request=pinned), timeout=10)
    assert handle.app.tracing is not None
    assert await asyncio.to_thread(handle.app.tracing.flush)  # it posts to the receiver on this loop
    await wait_until(lambda: len(receiver.spans) >= 3, within=10)

    assert receiver.services == {"switchboard"}
    assert receiver.content_types == {"application/x-protobuf"}
    (server,) = receiver.named("switchboard.v1.RouterService/Generate")
    assert server.kind == Span.SPAN_KIND_SERVER
    assert (server.trace_id, server.parent_span_id) == (trace_id, parent_id)
    attrs = attributes(server)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["rpc.method"] == "Generate"
    assert attrs["rpc.grpc.status_code"] == 0
    assert attrs["switchboard.model"] == model_id
    assert attrs["switchboard.account"] == "traced"
    assert attrs["switchboard.credits"] == frames[-1].completion.credits_charged
    assert server.status.code != Status.STATUS_CODE_ERROR

    (attempt,) = receiver.named(f"provider {model_id}")
    assert attempt.kind == Span.SPAN_KIND_CLIENT
    assert (attempt.trace_id, attempt.parent_span_id) == (trace_id, server.span_id)
    assert attributes(attempt)["switchboard.attempt"] == 1
    assert attributes(attempt)["switchboard.simulated"] is True
    assert [e.name for e in attempt.events] == ["first_output"]
    assert server.start_time_unix_nano <= attempt.start_time_unix_nano
    assert attempt.end_time_unix_nano <= server.end_time_unix_nano

    (refused,) = receiver.named("switchboard.v1.RouterService/SelectModel")
    assert refused.trace_id != trace_id  # no traceparent: a trace of its own
    assert refused.parent_span_id == b""
    assert refused.status.code == Status.STATUS_CODE_ERROR
    assert refused.status.message == "MODEL_NOT_FOUND"
    assert attributes(refused)["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_tracing_is_off_without_an_endpoint(start_server: ServerFactory) -> None:
    """Without --otlp-endpoint nothing is set up and calls are not traced."""
    handle, stub = await start_server()
    assert handle.app.tracing is None
    reply = await stub.ListModels(router_pb2.ListModelsRequest(), timeout=10)
    assert reply.models


async def test_http_provider_receives_the_attempts_trace_context(
    start_server: ServerFactory, receiver: OtlpReceiver
) -> None:
    """A real HTTP adapter sends `traceparent` naming the provider attempt's span."""
    endpoint = await receiver.start()
    fake = FakeProvider("gemini")
    base = await fake.start()
    try:
        adapter = GeminiProvider("gemini", Endpoint(base, "k-secret", 2.0, 2.0))
        handle, stub = await start_server(adapters={"gemini": adapter}, otlp_endpoint=endpoint)
        trace_id = os.urandom(16)
        req = router_pb2.GenerateRequest(
            account_id="traced", modality=1, prompt="hi", pinned_model_id="gemini-3.1-flash-lite"
        )
        metadata = (("traceparent", f"00-{trace_id.hex()}-{os.urandom(8).hex()}-01"),)
        frames = [f async for f in stub.Generate(req, timeout=10, metadata=metadata)]
        assert frames[-1].completion.model_id == "gemini-3.1-flash-lite"
        assert handle.app.tracing is not None
        assert await asyncio.to_thread(handle.app.tracing.flush)
        await wait_until(lambda: bool(receiver.named("provider gemini-3.1-flash-lite")), within=10)
        (attempt,) = receiver.named("provider gemini-3.1-flash-lite")
        assert attributes(attempt)["switchboard.simulated"] is False
        sent = {k.lower(): v for k, v in fake.requests[-1][1].items()}
        assert sent["traceparent"] == f"00-{trace_id.hex()}-{attempt.span_id.hex()}-01"
    finally:
        await fake.stop()


async def test_cancelled_stream_ends_its_spans(
    start_server: ServerFactory, receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream cancelled mid-way closes its provider call and still exports both spans, the RPC's
    marked CANCELLED, with no trace-context error on the way."""
    endpoint = await receiver.start()
    slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.05, tokens=200)
    handle, stub = await start_server(otlp_endpoint=endpoint, simulation=slow)
    req = router_pb2.GenerateRequest(account_id="traced", modality=1, prompt="a long story")
    call = stub.Generate(req, timeout=10)
    for _ in range(3):
        await call.read()
    call.cancel()
    sim = handle.app.simulator
    await wait_until(lambda: sim.active_streams == 0)
    assert handle.app.tracing is not None
    await asyncio.to_thread(handle.app.tracing.flush)
    await wait_until(lambda: len(receiver.spans) >= 2, within=10)
    (server,) = receiver.named("switchboard.v1.RouterService/Generate")
    assert attributes(server)["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    (attempt,) = [s for s in receiver.spans if s.name.startswith("provider ")]
    assert attempt.parent_span_id == server.span_id
    assert attempt.end_time_unix_nano <= server.end_time_unix_nano
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelname == "ERROR"]
