"""The path users run: a streaming model call through a real HTTP upstream.

A fake provider written in Go (``bench/go/cmd/upstream``: OpenAI Chat Completions and Anthropic
Messages, both SSE, a fixed number of tokens at a fixed pace) is called by one Go load client
(``bench/go/cmd/loadgen``) in every way measured: directly over HTTP (the baseline), through
Switchboard's Generate over gRPC with the real ``openai_compat`` and ``anthropic`` adapters, and
through other gateways (``bench/peers.py``). Each figure is then read as what the system adds over
the direct call.

Switchboard runs as users run it: the default log level (info), one worker per core, the SQLite
ledger, a config file routing the bench models to the upstream. Every account is its own (one per
load worker) on a plan whose concurrency limit is far above the load, so the limit is not what is
measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import Results, process

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
LONG = "bench-stream"  # the upstream answers with the profile's tokens
ONE = "bench-t1"  # a model named ...-t<N> answers with N tokens


@dataclass(frozen=True)
class HttpProfile:
    """How big each stage is, and the upstream's pace."""

    levels: tuple[int, ...]  # concurrent streams; 1 is the one-at-a-time stage
    ttft_n: int  # one at a time: streams cancelled after their first token
    gap_n: int  # one at a time: streams read to the end
    rounds: int  # bursts per level above 1
    throughput_streams: int
    throughput_seconds: float
    tokens: int
    ttft_ms: int
    gap_ms: int


FULL = HttpProfile((1, 64, 256), 150, 10, 2, 64, 5.0, 50, 10, 10)
SMOKE = HttpProfile((1, 8), 5, 1, 1, 8, 1.0, 5, 2, 2)


@dataclass(frozen=True)
class System:
    """One thing measured: how the load client reaches it and which process holds its memory."""

    name: str
    api: str  # the direct call it is compared with: "openai" or "anthropic"
    args: tuple[str, ...]  # loadgen target flags, without -model
    model: str  # the model for streams (tokens per answer from the profile)
    one_token_model: str
    pid: int | None = None  # None: not a server of its own (the direct call)


def direct_systems(upstream: int) -> dict[str, System]:
    """The upstream called directly, once per API."""
    base = f"http://127.0.0.1:{upstream}"
    return {
        "openai": System("direct", "openai", ("-kind", "openai", "-url", f"{base}/v1/chat/completions"), LONG, ONE),
        "anthropic": System(
            "direct (anthropic)", "anthropic", ("-kind", "anthropic", "-url", f"{base}/v1/messages"), LONG, ONE
        ),
    }


CONFIG = """\
# Written by bench/http_path.py: bench models routed to the fake upstream.
defaultPlanId: bench
tierPrices:
  - {modality: MODALITY_TEXT, tier: TIER_LITE, price: {creditsPerRequest: 1}}
plans:
  - id: bench
    displayName: Bench
    monthlyCredits: 1000000000
    maxConcurrentRequests: 4096
    defaults:
      - {modality: MODALITY_TEXT, tier: TIER_LITE}
models:
"""
MODELS = {
    # id: (adapter, upstream model)
    "bench-openai": ("openai_compat", LONG),
    "bench-openai-1": ("openai_compat", ONE),
    "bench-anthropic": ("anthropic", LONG),
    "bench-anthropic-1": ("anthropic", ONE),
}


def switchboard_config() -> str:
    lines = [
        f"  - {{id: {mid}, displayName: {mid}, provider: Bench, modality: MODALITY_TEXT, tier: TIER_LITE,"
        f" description: A model of the benchmark upstream., route: {{adapter: {adapter}, upstreamModel: {up}}}}}"
        for mid, (adapter, up) in MODELS.items()
    ]
    return CONFIG + "\n".join(lines) + "\n"


@contextmanager
def upstream(tools: Path, tmp: Path, prof: HttpProfile) -> Iterator[int]:
    cmd = [
        str(tools / "upstream"),
        "--listen",
        "127.0.0.1:0",
        "--port-file",
        str(tmp / "upstream.port"),
        "--tokens",
        str(prof.tokens),
        "--ttft-ms",
        str(prof.ttft_ms),
        "--gap-ms",
        str(prof.gap_ms),
    ]
    with process(cmd, tmp / "upstream.port") as (port, _):
        yield port


