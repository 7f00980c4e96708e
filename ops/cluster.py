"""Three Switchboard replicas behind an L7 gRPC balancer, on loopback: PostgreSQL (the ledger),
Redis (the concurrency limiter), three `switchboard serve` processes and HAProxy running
deploy/haproxy/haproxy.cfg. ghz and a streaming client drive calls through the balancer, and the
run shows, as a table: calls spread over every replica; one concurrency limit for the plan; a
replica drained with SIGTERM loses no stream and no credit; a replica killed -9 is routed around
and its holds come back; a model cooling down on one replica is skipped by all. Exit code 1 when
any of them fails.

    python ops/cluster.py --ghz .tools/bin/ghz            # the full run
    python ops/cluster.py --ghz .tools/bin/ghz --smoke    # about a minute, smaller counts

Everything binds 127.0.0.1; every call has a deadline and every stage a fixed length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from harness import Postgres, Redis, Replica, free_port, in_workdir, port_open, wait_for
from invariants import (
    Check,
    charged_within_hold,
    completed_streams_billed,
    concurrency_within_limit,
    journal_sums_to_balance,
    max_overlap,
    open_hold_ids,
    read_ledger,
)
from load import Load, Record, setup_accounts
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
HOLD_TTL_S = LEASE_S = 5.0
SWEEP_S = 1.0
FREE_LIMIT = 2
AGREE_WITHIN_S = 10.0
"""How long every replica may take to see a model's cool-down (shared health propagates)."""


@dataclass(frozen=True)
class Profile:
    """How big each stage is."""

    select_calls: int
    generate_calls: int
    accounts: int
    warm_s: float
    tail_s: float


SMOKE = Profile(select_calls=300, generate_calls=60, accounts=3, warm_s=1.5, tail_s=3.0)
FULL = Profile(select_calls=3000, generate_calls=600, accounts=8, warm_s=4.0, tail_s=8.0)


def ghz(binary: str, target: str, call: str, data: Mapping[str, object], *args: str) -> dict[str, object]:
    """One ghz run through the balancer; its JSON report."""
    cmd = [binary, "--insecure", "--call", call, "--data", json.dumps(data), "--format", "json"]
    out = subprocess.run(
        [*cmd, "--timeout", "20s", *args, target], check=False, capture_output=True, text=True, timeout=300
    )
    if not out.stdout.strip():
        raise RuntimeError(f"ghz failed: {out.stderr}")
    report: dict[str, object] = json.loads(out.stdout)
    return report


