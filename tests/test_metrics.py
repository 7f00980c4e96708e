"""Prometheus metrics over their own HTTP port, fed by real calls over a real channel."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import FAST, ServerFactory, eventually
from procs import ServerProcess
from prometheus_client.parser import text_string_to_metric_families
from servers import free_port
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

REQ = router_pb2.GenerateRequest(account_id="acct-1", modality=catalog_pb2.MODALITY_TEXT, prompt="count me")


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by name and sorted labels."""

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    text = await asyncio.to_thread(get)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestMetrics:
    """Requests, latencies, fallbacks, credits and streams in flight are exported."""

    async def test_off_by_default(self, start_server: ServerFactory) -> None:
        """Without --metrics-listen no HTTP port is opened."""
        handle, _ = await start_server()
        assert handle.metrics_port is None

    async def test_counts_and_histograms(self, start_server: ServerFactory) -> None:
        """A fallback, a completed stream, a refused request and selections all show up."""
        sim = replace(FAST, fail_before_first=frozenset({"gemini-3.1-flash-lite"}))
        handle, stub = await start_server(metrics_listen="127.0.0.1:0", simulation=sim)
        assert handle.metrics_port
        frames = [f async for f in stub.Generate(REQ, timeout=10)]
        completion = frames[-1].completion
        served = completion.model_id
        deltas = sum(1 for f in frames if f.WhichOneof("event") == "delta")
        for _ in range(3):
            await stub.SelectModel(router_pb2.SelectModelRequest(request=REQ), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.SelectModel(router_pb2.SelectModelRequest(), timeout=5)
        m = await scrape(handle.metrics_port)
        assert m[("switchboard_requests_total", (("code", "OK"), ("model", served), ("rpc", "Generate")))] == 1
        assert (
            m[
                (
                    "switchboard_requests_total",
                    (("code", "OK"), ("model", "gemini-3.1-flash-lite"), ("rpc", "SelectModel")),
                )
            ]
            == 3
        )
        assert (
            m[("switchboard_requests_total", (("code", "INVALID_ARGUMENT"), ("model", ""), ("rpc", "SelectModel")))]
            == 1
        )
        assert m[("switchboard_rpc_latency_seconds_count", (("rpc", "SelectModel"),))] == 4
        assert m[("switchboard_generate_time_to_first_token_seconds_count", (("model", served),))] == 1
        assert m[("switchboard_generate_inter_token_seconds_count", (("model", served),))] == deltas - 1
        fallback = (("from_model", "gemini-3.1-flash-lite"), ("reason", "PROVIDER_FAILED"), ("to_model", served))
        assert m[("switchboard_fallbacks_total", fallback)] == 1
        assert m[("switchboard_credits_charged_total", (("model", served),))] == completion.credits_charged > 0
        assert m[("switchboard_streams_in_flight", ())] == 0
        assert m[("switchboard_model_cooling_down", (("model", served),))] == 0

    async def test_streams_in_flight(self, start_server: ServerFactory) -> None:
        """The gauge counts a running stream and drops when it ends."""
        slow = replace(FAST, inter_token_s=0.05, tokens=40)
        handle, stub = await start_server(metrics_listen="127.0.0.1:0", simulation=slow)
        call = stub.Generate(REQ, timeout=20)
        await call.read()
        assert (await scrape(handle.metrics_port))[("switchboard_streams_in_flight", ())] == 1
        call.cancel()
        await asyncio.sleep(0.2)
        m = await scrape(handle.metrics_port)
        assert m[("switchboard_streams_in_flight", ())] == 0
        assert (
            m[
                (
                    "switchboard_requests_total",
                    (("code", "CANCELLED"), ("model", "gemini-3.1-flash-lite"), ("rpc", "Generate")),
                )
            ]
            == 1
        )

    async def test_refused_calls_counted(self, start_server: ServerFactory, tmp_path: Path) -> None:
        """Calls refused for a missing key count under UNAUTHENTICATED."""
        from test_auth import CALLER, config_with_keys  # noqa: PLC0415

        handle, stub = await start_server(
            metrics_listen="127.0.0.1:0", config_path=config_with_keys(tmp_path, ("svc", CALLER, "caller"))
        )
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
        m = await scrape(handle.metrics_port)
        assert (
            m[("switchboard_requests_total", (("code", "UNAUTHENTICATED"), ("model", ""), ("rpc", "ListModels")))] == 2
        )


ROUTER = "switchboard.v1.RouterService"


def grpc_labels(method: str, kind: str = "unary") -> tuple[tuple[str, str], ...]:
    return (("grpc_method", method), ("grpc_service", ROUTER), ("grpc_type", kind))


def handled(method: str, code: str, kind: str = "unary") -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("grpc_server_handled_total", tuple(sorted((*grpc_labels(method, kind), ("grpc_code", code)))))


class TestGrpcServerMetrics:
    """The standard gRPC server metrics (go-grpc-prometheus names and labels) sit beside ours."""

    async def test_started_handled_and_handling_time(self, start_server: ServerFactory) -> None:
        """Unary and streaming calls, successful and refused, are counted by service, method, type and code."""
        handle, stub = await start_server(metrics_listen="127.0.0.1:0")
        assert handle.metrics_port
        for _ in range(3):
            await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)
        [f async for f in stub.Generate(REQ, timeout=10)]
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.SelectModel(router_pb2.SelectModelRequest(), timeout=5)
        m = await scrape(handle.metrics_port)
        assert m[("grpc_server_started_total", grpc_labels("ListModels"))] == 3
        assert m[handled("ListModels", "OK")] == 3
        assert m[("grpc_server_handling_seconds_count", grpc_labels("ListModels"))] == 3
        assert m[("grpc_server_started_total", grpc_labels("Generate", "server_stream"))] == 1
        assert m[handled("Generate", "OK", "server_stream")] == 1
        assert m[("grpc_server_handling_seconds_count", grpc_labels("Generate", "server_stream"))] == 1
        assert m[handled("SelectModel", "InvalidArgument")] == 1
        assert m[("switchboard_worker_processes", ())] == 1

    def test_code_labels(self) -> None:
        """Codes are spelled as go-grpc-prometheus spells them, so existing dashboards match."""
        from switchboard.metrics import grpc_code_label  # noqa: PLC0415

        got = [grpc_code_label(c.name) for c in grpc.StatusCode]
        assert got[:5] == ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded"]
        assert "ResourceExhausted" in got
        assert "Unauthenticated" in got