@contextmanager
def switchboard(tmp: Path, upstream_port: int, workers: int) -> Iterator[tuple[int, int]]:
    """Switchboard at the default log level, its log written to a file; yields (port, pid)."""
    cfg = tmp / "switchboard.yaml"
    cfg.write_text(switchboard_config())
    cmd = [
        str(Path(sys.executable).parent / "switchboard"),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--port-file",
        str(tmp / "sbhttp.port"),
        "--config",
        str(cfg),
        "--workers",
        str(workers),
        "--no-simulation",
        "--ledger",
        f"sqlite:{tmp / 'http-ledger.db'}",
        "--auto-create-accounts",
        "--openai-compat-base-url",
        f"http://127.0.0.1:{upstream_port}/v1",
        "--anthropic-base-url",
        f"http://127.0.0.1:{upstream_port}",
    ]
    env = {**os.environ, "OPENAI_COMPAT_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY}
    with (
        (tmp / "switchboard.log").open("wb") as log,
        process(cmd, tmp / "sbhttp.port", env=env, stdout=log) as (
            port,
            pid,
        ),
    ):
        yield port, pid


def switchboard_systems(port: int, pid: int) -> list[System]:
    grpc = ("-kind", "grpc", "-addr", f"127.0.0.1:{port}")
    return [
        System("switchboard", "openai", grpc, "bench-openai", "bench-openai-1", pid),
        System("switchboard (anthropic)", "anthropic", grpc, "bench-anthropic", "bench-anthropic-1", pid),
    ]


# ------------------------------------------------------------------- measuring


def loadgen(tools: Path, system: System, model: str, *args: str) -> dict[str, Any]:
    prefix = ("-accounts", f"{system.name.split()[0]}-{model}") if "grpc" in system.args else ()
    cmd = [str(tools / "loadgen"), *system.args, *prefix, "-model", model, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"loadgen {system.name} {' '.join(args)} failed: {out.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def peak_rss_mib(pid: int) -> float:
    """The sum of each process's peak resident set (VmHWM) over the process tree."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


STAGE_ONE = "HTTP x1 stream"
STAGE_TPUT = "HTTP 1-token x{n}"


def measure(res: Results, tools: Path, systems: list[System], prof: HttpProfile) -> dict[tuple[str, str], Any]:
    """Every scenario for every system, the systems alternating within each scenario so a slow
    spell of the machine hits them alike. Returns {(stage, system name): figures}."""
    runs: dict[tuple[str, str], Any] = {}

    def run(stage: str, system: System, model: str, *args: str) -> None:
        fig = loadgen(tools, system, model, *args)
        runs[(stage, system.name)] = fig
        keep = ("ttft_p50_ms", "ttft_p99_ms", "gap_p99_ms", "gap_max_ms", "lat_p99_ms", "rps", "calls", "errors")
        res.add(stage, system.name, **{k: fig[k] for k in keep if k in fig}, **_err(fig))

    for level in prof.levels:
        for system in systems:
            if level == 1:
                run(
                    STAGE_ONE,
                    system,
                    system.model,
                    "-scenario",
                    "single",
                    "-ttft-n",
                    str(prof.ttft_n),
                    "-gap-n",
                    str(prof.gap_n),
                )
            else:
                run(
                    f"HTTP x{level} streams",
                    system,
                    system.model,
                    "-scenario",
                    "burst",
                    "-streams",
                    str(level),
                    "-rounds",
                    str(prof.rounds),
                )
    n = prof.throughput_streams
    for system in systems:
        run(
            STAGE_TPUT.format(n=n),
            system,
            system.one_token_model,
            "-scenario",
            "throughput",
            "-streams",
            str(n),
            "-seconds",
            str(prof.throughput_seconds),
        )
    for system in systems:
        if system.pid is not None:
            runs[("rss", system.name)] = peak_rss_mib(system.pid)
    return runs


def _err(fig: dict[str, Any]) -> dict[str, Any]:
    return {"first_error": fig["first_error"][:120]} if fig.get("first_error") else {}


def added_table(
    res: Results,
    runs: dict[tuple[str, str], Any],
    systems: list[System],
    directs: dict[str, System],
    prof: HttpProfile,
) -> str:
    """The "added over the direct call" table, in Markdown; also recorded as result rows."""
    others = [s for s in systems if s.pid is not None]
    top = max(prof.levels)
    n = prof.throughput_streams

    def fig(stage: str, name: str, key: str) -> float | None:
        value = (runs.get((stage, name)) or {}).get(key)
        return None if value is None else float(value)

    def added(stage: str, s: System, key: str) -> str:
        a, b = fig(stage, s.name, key), fig(stage, directs[s.api].name, key)
        return "n/a" if a is None or b is None else f"{a - b:+.2f} ms"

    levels = [lv for lv in sorted(prof.levels) if lv > 1]
    rows: list[tuple[str, list[str]]] = [
        ("1 stream: TTFT p50", [added(STAGE_ONE, s, "ttft_p50_ms") for s in others]),
        ("1 stream: gap p99", [added(STAGE_ONE, s, "gap_p99_ms") for s in others]),
        *(
            (f"{lv} streams: TTFT p99", [added(f"HTTP x{lv} streams", s, "ttft_p99_ms") for s in others])
            for lv in levels
        ),
        (
            f"{top} streams: max gap (direct {fig(f'HTTP x{top} streams', 'direct', 'gap_max_ms')} ms)",
            [f"{fig(f'HTTP x{top} streams', s.name, 'gap_max_ms')} ms" for s in others],
        ),
        (
            f"{top} streams: errors",
            [str(int(fig(f"HTTP x{top} streams", s.name, "errors") or 0)) for s in others],
        ),
        (
            f"1-token calls, {n} concurrent (direct {fig(STAGE_TPUT.format(n=n), 'direct', 'rps')} rps)",
            [f"{fig(STAGE_TPUT.format(n=n), s.name, 'rps')} rps" for s in others],
        ),
        ("peak RSS", [f"{runs.get(('rss', s.name), 'n/a')} MiB" for s in others]),
    ]
    for label, values in rows:
        res.add("added over direct", label, **{s.name: v for s, v in zip(others, values, strict=True)})
    head = "| added over the direct call | " + " | ".join(s.name for s in others) + " |"
    lines = [head, "|---" * (len(others) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    return "\n".join(lines)


def verdicts(runs: dict[tuple[str, str], Any], prof: HttpProfile, peers: tuple[str, ...] = ()) -> list[str]:
    """Each target of the HTTP path for Switchboard (openai_compat) as a Markdown table row:
    the target, the figure measured, met or missed."""
    top = max(prof.levels)
    levels = sorted(lv for lv in prof.levels if lv > 1)
    mid = levels[0] if len(levels) > 1 else top
    tput = STAGE_TPUT.format(n=prof.throughput_streams)

    def get(stage: str, name: str, key: str) -> float | None:
        value = (runs.get((stage, name)) or {}).get(key)
        return None if value is None else float(value)

    def added(stage: str, key: str) -> float | None:
        a, b = get(stage, "switchboard", key), get(stage, "direct", key)
        return None if a is None or b is None else a - b

    def row(target: str, value: float | None, limit: float | None, unit: str, more_is_better: bool = False) -> str:
        if value is None:
            return f"| {target} | n/a | not measured |"
        if limit is None:
            return f"| {target} | {value:.2f} {unit} | reported |"
        met = value >= limit if more_is_better else value <= limit
        return f"| {target} | {value:.2f} {unit} | {'met' if met else '**missed**'} |"

    rows = [
        row("1 stream: added TTFT p50 ≤ 1.5 ms", added(STAGE_ONE, "ttft_p50_ms"), 1.5, "ms"),
        row("1 stream: added gap p99 ≤ 0.3 ms", added(STAGE_ONE, "gap_p99_ms"), 0.3, "ms"),
        row(f"{mid} streams: added TTFT p99 ≤ 15 ms", added(f"HTTP x{mid} streams", "ttft_p99_ms"), 15, "ms"),
        row(f"{top} streams: added TTFT p99 ≤ 150 ms", added(f"HTTP x{top} streams", "ttft_p99_ms"), 150, "ms"),
        row(f"{top} streams: max gap ≤ 100 ms", get(f"HTTP x{top} streams", "switchboard", "gap_max_ms"), 100, "ms"),
        row(f"{top} streams: 0 errors", get(f"HTTP x{top} streams", "switchboard", "errors"), 0, "errors"),
    ]
    sb_rps = get(tput, "switchboard", "rps")
    if "tensorzero" in peers:
        rows.append(row("1-token throughput ≥ TensorZero's", sb_rps, get(tput, "tensorzero", "rps"), "rps", True))
    else:
        rows.append(row("1-token throughput (TensorZero's: make bench-peers)", sb_rps, None, "rps"))
    rss = runs.get(("rss", "switchboard"))
    others = [runs[("rss", p)] for p in peers if ("rss", p) in runs]
    rows.append(row("peak RSS the smallest", rss, min(others) if others else None, "MiB"))
    return rows


def http_path_stage(res: Results, tools: Path, tmp: Path, smoke: bool, workers: int) -> tuple[str, list[str]]:
    """Switchboard through the upstream against the direct calls; returns the added table and
    the verdict rows."""
    prof = SMOKE if smoke else FULL
    with ExitStack() as stack:
        up = stack.enter_context(upstream(tools, tmp, prof))
        port, pid = stack.enter_context(switchboard(tmp, up, workers))
        directs = direct_systems(up)
        sb_openai, sb_anthropic = switchboard_systems(port, pid)
        systems = [directs["openai"], sb_openai, directs["anthropic"], sb_anthropic]
        runs = measure(res, tools, systems, prof)
        return added_table(res, runs, systems, directs, prof), verdicts(runs, prof)
