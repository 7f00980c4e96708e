"""Switchboard's chaos suite: two replicas (`switchboard serve --workers 2`) on one throwaway
PostgreSQL ledger and one Redis limiter, under a bounded Generate load, and in turn: kill -9 of a
replica, kill -9 of one worker, SIGSTOP past the hold ttl and the lease then SIGCONT, a Redis
restart, a PostgreSQL restart, and provider faults. After each, the invariants are checked on the
calls the load recorded and on the ledger, and printed as a table; the exit code is 1 when any
invariant failed.

    python ops/chaos.py            # the full run (a few minutes)
    python ops/chaos.py --smoke    # about a minute: every fault once, with a smaller load

Everything binds 127.0.0.1; every call has a deadline and every phase a fixed length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from harness import Postgres, Redis, Replica, in_workdir
from invariants import (
    Check,
    charged_within_hold,
    completed_streams_billed,
    concurrency_within_limit,
    journal_sums_to_balance,
    no_hung_call,
    read_ledger,
    zero_internal,
)
from load import Call, Load, setup_accounts
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

PLAN, PLAN_LIMIT = "free", 2
HOLD_TTL_S = LEASE_S = 5.0
SWEEP_S = 1.0


@dataclass(frozen=True)
class Profile:
    """How big each phase is."""

    accounts: int
    per_account: int
    warm_s: float
    tail_s: float
    outage_s: float
    faulty_replicas: int  # how many replicas the provider-fault phase restarts into failure injection


RECOVERY_S = 15.0
"""How long after a fault's end every replica has to serve again (health SERVING on each worker)."""

SMOKE = Profile(accounts=3, per_account=3, warm_s=1.0, tail_s=2.5, outage_s=1.5, faulty_replicas=1)
FULL = Profile(accounts=8, per_account=3, warm_s=5.0, tail_s=8.0, outage_s=3.0, faulty_replicas=2)


@dataclass
class PhaseResult:
    """One phase's verdicts and counts."""

    name: str
    checks: list[Check] = field(default_factory=list)
    calls: int = 0
    ok: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    slowest: str = ""
    timing: str = ""

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


