"""`make loadtest`: ghz against a running server by the documented recipe, one account per worker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
from procs import ServerProcess
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
GHZ = ROOT / ".tools" / "bin" / "ghz"


def loadtest(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert GHZ.exists(), "ghz is missing: `make .tools/bin/ghz` (make test installs it)"
    return subprocess.run(
        ["make", "-s", "loadtest", f"TARGET={target}", f"LOADTEST_ARGS={' '.join(args)}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def quiet_server(tmp: Path, *args: str) -> ServerProcess:
    return ServerProcess(
        tmp,
        "load",
        "--workers",
        "1",
        "--ledger",
        f"sqlite:{tmp / 'ledger.db'}",
        "--sim-ttft-ms",
        "5",
        "--sim-inter-token-ms",
        "1",
        "--sim-tokens",
        "8",
        "--log-level",
        "warning",
        *args,
    )


class TestLoadTest:
    """Every call of a load on free-plan accounts succeeds, because each ghz worker has its own account."""

    def test_generate_with_accounts_created_at_first_use(self, tmp_path: Path) -> None:
        """200 Generate calls, 16 at a time, on free-plan accounts (2 slots each): all OK."""
        server = quiet_server(tmp_path, "--auto-create-accounts")
        try:
            out = loadtest(server.target, "--json")
        finally:
            server.stop()
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout)
        assert report["count"] == 200
        assert report["statusCodeDistribution"] == {"OK": 200}

    def test_create_accounts_first(self, tmp_path: Path) -> None:
        """--create-accounts makes every worker's account on the plan, so a server that creates no
        accounts itself serves the whole load, and the accounts are the ones ghz used."""
        server = quiet_server(tmp_path)
        try:
            out = loadtest(server.target, "--create-accounts", "pro", "--rpc", "select", "-n", "300", "-c", "8")
            with grpc.insecure_channel(server.target) as channel:
                stub = accounts_pb2_grpc.AccountServiceStub(channel)
                plans = {
                    stub.GetAccount(accounts_pb2.GetAccountRequest(account_id=f"load-g{i}c{i % 4}")).account.plan_id
                    for i in range(8)
                }
        finally:
            server.stop()
        assert out.returncode == 0, out.stdout + out.stderr
        assert "statuses: OK 300" in out.stdout
        assert plans == {"pro"}

    def test_errors_fail_the_run(self, tmp_path: Path) -> None:
        """A load whose calls fail (no such accounts) exits non-zero and shows the reason."""
        server = quiet_server(tmp_path)
        try:
            out = loadtest(server.target, "-n", "20", "-c", "2")
        finally:
            server.stop()
        assert out.returncode != 0
        assert "NotFound 20" in out.stdout, out.stdout
