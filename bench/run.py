"""Switchboard's benchmarks: ghz against Switchboard and a null server, a streaming client for
Generate, the selection core alone, and memory per open stream. Prints one table and writes JSON.

    python bench/run.py --ghz .tools/bin/ghz            # the full run (a few minutes)
    python bench/run.py --ghz .tools/bin/ghz --smoke    # seconds: checks that every stage runs

Everything targets 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from harness import Results, free_port, machine, pct, pids_of, process, rss_kib
from http_path import http_path_stage
from switchboard.catalog import load_catalog
from switchboard.errors import SwitchboardError
from switchboard.providers.simulated import SimulatedProvider, SimulationProfile
from switchboard.selection import Selector, derive_requirements
from switchboard.types import (
    AccountState,
    Capability,
    GenerationOptions,
    GenerationRequest,
    Modality,
    Model,
    SelectionRequest,
    TextChunk,
    Tier,
)
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
SELECT_DATA = {"request": {"account_id": "bench", "modality": "MODALITY_TEXT", "prompt": "Summarise the meeting notes"}}


@dataclass
class Profile:
    """How big each stage is."""

    select_requests: int
    rates: tuple[int, ...]
    rate_seconds: float
    stream_levels: tuple[int, ...]
    stream_tokens: int
    inter_token_ms: int
    ttft_ms: int
    decisions: int
    memory_streams: int
    single_ttft_streams: int  # one stream at a time, cancelled after its first token
    single_gap_streams: int  # one stream at a time, read to the end
    ceiling_pairs: int  # SelectModel ceiling runs, alternating Switchboard and the null server


FULL = Profile(10_000, (500, 1000, 2000), 5.0, (64, 256), 100, 20, 50, 50_000, 256, 300, 12, 5)
SMOKE = Profile(300, (100,), 1.0, (4,), 5, 5, 5, 2_000, 8, 5, 2, 1)


# ------------------------------------------------------------------------ ghz


def ghz(binary: str, port: int, call: str, data: dict[str, Any], *args: str) -> dict[str, Any]:
    cmd = [
        binary,
        "--insecure",
        "--call",
        call,
        "--data",
        json.dumps(data),
        "--format",
        "json",
        "--timeout",
        "20s",
        *args,
        f"127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if not out.stdout.strip():
        raise RuntimeError(f"ghz failed: {out.stderr}")
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    latencies = [d["latency"] / 1e6 for d in report.get("details") or [] if d.get("status") == "OK"]
    errors = sum(v for k, v in (report.get("statusCodeDistribution") or {}).items() if k != "OK")
    return {
        "rps": round(report["rps"]),
        "p50_ms": round(pct(latencies, 50), 3),
        "p99_ms": round(pct(latencies, 99), 3),
        "p999_ms": round(pct(latencies, 99.9), 3),
        "errors": errors,
        "count": report["count"],
    }


def select_stages(res: Results, binary: str, ports: dict[str, int], prof: Profile) -> None:
    call = "switchboard.v1.RouterService/SelectModel"
    for port in ports.values():
        ghz(binary, port, call, SELECT_DATA, "-n", "500", "-c", "16", "--connections", "4")  # warm-up
    # The ceiling runs alternate between the servers, so a slow spell of the machine hits both;
    # the row shown per server is its median run, and the ratio is taken per pair.
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
    for _ in range(prof.ceiling_pairs):
        for name, port in ports.items():
            args = ("-n", str(prof.select_requests), "-c", "64", "--connections", "8")
            runs[name].append(summarize(ghz(binary, port, call, SELECT_DATA, *args)))
    for name, reps in runs.items():
        median = sorted(reps, key=lambda r: r["rps"])[len(reps) // 2]
        res.add("SelectModel ceiling", name, **median, runs=len(reps))
    if "null" in runs:
        ratios = sorted(s["rps"] / n["rps"] for s, n in zip(runs["switchboard"], runs["null"], strict=True))
        res.add(
            "SelectModel ceiling ratio",
            "switchboard",
            ratio=round(ratios[len(ratios) // 2], 3),
            pairs=",".join(f"{r:.3f}" for r in ratios),
        )
    for rate in prof.rates:
        for name, port in ports.items():
            n = int(rate * prof.rate_seconds)
            rep = summarize(
                ghz(binary, port, call, SELECT_DATA, "-n", str(n), "--rps", str(rate), "-c", "50", "--connections", "4")
            )
            res.add(f"SelectModel @{rate} rps", name, **rep)


def generate_ghz(res: Results, binary: str, port: int, prof: Profile) -> None:
    data = {
        "account_id": "ghz-{{.WorkerID}}",
        "request_id": "{{.UUID}}",
        "modality": "MODALITY_TEXT",
        "prompt": "Tell me a story",
    }
    n, c = (16, 4) if prof is SMOKE else (160, 32)
    call = "switchboard.v1.RouterService/Generate"
    rep = summarize(ghz(binary, port, call, data, "-n", str(n), "-c", str(c), "--connections", "4"))
    res.add("Generate whole stream (ghz)", "switchboard", **rep)


# ------------------------------------------------------------- Generate client


def _direct_request() -> tuple[Model, GenerationRequest]:
    """The text model and request the in-process provider calls use."""
    model = load_catalog(None).models[0]
    req = GenerationRequest(
        request_id="d",
        selection=SelectionRequest("a", derive_requirements(Modality.TEXT)),
        prompt="Tell me a story",
        options=GenerationOptions(),
    )
    return model, req


async def stream_direct(provider: SimulatedProvider, n: int) -> tuple[list[float], list[float]]:
    model, req = _direct_request()

    async def one() -> tuple[float, list[float]]:
        start = time.perf_counter()
        first = 0.0
        last = 0.0
        gaps: list[float] = []
        async for ev in provider.stream(model, req):
            if isinstance(ev, TextChunk):
                now = time.perf_counter()
                if not first:
                    first = now - start
                else:
                    gaps.append(now - last)
                last = now
        return first, gaps

    results = await asyncio.gather(*(one() for _ in range(n)))
    return [r[0] * 1000 for r in results], [g * 1000 for r in results for g in r[1]]


async def single_direct(provider: SimulatedProvider, ttft_n: int, gap_n: int) -> tuple[list[float], list[float]]:
    """One stream at a time: ``ttft_n`` streams closed after their first token, then ``gap_n``
    streams read to the end."""
    model, req = _direct_request()
    ttft: list[float] = []
    for _ in range(ttft_n):
        start = time.perf_counter()
        stream = provider.stream(model, req)
        async for ev in stream:
            if isinstance(ev, TextChunk):
                ttft.append((time.perf_counter() - start) * 1000)
                break
        await stream.aclose()  # type: ignore[attr-defined]
    gaps: list[float] = []
    for _ in range(gap_n):
        _, g = await stream_direct(provider, 1)
        gaps += g
    return ttft, gaps


async def single_switchboard(port: int, ttft_n: int, gap_n: int) -> tuple[list[float], list[float], int]:
    """The same as ``single_direct`` through a server, over one channel."""
    errors = 0
    ttft: list[float] = []
    gaps: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        await create_accounts(stub, "single", 1)
        await channel.channel_ready()
        for i in range(ttft_n + gap_n):
            req = router_pb2.GenerateRequest(
                account_id="single-0",
                request_id=uuid.uuid4().hex,
                modality=catalog_pb2.MODALITY_TEXT,
                prompt="Tell me a story",
            )
            whole = i >= ttft_n
            start = last = time.perf_counter()
            first = True
            call = stub.Generate(req, timeout=120)
            try:
                async for frame in call:
                    if frame.WhichOneof("event") != "delta":
                        continue
                    now = time.perf_counter()
                    if first and not whole:
                        ttft.append((now - start) * 1000)
                        call.cancel()
                        break
                    if not first:
                        gaps.append((now - last) * 1000)
                    first, last = False, now
            except grpc.aio.AioRpcError:
                errors += 1
            if not whole:
                await asyncio.sleep(0.005)  # let the cancelled stream settle before the next one
    return ttft, gaps, errors


async def create_accounts(stub: router_pb2_grpc.RouterServiceStub, prefix: str, n: int) -> None:
    """Touch each account once (the server creates it) so streams measure steady state, not sign-up."""
    for i in range(n):
        req = router_pb2.GenerateRequest(account_id=f"{prefix}-{i}", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")
        await stub.SelectModel(router_pb2.SelectModelRequest(request=req), timeout=30)


async def stream_switchboard(port: int, n: int) -> tuple[list[float], list[float], int]:
    errors = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        await create_accounts(stub, "stream", n)

        async def one(i: int) -> tuple[float, list[float]]:
            nonlocal errors
            req = router_pb2.GenerateRequest(
                account_id=f"stream-{i}",
                request_id=uuid.uuid4().hex,
                modality=catalog_pb2.MODALITY_TEXT,
                prompt="Tell me a story",
            )
            start = time.perf_counter()
            first = 0.0
            last = 0.0
            gaps: list[float] = []
            try:
                async for frame in stub.Generate(req, timeout=120):
                    if frame.WhichOneof("event") == "delta":
                        now = time.perf_counter()
                        if not first:
                            first = now - start
                        else:
                            gaps.append(now - last)
                        last = now
            except grpc.aio.AioRpcError:
                errors += 1
            return first, gaps

        results = await asyncio.gather(*(one(i) for i in range(n)))
    return [r[0] * 1000 for r in results if r[0]], [g * 1000 for r in results for g in r[1]], errors


def _stream_row(ttft: list[float], gaps: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "ttft_p50_ms": round(pct(ttft, 50), 3),
        "ttft_p99_ms": round(pct(ttft, 99), 3),
        "gap_p50_ms": round(pct(gaps, 50), 3),
        "gap_p99_ms": round(pct(gaps, 99), 3),
        "gap_max_ms": round(max(gaps, default=float("nan")), 3),
        **extra,
    }


def _added(base: tuple[list[float], list[float]], sb: tuple[list[float], list[float]], name: str) -> dict[str, Any]:
    """What Switchboard adds over ``base``: p50 and p99 differences of TTFT and of the gap."""
    out = {}
    for label, i in (("ttft", 0), ("gap", 1)):
        for p in (50, 99):
            out[f"added_{label}_p{p}_ms_vs_{name}"] = round(pct(sb[i], p) - pct(base[i], p), 3)
    return out


def stream_stages(res: Results, port: int, grpc_port: int, prof: Profile) -> None:
    """Generate through Switchboard against two baselines: the simulated provider called in-process
    (*direct*), and the same provider behind bare gRPC (*grpc-provider*: the null server streaming
    the provider's output), which isolates what Switchboard itself adds to a stream."""
    profile = SimulationProfile(
        time_to_first_token_s=prof.ttft_ms / 1000, inter_token_s=prof.inter_token_ms / 1000, tokens=prof.stream_tokens
    )
    n_ttft, n_gap = prof.single_ttft_streams, prof.single_gap_streams
    stage = "Generate x1 stream"
    d = asyncio.run(single_direct(SimulatedProvider(profile), n_ttft, n_gap))
    g = asyncio.run(single_switchboard(grpc_port, n_ttft, n_gap))
    sb = asyncio.run(single_switchboard(port, n_ttft, n_gap))
    res.add(stage, "direct", **_stream_row(*d, streams=n_ttft + n_gap, gap_samples=len(d[1])))
    res.add(stage, "grpc-provider", **_stream_row(g[0], g[1], errors=g[2]))
    res.add(
        stage,
        "switchboard",
        **_stream_row(sb[0], sb[1], errors=sb[2]),
        **_added(g[:2], sb[:2], "grpc"),
        **_added(d, sb[:2], "direct"),
    )
    for level in prof.stream_levels:
        stage = f"Generate x{level} streams"
        d = asyncio.run(stream_direct(SimulatedProvider(profile), level))
        g = asyncio.run(stream_switchboard(grpc_port, level))
        sb = asyncio.run(stream_switchboard(port, level))
        res.add(stage, "direct", **_stream_row(*d))
        res.add(stage, "grpc-provider", **_stream_row(g[0], g[1], errors=g[2]))
        res.add(
            stage,
            "switchboard",
            **_stream_row(sb[0], sb[1], errors=sb[2]),
            **_added(g[:2], sb[:2], "grpc"),
            **_added(d, sb[:2], "direct"),
        )


def memory_stage(res: Results, port: int, server_pid: int, prof: Profile) -> None:
    async def hold_streams() -> int:
        pids = pids_of(server_pid)
        before = rss_kib(pids)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            await create_accounts(stub, "mem", prof.memory_streams)
            calls = []
            for i in range(prof.memory_streams):
                req = router_pb2.GenerateRequest(
                    account_id=f"mem-{i}",
                    request_id=uuid.uuid4().hex,
                    modality=catalog_pb2.MODALITY_TEXT,
                    prompt="Tell me a long story",
                )
                call = stub.Generate(req, timeout=120)
                calls.append(call)
            for call in calls:
                await call.read()
                await call.read()
            during = rss_kib(pids)
            for call in calls:
                call.cancel()
        return during - before

    delta = asyncio.run(hold_streams())
    res.add(
        "Memory per open stream",
        "switchboard",
        streams=prof.memory_streams,
        rss_delta_kib=delta,
        per_stream_kib=round(delta / prof.memory_streams, 1),
    )


# ------------------------------------------------------------ selection core


def decision_stage(res: Results, prof: Profile) -> None:
    catalog = load_catalog(None)
    selector = Selector(catalog)
    variants = [
        SelectionRequest("a", derive_requirements(Modality.TEXT)),
        SelectionRequest("a", derive_requirements(Modality.TEXT, web_search=True, structured_output=True)),
        SelectionRequest(
            "a", derive_requirements(Modality.TEXT, [Capability.AUDIO_INPUT]), preferred_tier=Tier.ADVANCED
        ),
        SelectionRequest("a", derive_requirements(Modality.VIDEO, [Capability.MULTI_SHOT])),
        SelectionRequest("a", derive_requirements(Modality.SPEECH, language="pt-BR")),
        SelectionRequest("a", derive_requirements(Modality.IMAGE), pinned_model_id="openai/gpt-image-2"),
    ]
    accounts = [AccountState("a", catalog.plans[p], b) for p in ("free", "pro", "business") for b in (None, 7, 500)]
    samples: list[float] = []
    clock = time.perf_counter_ns
    for i in range(prof.decisions):
        req = variants[i % len(variants)]
        acct = accounts[i % len(accounts)]
        t0 = clock()
        with contextlib.suppress(SwitchboardError):  # unaffordable variants raise; they are timed too
            selector.select(req, acct)
        samples.append((clock() - t0) / 1000)
    res.add(
        "Selection core",
        "in-process",
        calls=prof.decisions,
        p50_us=round(statistics.median(samples), 2),
        p99_us=round(pct(samples, 99), 2),
        p999_us=round(pct(samples, 99.9), 2),
    )


# ---------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ghz", required=True)
    parser.add_argument("--tools", default=str(ROOT / ".tools" / "bin"), help="where the Go upstream and loadgen are")
    parser.add_argument(
        "--stages", default="all", choices=("all", "grpc", "http"), help="grpc: the simulated-provider stages only"
    )
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    args = parser.parse_args()
    prof = SMOKE if args.smoke else FULL
    res = Results(machine=machine())
    print(f"Switchboard benchmarks ({'smoke' if args.smoke else 'full'}) on {res.machine}", flush=True)
    added, verdicts = "", []
    if args.stages in ("all", "http"):
        with tempfile.TemporaryDirectory(prefix="sb-bench-http-") as tmp:
            added, verdicts = http_path_stage(res, Path(args.tools), Path(tmp), args.smoke, args.workers)
    if args.stages in ("all", "grpc"):
        grpc_stages(res, args, prof)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{'smoke' if args.smoke else 'full'}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"machine": res.machine, "results": res.rows}, indent=2))
    print_table(res)
    if added:
        print(f"\nThrough the HTTP upstream, added over the direct call:\n\n{added}")
    verdicts += select_verdicts(res)
    if verdicts:
        print("\n| target (Switchboard) | measured | verdict |\n|---|---|---|\n" + "\n".join(verdicts))
    print(f"JSON: {path}")
    missing = [r for r in res.rows if any(isinstance(v, float) and math.isnan(v) for v in r.values())]
    return 1 if missing else 0


