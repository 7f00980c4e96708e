"""Load-test a running Switchboard with ghz (``make loadtest TARGET=HOST:PORT``).

Every ghz worker sends as its own account (``load-<worker id>``), so the plan's concurrency limit
applies per worker and not to the whole run: one account on the free plan has two slots, and a
load of 16 concurrent calls on one account would be refused with ``CONCURRENCY_LIMIT``. The
accounts must exist: serve with ``--auto-create-accounts``, or pass ``--create-accounts PLAN``
(which needs an admin key when the server has API keys) to create them before the run.

    python bench/loadtest.py --ghz .tools/bin/ghz --target 127.0.0.1:50051
    python bench/loadtest.py --ghz .tools/bin/ghz --target HOST:PORT --rpc select -n 2000 -c 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

CALLS = {
    "generate": "switchboard.v1.RouterService/Generate",
    "select": "switchboard.v1.RouterService/SelectModel",
}


def request_data(rpc: str, prefix: str, prompt: str) -> dict[str, Any]:
    """The ghz request template: one account per ghz worker, a fresh request id per call."""
    request = {
        "account_id": prefix + "{{.WorkerID}}",
        "request_id": "{{.UUID}}",
        "modality": "MODALITY_TEXT",
        "prompt": prompt,
    }
    return request if rpc == "generate" else {"request": request}


def create_accounts(args: argparse.Namespace) -> None:
    """Create every ghz worker's account on ``--create-accounts``'s plan (an existing account is
    left as it is). ghz names its workers ``g<worker>c<connection>``: worker *i* of a constant
    load uses connection *i* modulo the number of connections."""
    import grpc  # noqa: PLC0415 - only this option needs the Python gRPC stack
    from switchboard.v1 import accounts_pb2, accounts_pb2_grpc  # noqa: PLC0415

    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else None
    with grpc.insecure_channel(args.target) as channel:
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        for i in range(args.concurrency):
            account = f"{args.prefix}{worker_id(i, args.connections)}"
            request = accounts_pb2.CreateAccountRequest(account_id=account, plan_id=args.create_accounts)
            try:
                stub.CreateAccount(request, metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise SystemExit(f"creating account {account}: {exc.code().name}: {exc.details()}") from exc


def worker_id(i: int, connections: int) -> str:
    """ghz's ``{{.WorkerID}}`` of its worker ``i`` under a constant concurrency."""
    return f"g{i}c{i % connections}"


def run_ghz(args: argparse.Namespace) -> dict[str, Any]:
    data = request_data(args.rpc, args.prefix, args.prompt)
    cmd = [
        args.ghz,
        "--insecure",
        "--call",
        CALLS[args.rpc],
        "--data",
        json.dumps(data),
        "--format",
        "json",
        "--timeout",
        args.timeout,
        "-n",
        str(args.requests),
        "-c",
        str(args.concurrency),
        "--connections",
        str(args.connections),
    ]
    if args.api_key:
        cmd += ["--metadata", json.dumps({"authorization": f"Bearer {args.api_key}"})]
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run([*cmd, args.target], stdout=out, stderr=subprocess.PIPE, text=True, check=False)
        out.seek(0)
        text = out.read()
    if not text.strip():
        raise SystemExit(f"ghz failed: {done.stderr.strip()}")
    report: dict[str, Any] = json.loads(text)
    return report


def summary(report: dict[str, Any]) -> tuple[str, int]:
    """A few lines for a person, and the number of calls that did not end OK."""
    codes: dict[str, int] = report.get("statusCodeDistribution") or {}
    errors = sum(n for code, n in codes.items() if code != "OK")
    ms = {p["percentage"]: p["latency"] / 1e6 for p in report.get("latencyDistribution") or []}
    lines = [
        f"calls:    {report['count']} in {report['total'] / 1e9:.2f} s ({report['rps']:.0f} rps)",
        "latency:  " + ", ".join(f"p{k} {ms[k]:.1f} ms" for k in (50, 90, 99) if k in ms),
        "statuses: " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items())),
    ]
    for message, n in sorted((report.get("errorDistribution") or {}).items(), key=lambda kv: -kv[1])[:5]:
        lines.append(f"  {n} x {message}")
    return "\n".join(lines), errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ghz", default=".tools/bin/ghz", help="the ghz binary (make installs a pinned one)")
    parser.add_argument("--target", required=True, help="HOST:PORT of a running Switchboard")
    parser.add_argument("--rpc", choices=sorted(CALLS), default="generate")
    parser.add_argument("-n", "--requests", type=int, default=200, help="calls in all (default 200)")
    parser.add_argument("-c", "--concurrency", type=int, default=16, help="ghz workers, one account each (16)")
    parser.add_argument("--connections", type=int, help="connections ghz opens (default: 4, at most -c)")
    parser.add_argument("--timeout", default="30s", help="per call (ghz duration, default 30s)")
    parser.add_argument("--prompt", default="Tell me a story")
    parser.add_argument("--prefix", default="load-", help="account id prefix; the ghz worker id follows")
    parser.add_argument("--create-accounts", metavar="PLAN", help="create the accounts on PLAN first")
    parser.add_argument("--api-key", default=os.environ.get("SWITCHBOARD_API_KEY"), help="sent as a Bearer token")
    parser.add_argument("--json", action="store_true", help="print ghz's whole JSON report instead")
    args = parser.parse_args()
    args.connections = min(args.connections or 4, args.concurrency)
    if args.create_accounts:
        create_accounts(args)
    report = run_ghz(args)
    text, errors = summary(report)
    print(json.dumps(report) if args.json else f"{CALLS[args.rpc]} against {args.target}\n{text}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