class Chaos:
    """The services, the two replicas, and the faults. Replica a runs two workers (one of them is
    killed); replica b runs one, so restarting it after a kill is quick."""

    def __init__(self, workdir: Path, profile: Profile) -> None:
        self.workdir = workdir
        self.profile = profile
        self.pg = Postgres(workdir)
        self.redis = Redis()
        self.accounts = [f"chaos-{i}" for i in range(profile.accounts)]
        self.replicas: list[Replica] = []
        self.fault_args: list[str] = []

    def replica_args(self, workers: int) -> list[str]:
        return [
            f"--ledger={self.pg.dsn}",
            f"--limiter={self.redis.url}",
            f"--workers={workers}",
            "--grace=10",
            f"--hold-ttl={HOLD_TTL_S}",
            f"--lease={LEASE_S}",
            f"--sweep-interval={SWEEP_S}",
            "--sim-ttft-ms=50",
            "--sim-inter-token-ms=40",
            "--sim-tokens=20",
            "--log-level=info",
        ]

    def start(self) -> None:
        self.pg.start()
        self.redis.start()
        self.replicas = [
            Replica(self.workdir, "a", self.replica_args(2)),
            Replica(self.workdir, "b", self.replica_args(1)),
        ]
        for r in self.replicas:
            r.start()

    def close(self) -> None:
        for r in self.replicas:
            if r.alive():
                r.kill9()
        self.redis.close()
        self.pg.close()

    def heal(self) -> list[str]:
        """Start again any replica that is not serving (so each phase starts with two)."""
        healed = []
        for r in self.replicas:
            if not r.serving():
                if r.alive():
                    r.kill9()
                r.start(self.fault_args)
                healed.append(r.name)
        return healed

    async def run_phase(self, name: str, fault: Callable[[], Awaitable[None]]) -> PhaseResult:
        prof = self.profile
        load = Load([r.target for r in self.replicas], self.accounts, prof.per_account)
        load.start()
        await asyncio.sleep(prof.warm_s)
        fault_started = time.monotonic()
        await fault()
        recovered_at = time.monotonic()
        await asyncio.sleep(prof.tail_s)
        record = await load.stop()
        await self.wait_serving(RECOVERY_S)
        reader = next((r for r in self.replicas if r.serving()), None)
        result = PhaseResult(name, calls=len(record.calls), ok=sum(c.code == "OK" for c in record.calls))
        slowest = max(record.calls, key=lambda c: c.end - c.start, default=None)
        if slowest is not None:
            result.slowest = f"{slowest.end - slowest.start:.1f} s ({slowest.code} {slowest.reason} @{slowest.target})"
        for c in record.calls:
            key = c.code if c.code == "OK" else f"{c.code} {c.reason or '(no reason)'}"
            result.codes[key] = result.codes.get(key, 0) + 1
        if reader is None:
            result.checks.append(Check("service recovered", False, "no replica serving"))
            return result
        stopped_at = time.monotonic()
        result.timing = (
            f"fault {recovered_at - fault_started:.1f} s, drain {stopped_at - recovered_at - prof.tail_s:.1f} s"
        )
        try:
            views = await read_ledger([r.target for r in self.replicas if r.serving()], self.accounts)
        except grpc.aio.AioRpcError as exc:
            result.checks.append(Check("ledger readable", False, f"{exc.code().name}: {exc.details()}"))
            return result
        result.timing += f", ledger read {time.monotonic() - stopped_at:.1f} s"
        result.checks = [
            journal_sums_to_balance(views),
            charged_within_hold(views),
            completed_streams_billed(record.calls, views),
            concurrency_within_limit(record.calls, record.polls, PLAN_LIMIT),
            zero_internal(record.calls, record.polls),
            no_hung_call(record.calls),
            self.recovered(record.calls, recovered_at),
        ]
        return result

    async def wait_serving(self, within: float) -> None:
        """Give every live replica up to ``within`` seconds to report SERVING again: a worker
        learns that the ledger is back at its next ledger call or sweep, and a connection pool
        retries with back-off, so recovery is bounded, not instant."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            live = [r for r in self.replicas if r.alive()]
            if all(await asyncio.gather(*(asyncio.to_thread(r.serving) for r in live))):
                return
            await asyncio.sleep(0.25)

    def recovered(self, calls: list[Call], since: float) -> Check:
        """After the fault ended, every replica serves, and each completed a stream."""
        down = [r.name for r in self.replicas if not r.serving()]
        served = {c.target for c in calls if c.completed and c.start >= since}
        idle = [r.name for r in self.replicas if r.target not in served and r.name not in down]
        detail = ", ".join([f"{n} down" for n in down] + [f"{n} completed nothing" for n in idle])
        return Check("service recovered", not down and not idle, detail or "both replicas serve")

    # ------------------------------------------------------------------ faults

    async def kill_replica(self) -> None:
        b = self.replicas[1]
        await asyncio.to_thread(b.kill9)
        await asyncio.sleep(self.profile.outage_s)
        await asyncio.to_thread(b.start, self.fault_args)

    async def kill_worker(self) -> None:
        a = self.replicas[0]
        workers = a.workers()
        if not workers:
            raise RuntimeError(f"replica {a.name} has no worker processes")
        os.kill(workers[0], signal.SIGKILL)
        await asyncio.sleep(3.0)  # a supervisor restarting the worker has this long

    async def pause_replica(self) -> None:
        b = self.replicas[1]
        pids = [b.pid, *b.workers()]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        # Past the lease and the hold ttl, and a few sweeps for the other replica to free them.
        await asyncio.sleep(max(HOLD_TTL_S, LEASE_S) + 3 * SWEEP_S)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(1.0)

    async def restart_redis(self) -> None:
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(self.profile.outage_s)
        await asyncio.to_thread(self.redis.start)

    async def restart_postgres(self) -> None:
        await asyncio.to_thread(self.pg.stop)
        await asyncio.sleep(self.profile.outage_s)
        await asyncio.to_thread(self.pg.start)

    async def provider_faults(self) -> None:
        """Rolling restart into failure injection: the chosen model fails before its first token,
        its first fallback fails mid-stream (so: fallbacks, interrupted streams, a cool-down)."""
        chosen, fallback = await self.text_models()
        self.fault_args = [f"--sim-fail-before={chosen}", f"--sim-fail-mid={fallback}"]
        for r in self.replicas[::-1][: self.profile.faulty_replicas]:
            await asyncio.to_thread(r.stop)
            await asyncio.to_thread(r.start, self.fault_args)
        await asyncio.sleep(3.0)  # the failures reach the breaker; "recovered" then means served by fallback

    async def text_models(self) -> tuple[str, str]:
        """The model automatic selection picks for the load's request, and its first fallback."""
        async with grpc.aio.insecure_channel(self.replicas[0].target) as channel:
            request = router_pb2.GenerateRequest(
                account_id=self.accounts[0], modality=catalog_pb2.MODALITY_TEXT, prompt="Chaos"
            )
            reply = await router_pb2_grpc.RouterServiceStub(channel).SelectModel(
                router_pb2.SelectModelRequest(request=request), timeout=10
            )
        return reply.decision.model.id, reply.decision.fallback_model_ids[0]