def select_verdicts(res: Results) -> list[str]:
    """The SelectModel targets: the ceiling at the default log level ≥ 90% of the null server's
    (median of the alternating pairs), and p99 at the highest rate within twice the null server's."""
    rows = {(r["stage"], r["target"]): r for r in res.rows}
    out = []
    ratio = rows.get(("SelectModel ceiling ratio", "switchboard"))
    if ratio:
        verdict = "met" if ratio["ratio"] >= 0.9 else "**missed**"
        out.append(
            f"| SelectModel ≥ 90% of the null server | {ratio['ratio']:.3f} (pairs {ratio['pairs']}) | {verdict} |"
        )
    rates = sorted({int(stage.split("@")[1].split()[0]) for stage, _ in rows if stage.startswith("SelectModel @")})
    if rates:
        stage = f"SelectModel @{rates[-1]} rps"
        sb, null = rows.get((stage, "switchboard")), rows.get((stage, "null"))
        if sb and null:
            verdict = "met" if sb["p99_ms"] <= 2 * null["p99_ms"] else "**missed**"
            if min(sb["rps"], null["rps"]) < 0.9 * rates[-1]:  # the rate was not reached: not comparable
                verdict = f"not measured (rate not reached: {sb['rps']} and {null['rps']} rps)"
            out.append(
                f"| SelectModel p99 @{rates[-1]} rps within 2× the null server's | "
                f"{sb['p99_ms']} ms (null {null['p99_ms']} ms) | {verdict} |"
            )
    return out


