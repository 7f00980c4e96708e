"""What the provider HTTP client costs per streamed request and per token, and how many sockets it
opens.

An OpenAI-compatible streaming upstream runs in its own process on 127.0.0.1 (so its CPU is not
counted); this process streams requests through Switchboard's real ``openai_compat`` adapter and
measures its own CPU time. The upstream counts the distinct client sockets it saw.

    .venv/bin/python bench/http_client.py                  # the adapter of this checkout
    PYTHONPATH=<older checkout>/server .venv/bin/python bench/http_client.py   # another build
    .venv/bin/python bench/http_client.py --tls            # over HTTPS (Go upstream, h2 or h1)

Each figure is the median of ``--runs`` runs. Per request: the CPU of a one-token stream. Per
token: the slope between one-token and ``--tokens``-token streams.

The upstream is Python (aiohttp) by default; ``--go`` runs ``bench/sse_upstream.go`` instead, and
``--tls`` serves HTTPS from it with a fresh self-signed certificate that this process trusts
(``SSL_CERT_FILE``), offering HTTP/2 and HTTP/1.1 by ALPN: a client that speaks HTTP/2 (httpx
with ``http2=True``, the client before aiohttp) negotiates it, so both protocols can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _frames(tokens: int) -> bytes:
    def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
        body = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": " tok"}) for _ in range(tokens)]
    out.append(chunk({}, "stop"))
    usage = {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": tokens + 3}
    out.append(b"data: " + json.dumps({"id": "c", "choices": [], "usage": usage}).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def serve() -> None:
    """The upstream: streams ``tokens`` chunks (query ``?t=``), one write per event, and counts
    client sockets by their port."""
    from aiohttp import web  # noqa: PLC0415 - imported after SSL_CERT_FILE is set on the measuring side

    peers: set[object] = set()
    cache: dict[int, list[bytes]] = {}

    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        tokens = int(request.headers.get("x-bench-tokens", "1"))
        if tokens not in cache:
            cache[tokens] = [f + b"\n\n" for f in _frames(tokens).split(b"\n\n") if f]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for frame in cache[tokens]:
            await resp.write(frame)
        await resp.write_eof()
        return resp

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"sockets": len(peers)})

    async def reset(_: web.Request) -> web.Response:
        peers.clear()
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.sleep(3600)

    asyncio.run(main())


async def measure(base: str, requests: int, tokens: int, concurrency: int, runs: int) -> dict[str, float]:
    """CPU µs per request for ``tokens``-token streams, and the client sockets that carried them."""
    import aiohttp  # noqa: PLC0415 - only the measuring side needs it
    from switchboard.catalog import load_catalog  # noqa: PLC0415 - after PYTHONPATH is in effect
    from switchboard.providers.http import Endpoint  # noqa: PLC0415
    from switchboard.providers.openai_compat import OpenAICompatProvider  # noqa: PLC0415
    from switchboard.selection import derive_requirements  # noqa: PLC0415
    from switchboard.types import GenerationRequest, Modality, SelectionRequest, TextChunk  # noqa: PLC0415

    model = next(m for m in load_catalog(None).models if m.modality is Modality.TEXT)
    request = GenerationRequest("r", SelectionRequest("a", derive_requirements(Modality.TEXT)), prompt="hi")
    adapter = OpenAICompatProvider("bench", Endpoint(base + "/v1", "k"))
    original = adapter.build

    def build(m, r):  # type: ignore[no-untyped-def]
        path, headers, body = original(m, r)
        headers["x-bench-tokens"] = str(tokens)
        return path, headers, body

    adapter.build = build  # type: ignore[method-assign]

    async def one() -> None:
        got = 0
        async for event in adapter.stream(model, request):
            got += isinstance(event, TextChunk)
        assert got == tokens, got

    async def batch(n: int) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def guarded() -> None:
            async with sem:
                await one()

        await asyncio.gather(*(guarded() for _ in range(n)))

    await batch(min(50, requests))  # warm up: imports, pool, caches
    cpu: list[float] = []
    sockets: list[int] = []
    h2: list[int] = []
    async with aiohttp.ClientSession() as control:
        for _ in range(runs):
            await (await control.post(base + "/reset")).read()
            start = time.process_time()
            await batch(requests)
            cpu.append((time.process_time() - start) / requests * 1e6)
            stats = await (await control.get(base + "/stats")).json(content_type=None)
            sockets.append(stats["sockets"])
            h2.append(stats.get("h2", 0))
    await adapter.close()
    return {
        "cpu_us_per_request": statistics.median(cpu),
        "sockets": statistics.median(sockets),
        "h2": statistics.median(h2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=1000, help="streams per run (default 1000)")
    parser.add_argument("--tokens", type=int, default=100, help="tokens of the long stream (default 100)")
    parser.add_argument("--concurrency", type=int, default=16, help="streams at once (default 16)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--go", action="store_true", help="run the Go upstream (bench/sse_upstream.go)")
    parser.add_argument("--tls", action="store_true", help="HTTPS from the Go upstream, HTTP/2 or HTTP/1.1 by ALPN")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    here = Path(__file__).resolve().parent
    cert = Path(tempfile.mkdtemp()) / "upstream.pem"
    if args.go or args.tls:
        binary = cert.parent / "sse_upstream"  # built, then run, so that terminating it stops the server
        subprocess.run(["go", "build", "-o", str(binary), str(here / "sse_upstream.go")], check=True)
        command = [str(binary), *(["-tls", "-cert", str(cert)] if args.tls else [])]
    else:
        command = [sys.executable, str(here / "http_client.py"), "--serve"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        if args.tls:
            os.environ["SSL_CERT_FILE"] = str(cert)  # before any client makes its TLS context
        base = f"{'https' if args.tls else 'http'}://127.0.0.1:{port}"
        short = asyncio.run(measure(base, args.requests, 1, args.concurrency, args.runs))
        long = asyncio.run(measure(base, args.requests, args.tokens, args.concurrency, args.runs))
    finally:
        server.terminate()
        server.wait(timeout=10)
    from switchboard.providers import http  # noqa: PLC0415

    per_token = (long["cpu_us_per_request"] - short["cpu_us_per_request"]) / (args.tokens - 1)
    client = "aiohttp" if "aiohttp" in Path(http.__file__).read_text() else "httpx"
    print(f"client: {client} ({http.__file__})")
    print(f"{args.requests} streams per run, {args.concurrency} at once, median of {args.runs} runs")
    print(f"CPU per 1-token stream:        {short['cpu_us_per_request']:8.0f} µs")
    print(f"CPU per {args.tokens}-token stream:      {long['cpu_us_per_request']:8.0f} µs")
    print(f"CPU per token:                 {per_token:8.1f} µs")
    print(
        f"sockets used per run:          {short['sockets']:8.0f} (1-token), {long['sockets']:.0f} ({args.tokens}-token)"
    )
    if args.tls:
        print(f"of which HTTP/2:               {short['h2']:8.0f} (1-token), {long['h2']:.0f} ({args.tokens}-token)")


if __name__ == "__main__":
    main()