def table(results: list[PhaseResult]) -> str:
    """The invariants per phase as a Markdown table."""
    names = [c.name for c in results[0].checks] if results and results[0].checks else []
    for r in results:
        names += [c.name for c in r.checks if c.name not in names]
    lines = ["| phase | calls (ok) | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for r in results:
        cells = []
        for n in names:
            check = next((c for c in r.checks if c.name == n), None)
            cells.append("—" if check is None else ("PASS" if check.ok else "**FAIL**"))
        lines.append(f"| {r.name} | {r.calls} ({r.ok}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(results: list[PhaseResult]) -> str:
    """Every check's evidence and every phase's status counts."""
    out = []
    for r in results:
        out.append(f"{r.name}: " + ", ".join(f"{k} x{v}" for k, v in sorted(r.codes.items())))
        out.append(f"  slowest call {r.slowest}; {r.timing}")
        out += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in r.checks]
    return "\n".join(out)


async def run(profile: Profile, workdir: Path, only: list[str]) -> list[PhaseResult]:
    chaos = Chaos(workdir, profile)
    phases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("kill -9 replica", chaos.kill_replica),
        ("kill -9 worker", chaos.kill_worker),
        ("SIGSTOP past ttl", chaos.pause_replica),
        ("Redis restart", chaos.restart_redis),
        ("PostgreSQL restart", chaos.restart_postgres),
        ("provider faults", chaos.provider_faults),
    ]
    phases = [(n, f) for n, f in phases if not only or n in only]
    results = []
    try:
        await asyncio.to_thread(chaos.start)
        await setup_accounts(chaos.replicas[0].target, chaos.accounts, PLAN, 1_000_000)
        for name, fault in phases:
            healed = await asyncio.to_thread(chaos.heal)
            if healed:
                print(f"restarted replica(s) {', '.join(healed)} before '{name}'", flush=True)
            started = time.monotonic()
            result = await chaos.run_phase(name, fault)
            print(f"{name}: {'held' if result.passed else 'FAILED'} ({time.monotonic() - started:.1f} s)", flush=True)
            print(details([result]), flush=True)
            results.append(result)
    finally:
        await asyncio.to_thread(chaos.close)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every fault once with a small load")
    parser.add_argument("--only", action="append", default=[], help="run only this phase (repeatable)")
    parser.add_argument("--out", default="build/chaos", help="directory for results.json and the replicas' logs")
    args = parser.parse_args()
    out = Path(args.out)
    started = time.monotonic()
    results = in_workdir(
        "sb-chaos-", out, lambda workdir: asyncio.run(run(SMOKE if args.smoke else FULL, workdir, args.only))
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\nChaos suite ({'smoke' if args.smoke else 'full'}), {stamp}, {time.monotonic() - started:.0f} s\n")
    print(table(results))
    print()
    print(details(results))
    (out / "results.json").write_text(
        json.dumps({"date": stamp, "smoke": args.smoke, "phases": [asdict(r) for r in results]}, indent=2)
    )
    failed = [r.name for r in results if not r.passed]
    if failed:
        print(f"\ninvariants failed in: {', '.join(failed)}")
        return 1
    print("\nall invariants held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
