"""Switchboard beside other gateways, through the same upstream, measured by the same client.

    python bench/peers.py --tools .tools/bin --tensorzero .tools/tensorzero/bin/python \\
        --litellm .tools/litellm/bin/litellm

Each gateway is configured to the fake upstream's OpenAI-compatible API (bench/go/cmd/upstream)
and called over its OpenAI-compatible HTTP endpoint; Switchboard is called over gRPC (Generate)
with its ``openai_compat`` adapter. The direct call to the upstream is the baseline. Prints the
"added over the direct call" table from this one run and writes the JSON beside the other results.

- **TensorZero** runs from its Python package, which embeds the Rust gateway: ``bench/tensorzero_gateway.py``
  starts its HTTP gateway on loopback (observability off, no ClickHouse) and waits.
- **LiteLLM** runs as its proxy (``litellm --config``), one worker, a master key as it requires.

Everything is on 127.0.0.1; every stage is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import http_path
from harness import Results, free_port, machine, process
from http_path import FULL, LONG, ONE, SMOKE, System

ROOT = Path(__file__).resolve().parent.parent
LITELLM_KEY = "sk-bench-" + "0123456789abcdef" * 2

TENSORZERO_GATEWAY = """\
[gateway]
observability.enabled = false
"""
TENSORZERO_MODEL = """
[models.{name}]
routing = ["upstream"]

[models.{name}.providers.upstream]
type = "openai"
model_name = "{upstream_model}"
api_base = "http://127.0.0.1:{port}/v1/"
api_key_location = "none"
"""


@contextmanager
def tensorzero(python: str, tmp: Path, upstream: int) -> Iterator[System]:
    cfg = tmp / "tensorzero.toml"
    models = (("bench", LONG), ("bench1", ONE))
    cfg.write_text(
        TENSORZERO_GATEWAY
        + "".join(TENSORZERO_MODEL.format(name=n, upstream_model=m, port=upstream) for n, m in models),
    )
    cmd = [python, str(ROOT / "bench" / "tensorzero_gateway.py"), str(cfg), str(tmp / "tensorzero.url")]
    with (tmp / "tensorzero.log").open("wb") as log, process(cmd, tmp / "tensorzero.url", stdout=log) as (_, pid):
        url = (tmp / "tensorzero.url").read_text().strip()
        yield System(
            "tensorzero",
            "openai",
            ("-kind", "openai", "-url", f"{url}/chat/completions"),
            "tensorzero::model_name::bench",
            "tensorzero::model_name::bench1",
            pid,
        )


@contextmanager
def litellm(binary: str, tmp: Path, upstream: int) -> Iterator[System]:
    cfg = tmp / "litellm.yaml"
    models = "".join(
        f"  - model_name: {name}\n    litellm_params:\n      model: openai/{model}\n"
        f"      api_base: http://127.0.0.1:{upstream}/v1\n      api_key: {http_path.KEY}\n"
        for name, model in (("bench", LONG), ("bench1", ONE))
    )
    cfg.write_text(f"model_list:\n{models}")
    port = free_port()
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": LITELLM_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list from the network
        "LITELLM_LOG": "ERROR",
    }
    cmd = [binary, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--telemetry", "False"]
    with (tmp / "litellm.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 300)
            yield System(
                "litellm",
                "openai",
                ("-kind", "openai", "-url", f"http://127.0.0.1:{port}/chat/completions", "-key", LITELLM_KEY),
                "bench",
                "bench1",
                proc.pid,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", default=str(ROOT / ".tools" / "bin"))
    parser.add_argument("--tensorzero", help="the Python of the TensorZero environment")
    parser.add_argument("--litellm", help="the litellm command of the LiteLLM environment")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    args = parser.parse_args()
    prof = SMOKE if args.smoke else FULL
    res = Results(machine=machine())
    tools = Path(args.tools)
    print(f"Gateways side by side ({'smoke' if args.smoke else 'full'}) on {res.machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sb-peers-") as tmp, ExitStack() as stack:
        t = Path(tmp)
        up = stack.enter_context(http_path.upstream(tools, t, prof))
        port, pid = stack.enter_context(http_path.switchboard(t, up, args.workers))
        direct = http_path.direct_systems(up)["openai"]
        systems = [direct, http_path.switchboard_systems(port, pid)[0]]
        if args.tensorzero:
            systems.append(stack.enter_context(tensorzero(args.tensorzero, t, up)))
        if args.litellm:
            systems.append(stack.enter_context(litellm(args.litellm, t, up)))
        runs = http_path.measure(res, tools, systems, prof)
        table = http_path.added_table(res, runs, systems, {"openai": direct}, prof)
        peers = tuple(s.name for s in systems[2:])
        verdicts = http_path.verdicts(runs, prof, peers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"peers-{'smoke' if args.smoke else 'full'}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps({"machine": res.machine, "results": res.rows}, indent=2))
    print(f"\nThrough the HTTP upstream, added over the direct call ({res.machine['date']}):\n\n{table}")
    print("\n| target (Switchboard) | measured | verdict |\n|---|---|---|")
    print("\n".join(verdicts))
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