def requests_by_rpc(metrics_port: int) -> dict[str, float]:
    """`switchboard_requests_total` of one replica, summed per RPC."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    totals: dict[str, float] = {}
    for m in re.finditer(r"^switchboard_requests_total\{([^}]*)\} (\S+)$", text, re.M):
        rpc = re.search(r'rpc="([^"]*)"', m.group(1))
        if rpc:
            totals[rpc.group(1)] = totals.get(rpc.group(1), 0.0) + float(m.group(2))
    return totals


class Cluster:
    """PostgreSQL, Redis, three replicas and HAProxy, on loopback."""

    def __init__(self, workdir: Path, profile: Profile) -> None:
        self.workdir = workdir
        self.profile = profile
        self.pg = Postgres(workdir)
        self.redis = Redis()
        self.metrics_ports: dict[str, int] = {}
        self.replicas: list[Replica] = []
        self.lb_port = free_port()
        self.lb = f"127.0.0.1:{self.lb_port}"
        self.haproxy: subprocess.Popen[bytes] | None = None

    def replica(self, name: str) -> Replica:
        self.metrics_ports[name] = free_port()
        args = [
            f"--ledger={self.pg.dsn}",
            f"--limiter={self.redis.url}",
            "--workers=1",
            "--grace=10",
            f"--metrics-listen=127.0.0.1:{self.metrics_ports[name]}",
            f"--hold-ttl={HOLD_TTL_S}",
            f"--lease={LEASE_S}",
            f"--sweep-interval={SWEEP_S}",
            "--sim-ttft-ms=50",
            "--sim-inter-token-ms=40",
            "--sim-tokens=20",
        ]
        return Replica(self.workdir, name, args)

    def start(self) -> None:
        self.pg.start()
        self.redis.start()
        self.replicas = [self.replica(n) for n in ("r1", "r2", "r3")]
        for r in self.replicas:
            r.start()
        env = {
            **os.environ,
            "LISTEN": self.lb,
            "STATS_SOCKET": str(self.workdir / "haproxy.sock"),
            **{f"SB_{i + 1}": r.target for i, r in enumerate(self.replicas)},
        }
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        with (self.workdir / "haproxy.log").open("a") as log:
            self.haproxy = subprocess.Popen([haproxy, "-f", str(HAPROXY_CFG)], env=env, stdout=log, stderr=log)
        wait_for("haproxy", lambda: port_open(self.lb_port), 15, self.haproxy)
        self.wait_all_up()

    def wait_all_up(self) -> None:
        """Until the balancer routes to every replica (its check marks a restarted one up)."""
        wait_for("balancer sees every replica", lambda: len(self.servers_up()) == len(self.replicas), 30)

    def servers_up(self) -> list[str]:
        """The replicas HAProxy has in rotation (from its stats socket)."""
        import socket  # noqa: PLC0415

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.workdir / "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        up = []
        for line in data.decode().splitlines():
            f = line.split(",")
            if len(f) > 17 and f[0] == "switchboard" and f[1].startswith("sb") and f[17].startswith("UP"):
                up.append(f[1])
        return up

    def close(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(timeout=10)
        for r in self.replicas:
            if r.alive():
                r.kill9()
        self.redis.close()
        self.pg.close()

    def counts(self) -> dict[str, float]:
        """Generate plus SelectModel calls each replica has answered."""
        out = {}
        for r in self.replicas:
            by_rpc = requests_by_rpc(self.metrics_ports[r.name]) if r.alive() else {}
            out[r.name] = by_rpc.get("Generate", 0.0) + by_rpc.get("SelectModel", 0.0)
        return out

    async def load(
        self, accounts: list[str], per_account: int, during: Callable[[], Awaitable[float | None]], extra_s: float = 0.0
    ) -> tuple[Record, float | None]:
        """Run a load through the balancer around ``during`` (which returns a time mark, or None)."""
        load = Load([self.lb], accounts, per_account)
        load.start()
        await asyncio.sleep(self.profile.warm_s)
        mark = await during()
        await asyncio.sleep(self.profile.tail_s + extra_s)
        return await load.stop(), mark

    # ------------------------------------------------------------------ stages

    async def spread(self, ghz_bin: str) -> Check:
        before = self.counts()
        select = {"request": {"account_id": "cl-ghz", "modality": "MODALITY_TEXT", "prompt": "Summarise"}}
        gen = {"account_id": "cl-ghz", "modality": "MODALITY_TEXT", "prompt": "Hi"}
        p = self.profile
        call = "switchboard.v1.RouterService/"
        await asyncio.to_thread(
            ghz,
            ghz_bin,
            self.lb,
            call + "SelectModel",
            select,
            "-n",
            str(p.select_calls),
            "-c",
            "12",
            "--connections",
            "2",
        )
        await asyncio.to_thread(
            ghz, ghz_bin, self.lb, call + "Generate", gen, "-n", str(p.generate_calls), "-c", "8", "--connections", "1"
        )
        after = self.counts()
        share = {n: after[n] - before[n] for n in after}
        total = sum(share.values())
        ok = total > 0 and all(v >= total / len(share) / 2 for v in share.values())
        detail = ", ".join(f"{n} {v:.0f}" for n, v in share.items()) + f" of {total:.0f} calls (2 client connections)"
        return Check("calls spread over all replicas", ok, detail)

    async def one_limit(self) -> Check:
        before = self.counts()

        async def nothing() -> None:
            await asyncio.sleep(2.0)

        record, _ = await self.load(["cl-limit"], 6, nothing)
        after = self.counts()
        served = sorted(n for n in after if after[n] > before[n])
        check = concurrency_within_limit(record.calls, record.polls, FREE_LIMIT)
        peak = max_overlap(record.calls)
        refused = sum(c.reason == "CONCURRENCY_LIMIT" for c in record.calls)
        ok = check.ok and peak == FREE_LIMIT and refused > 0 and len(served) == len(self.replicas)
        detail = f"{check.detail}; {refused} refused CONCURRENCY_LIMIT; served by {', '.join(served)}"
        return Check("one concurrency limit for the plan", ok, detail)

    async def ledger_checks(self, record: Record, accounts: list[str]) -> list[Check]:
        views = await read_ledger([r.target for r in self.replicas if r.alive()], accounts)
        return [
            journal_sums_to_balance(views),
            charged_within_hold(views),
            completed_streams_billed(record.calls, views),
        ]

    async def drain(self, accounts: list[str]) -> Check:
        r3 = self.replicas[2]
        exit_code: list[int | None] = []

        async def sigterm() -> None:
            exit_code.append(await asyncio.to_thread(r3.stop))

        record, _ = await self.load(accounts, 3, sigterm)
        lost = [c for c in record.calls if c.decision_at is not None and c.code != "OK"]
        lost_detail = ", ".join(f"{c.request_id}@{c.target} {c.code} {c.reason}".rstrip() for c in lost[:3])
        refused = [
            c for c in record.calls if c.decision_at is None and c.code != "OK" and c.reason != "CONCURRENCY_LIMIT"
        ]
        checks = await self.ledger_checks(record, accounts)
        ok = not lost and exit_code == [0] and all(c.ok for c in checks)
        detail = (
            f"exit {exit_code[0]}; {sum(c.completed for c in record.calls)} streams completed, {len(lost)} lost after "
            f"their decision{' (' + lost_detail + ')' if lost else ''}, {len(refused)} refused before one; "
            + "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
        )
        await asyncio.to_thread(r3.start)
        await asyncio.to_thread(self.wait_all_up)
        return Check("SIGTERM drain: no stream, no credit lost", ok, detail.rstrip("; "))

    async def kill(self, accounts: list[str]) -> Check:
        r3 = self.replicas[2]

        async def kill9() -> float:
            await asyncio.to_thread(r3.kill9)
            return time.monotonic()

        settle = 2.5  # two failed 1 s checks take a dead replica out of rotation
        record, killed_at = await self.load(accounts, 3, kill9, extra_s=settle)
        assert killed_at is not None
        late = [c for c in record.calls if c.start > killed_at + settle and c.reason != "CONCURRENCY_LIMIT"]
        late_failed = [c for c in late if c.code != "OK"]
        window = [c for c in record.calls if killed_at - 1 <= c.start <= killed_at + settle and c.code != "OK"]
        held_back = await self.holds_return(accounts, killed_at, within=HOLD_TTL_S + LEASE_S + 10 * SWEEP_S)
        checks = await self.ledger_checks(record, accounts)
        ok = bool(late) and not late_failed and held_back.ok and all(c.ok for c in checks)
        detail = (
            f"{len(window)} calls failed around the kill, {len(late)} from {settle} s after it, {len(late_failed)} "
            f"of those failed; {held_back.detail}; " + "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.ok)
        )
        await asyncio.to_thread(r3.start)
        await asyncio.to_thread(self.wait_all_up)
        return Check("kill -9: routed around, holds come back", ok, detail.rstrip("; "))

    async def holds_return(self, accounts: list[str], since: float, within: float) -> Check:
        """Wait until no account holds credits or slots (what the dead replica held expires)."""
        deadline = time.monotonic() + within
        target = self.replicas[0].target
        async with grpc.aio.insecure_channel(target) as channel:
            stub = accounts_pb2_grpc.AccountServiceStub(channel)
            while True:
                held = 0
                for a in accounts:
                    acc = (await stub.GetAccount(accounts_pb2.GetAccountRequest(account_id=a), timeout=5)).account
                    held += acc.held_credits + acc.requests_in_flight
                if held == 0:
                    return Check(
                        "holds", True, f"holds and slots all back {time.monotonic() - since:.1f} s after the kill"
                    )
                if time.monotonic() > deadline:
                    views = await read_ledger([target], accounts)
                    open_holds = [rid for v in views for rid in open_hold_ids(v)]
                    detail = f"{held} credits/slots still held after {within:.0f} s (open holds: {open_holds})"
                    return Check("holds", False, detail)
                await asyncio.sleep(0.5)

    async def cooldown(self) -> Check:
        """Replica r3 alone sees the default model fail; does every replica then skip it?"""
        request = router_pb2.GenerateRequest(account_id="cl-cool", modality=catalog_pb2.MODALITY_TEXT, prompt="Hi")
        async with grpc.aio.insecure_channel(self.replicas[0].target) as channel:
            decision = (
                await router_pb2_grpc.RouterServiceStub(channel).SelectModel(
                    router_pb2.SelectModelRequest(request=request), timeout=10
                )
            ).decision
        model = decision.model.id
        r3 = self.replicas[2]
        await asyncio.to_thread(r3.stop)
        await asyncio.to_thread(r3.start, [f"--sim-fail-before={model}"])
        async with grpc.aio.insecure_channel(r3.target) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            for _ in range(4):  # --breaker-failures (3) failures, each followed by a fallback
                async for _frame in stub.Generate(request, timeout=20):
                    pass
        # Shared health may take a moment to reach every replica: poll for up to AGREE_WITHIN_S.
        deadline = time.monotonic() + AGREE_WITHIN_S
        while True:
            states = await self.model_states(model, request)
            agreed = all(h == "MODEL_HEALTH_COOLING_DOWN" and chosen != model for h, chosen in states.values())
            if agreed or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        detail = f"{model} failing on r3; after {AGREE_WITHIN_S:.0f} s " + ", ".join(
            f"{n}: {h}, selects {c}" for n, (h, c) in states.items()
        )
        return Check("a model cooling down is skipped by all", agreed, detail)

    async def model_states(self, model: str, request: router_pb2.GenerateRequest) -> dict[str, tuple[str, str]]:
        """Per replica: the model's health in ListModels, and the model SelectModel picks."""
        states = {}
        for r in self.replicas:
            async with grpc.aio.insecure_channel(r.target) as channel:
                stub = router_pb2_grpc.RouterServiceStub(channel)
                listing = await stub.ListModels(router_pb2.ListModelsRequest(), timeout=10)
                health = next(m.health for m in listing.models if m.model.id == model)
                chosen = (await stub.SelectModel(router_pb2.SelectModelRequest(request=request), timeout=10)).decision
                states[r.name] = (router_pb2.ModelHealth.Name(health), chosen.model.id)
        return states


