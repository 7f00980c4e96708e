"""Signals to a `switchboard serve` process: SIGHUP reloads the config (catalog, prices, keys)
without dropping streams and refuses a bad one; SIGTERM cancels a stream that outlives the grace."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from switchboard import auth
from switchboard.catalog import default_config_text
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc
from test_cli import Server

OLD_KEY, NEW_KEY = auth.new_key(), auth.new_key()
REQ = router_pb2.GenerateRequest(account_id="acct-1", modality=catalog_pb2.MODALITY_TEXT, prompt="reload me")
LITE_PRICE = "{modality: MODALITY_TEXT, tier: TIER_LITE, price: {creditsPerRequest: 1}}"


def write_config(path: Path, key: str, lite_price: int) -> None:
    text = default_config_text().replace(LITE_PRICE, LITE_PRICE.replace(": 1}", f": {lite_price}}}"))
    entry = f"  - {{name: svc, sha256: {auth.digest(key)}, role: API_KEY_ROLE_CALLER}}\n"
    path.write_text(text + "\napi_keys:\n" + entry, encoding="utf-8")


def md(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def estimate(stub: router_pb2_grpc.RouterServiceStub, key: str) -> int:
    resp = stub.SelectModel(router_pb2.SelectModelRequest(request=REQ), metadata=md(key), timeout=5)
    return int(resp.decision.estimated_credits)


def wait_for(predicate: object, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def accepts(stub: router_pb2_grpc.RouterServiceStub, key: str) -> bool:
    try:
        estimate(stub, key)
    except grpc.RpcError as exc:
        if exc.code() is not grpc.StatusCode.UNAUTHENTICATED:  # type: ignore[attr-defined]
            raise
        return False
    return True


def events(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


class TestReload:
    """SIGHUP swaps in a new config for new calls; streams in flight finish on the old one."""

    def test_reload_keys_and_prices(self, tmp_path: Path) -> None:
        """New key and price apply after SIGHUP (the supervisor passes it to both workers), the old key
        is refused, a running stream completes, and a bad config is refused with a log line while the
        running one stays."""
        cfg = tmp_path / "switchboard.yaml"
        write_config(cfg, OLD_KEY, lite_price=1)
        s = Server(
            tmp_path,
            "--workers",
            "2",
            "--config",
            str(cfg),
            "--sim-ttft-ms",
            "0",
            "--sim-inter-token-ms",
            "20",
            "--sim-tokens",
            "60",
        )
        channel = grpc.insecure_channel(s.target)
        stub = router_pb2_grpc.RouterServiceStub(channel)
        try:
            assert estimate(stub, OLD_KEY) == 1
            stream = stub.Generate(REQ, metadata=md(OLD_KEY), timeout=30)
            assert next(stream).decision.estimated_credits == 1

            write_config(cfg, NEW_KEY, lite_price=7)
            os.kill(s.proc.pid, signal.SIGHUP)
            wait_for(lambda: accepts(stub, NEW_KEY))
            assert estimate(stub, NEW_KEY) == 7
            assert not accepts(stub, OLD_KEY)
            rest = [f.WhichOneof("event") for f in stream]
            assert rest[-1] == "completion"
            assert rest.count("delta") == 60

            cfg.write_text(default_config_text() + "\nbogus_field: 1\n", encoding="utf-8")
            os.kill(s.proc.pid, signal.SIGHUP)
            time.sleep(0.5)
            assert estimate(stub, NEW_KEY) == 7
        finally:
            channel.close()
            out = s.stop()
        logs = events(out)
        reloaded = [e for e in logs if e["event"] == "reloaded"]
        refused = [e for e in logs if e["event"] == "reload_refused"]
        assert len(reloaded) == 2  # one per worker
        assert reloaded[0]["api_keys"] == 1
        assert len(refused) == 2
        assert "bogus_field" in str(refused[0]["reason"])
        assert str(cfg) in str(refused[0]["reason"])


class TestTerminate:
    """SIGTERM: a stream longer than the grace period is cancelled at its end."""

    def test_long_stream_cancelled(self, tmp_path: Path) -> None:
        """The stream ends with an error about a second after SIGTERM, and the process exits 0."""
        s = Server(
            tmp_path,
            "--workers",
            "1",
            "--sim-ttft-ms",
            "0",
            "--sim-inter-token-ms",
            "50",
            "--sim-tokens",
            "2000",
            "--grace",
            "1",
        )
        channel = grpc.insecure_channel(s.target)
        stream = router_pb2_grpc.RouterServiceStub(channel).Generate(REQ, timeout=60)
        assert next(stream).WhichOneof("event") == "decision"
        sent = time.monotonic()
        os.kill(s.proc.pid, signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as err:
            for _ in stream:
                pass
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)  # type: ignore[attr-defined]
        assert 0.9 <= time.monotonic() - sent < 10
        assert s.proc.wait(timeout=30) == 0
        channel.close()
        logs = events(s.stop())
        assert [e["event"] for e in logs if e["event"] in ("shutting_down", "stopped")] == ["shutting_down", "stopped"]
