"""What every benchmark stage shares: the results table, the machine, percentiles and the
servers under test as child processes."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc


@dataclass
class Results:
    """Every figure measured, by stage."""

    machine: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, stage: str, target: str, **figures: Any) -> None:
        self.rows.append({"stage": stage, "target": target, **figures})
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        print(f"  {stage:28} {target:12} {shown}", flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_kb = int(next(x for x in meminfo if x.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
    }


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# ------------------------------------------------------------------ processes


@contextmanager
def process(
    cmd: list[str],
    port_file: Path,
    expect_files: int = 1,
    env: dict[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> Iterator[tuple[int, int]]:
    """Start a server, wait for its port file(s), yield (port, pid), stop it."""
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    files = [port_file] if expect_files == 1 else [Path(f"{port_file}.{i}") for i in range(expect_files)]
    try:
        while not all(f.exists() and f.read_text().strip() for f in files):
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd} did not start")
            time.sleep(0.05)
        first = files[0].read_text().strip()
        yield (int(first) if first.isdigit() else 0), proc.pid  # a file may hold a URL, not a port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pids_of(parent: int) -> list[int]:
    out = [parent]
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        out += [int(c) for c in children]
    except OSError:
        pass
    return out


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