async def run(profile: Profile, ghz_bin: str, workdir: Path) -> list[Check]:
    cluster = Cluster(workdir, profile)
    accounts = [f"cl-{i}" for i in range(profile.accounts)]
    checks: list[Check] = []
    try:
        await asyncio.to_thread(cluster.start)
        await setup_accounts(cluster.lb, [*accounts, "cl-ghz"], "pro", 1_000_000)
        await setup_accounts(cluster.lb, ["cl-limit", "cl-cool"], "free", 1_000_000)
        stages: list[Callable[[], Awaitable[Check]]] = [
            lambda: cluster.spread(ghz_bin),
            cluster.one_limit,
            lambda: cluster.drain(accounts),
            lambda: cluster.kill(accounts),
            cluster.cooldown,
        ]
        for stage in stages:
            started = time.monotonic()
            check = await stage()
            print(
                f"{'ok  ' if check.ok else 'FAIL'} {check.name} ({time.monotonic() - started:.1f} s): {check.detail}",
                flush=True,
            )
            checks.append(check)
    finally:
        await asyncio.to_thread(cluster.close)
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ghz", required=True, help="the ghz binary")
    parser.add_argument("--smoke", action="store_true", help="smaller counts, about a minute")
    parser.add_argument("--out", default="build/cluster", help="directory for results.json and the logs")
    args = parser.parse_args()
    out = Path(args.out)
    started = time.monotonic()
    checks = in_workdir(
        "sb-cluster-", out, lambda workdir: asyncio.run(run(SMOKE if args.smoke else FULL, args.ghz, workdir))
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nCluster of 3 replicas behind HAProxy ({'smoke' if args.smoke else 'full'}), {stamp}, "
        f"{time.monotonic() - started:.0f} s\n"
    )
    print("| check | result | evidence |\n|---|---|---|")
    for c in checks:
        print(f"| {c.name} | {'PASS' if c.ok else '**FAIL**'} | {c.detail} |")
    (out / "results.json").write_text(
        json.dumps({"date": stamp, "smoke": args.smoke, "checks": [c.__dict__ for c in checks]}, indent=2)
    )
    failed = [c.name for c in checks if not c.ok]
    print(f"\nfailed: {', '.join(failed)}" if failed else "\nall checks held")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
