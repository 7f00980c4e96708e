"""The event loop a server runs: uvloop by default (asyncio's own as the fallback), and the whole
server works on either: calls, streams, the per-call log lines and a graceful stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from procs import ServerProcess
from switchboard.server import run_loop
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc


def loop_module(event_loop: str) -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main(), event_loop)
    return seen[0]


class TestChoice:
    """--event-loop picks the loop; auto prefers uvloop."""

    def test_auto_runs_uvloop(self) -> None:
        """With uvloop installed (a dependency), auto runs uvloop's loop."""
        assert loop_module("auto").startswith("uvloop")

    def test_asyncio_runs_asyncio(self) -> None:
        """asyncio runs the standard library's loop."""
        assert loop_module("asyncio").startswith("asyncio")


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_server_serves_streams_and_logs_on_either_loop(tmp_path: Path, event_loop: str) -> None:
    """SelectModel and a streamed Generate succeed, and after SIGTERM the log holds one rpc line
    per call (written before exit) and the stop event."""
    server = ServerProcess(
        tmp_path,
        "sb",
        "--workers",
        "1",
        "--event-loop",
        event_loop,
        "--auto-create-accounts",
        "--ledger",
        f"sqlite:{tmp_path / 'l.db'}",
        "--sim-ttft-ms",
        "0",
        "--sim-inter-token-ms",
        "0",
        "--sim-tokens",
        "5",
    )
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            req = router_pb2.GenerateRequest(account_id="a1", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")
            stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=10)
            frames = list(stub.Generate(req, timeout=10))
        assert frames[-1].WhichOneof("event") == "completion"
        assert sum(f.WhichOneof("event") == "delta" for f in frames) == 5
    finally:
        out = server.stop()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rpcs = [e for e in events if e["event"] == "rpc"]
    assert sorted(e["rpc"] for e in rpcs) == ["Generate", "SelectModel"]
    assert all(e["status"] == "OK" for e in rpcs)
    assert events[-1]["event"] == "stopped"