def grpc_stages(res: Results, args: argparse.Namespace, prof: Profile) -> None:
    """The stages against the simulated provider: selection, SelectModel, Generate, memory."""
    decision_stage(res, prof)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="sb-bench-") as tmp:
        t = Path(tmp)
        sim_args = [
            "--sim-ttft-ms",
            str(prof.ttft_ms),
            "--sim-inter-token-ms",
            str(prof.inter_token_ms),
            "--sim-tokens",
            str(prof.stream_tokens),
        ]
        sb_cmd = [
            str(bin_dir / "switchboard"),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--port-file",
            str(t / "sb.port"),
            "--workers",
            str(args.workers),
            "--ledger",
            f"sqlite:{t / 'ledger.db'}",
            "--auto-create-accounts",
            *sim_args,  # the default log level (info), as users run it
        ]
        null_port_file = t / "null.port"
        null_cmd = [
            sys.executable,
            str(ROOT / "bench" / "null_server.py"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--workers",
            str(args.workers),
            "--port-file",
            str(null_port_file),
        ]
        with (t / "sb.log").open("wb") as sb_log, process(sb_cmd, t / "sb.port", stdout=sb_log) as (sb_port, sb_pid):
            with process(null_cmd, null_port_file, expect_files=args.workers) as (null_port, _):
                select_stages(res, args.ghz, {"switchboard": sb_port, "null": null_port}, prof)
            sim_cmd = [*null_cmd, "--listen", f"127.0.0.1:{free_port()}", "--port-file", str(t / "sim.port"), *sim_args]
            with process(sim_cmd, t / "sim.port", expect_files=args.workers) as (grpc_port, _):
                stream_stages(res, sb_port, grpc_port, prof)
            generate_ghz(res, args.ghz, sb_port, prof)
            memory_stage(res, sb_port, sb_pid, prof)


def print_table(res: Results) -> None:
    print("\n| stage | target | figures |\n|---|---|---|")
    for row in res.rows:
        figures = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("stage", "target"))
        print(f"| {row['stage']} | {row['target']} | {figures} |")


if __name__ == "__main__":
    sys.exit(main())
