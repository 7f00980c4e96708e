"""The ``switchboard`` command as a person runs it: serve, models, select, generate, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from procs import BIN, ServerProcess
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc


class Server(ServerProcess):
    """A server for the CLI to talk to, with its own ledger and accounts created at first use."""

    def __init__(self, tmp: Path, *args: str) -> None:
        super().__init__(
            tmp, "cli", "--grace", "5", "--ledger", f"sqlite:{tmp / 'ledger.db'}", "--auto-create-accounts", *args
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), *args, "--target", self.target], capture_output=True, text=True, timeout=30, check=False
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, "--sim-ttft-ms", "0", "--sim-inter-token-ms", "0")
    yield s
    s.stop()


class TestCommands:
    """models, select and generate talk to a running server."""

    def test_models(self, server: Server) -> None:
        """models lists all 28, one line each, marked simulated."""
        out = server.cli("models")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 28
        assert lines[0].split()[0] == "gemini-3.1-flash-lite"
        assert all("simulated" in line for line in lines)

    def test_select_json(self, server: Server) -> None:
        """select --json prints the decision."""
        out = server.cli("select", "--json", "--modality", "video", "--capability", "multi_shot", "A cat")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["model"]["id"] == "fal-ai/kling-video/v3/standard"

    def test_generate_streams(self, server: Server) -> None:
        """generate prints the streamed text and a summary."""
        out = server.cli("generate", "Write a haiku")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("[simulated gemini-3.1-flash-lite] re: Write a haiku")
        assert "# done: stop" in out.stderr

    def test_error_reason(self, server: Server) -> None:
        """An error prints its code, reason and metadata and exits 1."""
        out = server.cli("select", "--pin", "gpt-9")
        assert out.returncode == 1
        assert "NOT_FOUND" in out.stderr
        assert "reason: MODEL_NOT_FOUND" in out.stderr


class TestWorkers:
    """Several worker processes share one port and one concurrency limit."""

    def test_two_workers(self, tmp_path: Path) -> None:
        """Two workers serve; four channels see one limit of two streams (the free plan)."""
        s = Server(tmp_path, "--workers", "2", "--sim-inter-token-ms", "20", "--sim-tokens", "200")
        try:
            channels = [grpc.insecure_channel(s.target) for _ in range(4)]
            stubs = [router_pb2_grpc.RouterServiceStub(c) for c in channels]

            def req(i: int) -> router_pb2.GenerateRequest:
                return router_pb2.GenerateRequest(
                    account_id="w", request_id=f"r{i}", modality=catalog_pb2.MODALITY_TEXT, prompt="hi"
                )

            streams = [stubs[i].Generate(req(i), timeout=30) for i in range(2)]
            for st in streams:
                assert next(st).WhichOneof("event") == "decision"
            for i in (2, 3):
                with pytest.raises(grpc.RpcError) as err:
                    next(stubs[i].Generate(req(i), timeout=30))
                assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            for st in streams:
                st.cancel()
            for c in channels:
                c.close()
        finally:
            out = s.stop()
        pids = {json.loads(line)["pid"] for line in out.splitlines() if '"serving"' in line}
        assert len(pids) == 2
        assert s.proc.returncode == 0


class TestServeProcess:
    """The server process: bad config, simulated report, graceful SIGTERM."""

    def test_bad_config_stops_start_up(self, tmp_path: Path) -> None:
        """A bad config exits 2 with a message naming the file and field."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("models: []\nplans: []\nbogus: 1\n")
        out = subprocess.run(
            [str(BIN), "serve", "--listen", "127.0.0.1:0", "--config", str(bad)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 2
        assert str(bad) in out.stderr
        assert "bogus" in out.stderr

    def test_sigterm_lets_streams_finish(self, tmp_path: Path) -> None:
        """On SIGTERM health turns NOT_SERVING, a running stream completes, and the process exits 0."""
        s = Server(tmp_path, "--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "50")
        channel = grpc.insecure_channel(s.target)
        stub = router_pb2_grpc.RouterServiceStub(channel)
        req = router_pb2.GenerateRequest(account_id="a", modality=catalog_pb2.MODALITY_TEXT, prompt="long one")
        stream = stub.Generate(req, timeout=30)
        first = next(stream)
        assert first.WhichOneof("event") == "decision"
        os.kill(s.proc.pid, signal.SIGTERM)
        rest = [f.WhichOneof("event") for f in stream]
        assert rest[-1] == "completion"
        assert rest.count("delta") == 50
        assert s.proc.wait(timeout=30) == 0
        logs = [json.loads(line) for line in s.stop().splitlines() if line.startswith("{")]
        events = [e["event"] for e in logs]
        assert "simulated_provider" in events
        assert events.index("shutting_down") < events.index("stopped")
        channel.close()