FAILING = "gpt-5.4-nano"


class TestWorkers:
    """`serve --workers 2` has one /metrics for both workers."""

    async def test_one_endpoint_sums_the_workers(self, tmp_path: Path) -> None:
        """Calls spread over two workers (a connection each) are all counted on the one endpoint."""
        metrics_port = free_port()
        server = ServerProcess(
            tmp_path,
            "workers",
            "--workers",
            "2",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
            "--ledger",
            f"sqlite:{tmp_path / 'l.db'}",
            "--auto-create-accounts",
            "--sim-ttft-ms",
            "0",
            "--sim-fail-before",
            FAILING,
        )
        try:
            calls = 40
            for _ in range(calls):  # a new connection each: the kernel spreads them over the workers
                async with grpc.aio.insecure_channel(server.target) as channel:
                    await router_pb2_grpc.RouterServiceStub(channel).ListModels(
                        router_pb2.ListModelsRequest(), timeout=10
                    )
            async with grpc.aio.insecure_channel(server.target) as channel:
                frames = [f async for f in router_pb2_grpc.RouterServiceStub(channel).Generate(REQ, timeout=20)]
            served = frames[-1].completion.model_id
            m = await scrape(metrics_port)
            assert m[("switchboard_worker_processes", ())] == 2
            assert m[("grpc_server_started_total", grpc_labels("ListModels"))] == calls
            assert m[handled("ListModels", "OK")] == calls
            assert m[("grpc_server_handling_seconds_count", grpc_labels("ListModels"))] == calls
            assert m[("switchboard_requests_total", (("code", "OK"), ("model", ""), ("rpc", "ListModels")))] == calls
            assert m[handled("Generate", "OK", "server_stream")] == 1
            assert m[("switchboard_streams_in_flight", ())] == 0
            assert m[("switchboard_model_cooling_down", (("model", served),))] == 0
            assert m[("switchboard_model_cooling_down", (("model", FAILING),))] == 0
            for i in range(3):  # a connection each: the failures land on either worker and add up
                async with grpc.aio.insecure_channel(server.target) as channel:
                    pinned = router_pb2.GenerateRequest(
                        account_id="acct-1", modality=catalog_pb2.MODALITY_TEXT, prompt="x", pinned_model_id=FAILING
                    )
                    pinned.request_id = f"fail-{i}"
                    with pytest.raises(grpc.aio.AioRpcError):
                        [f async for f in router_pb2_grpc.RouterServiceStub(channel).Generate(pinned, timeout=20)]

            async def cooling_on_the_endpoint() -> bool:
                return (await scrape(metrics_port))[("switchboard_model_cooling_down", (("model", FAILING),))] == 1

            await eventually(cooling_on_the_endpoint, within=10)
        finally:
            output = server.stop()
        events = [json.loads(line).get("event") for line in output.splitlines() if line.startswith("{")]
        assert events.count("serving") == 2
