"""The provider HTTP client: connections go back to the pool, the pool is bounded, SSE is parsed
to the letter, and transport failures are classified."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from switchboard.catalog import load_catalog
from switchboard.errors import ProviderError
from switchboard.providers.http import Endpoint, make_client, split_lines, sse
from switchboard.providers.openai_compat import OpenAICompatProvider
from switchboard.selection import derive_requirements
from switchboard.types import Finished, GenerationRequest, Modality, SelectionRequest, TextChunk

MODEL = next(m for m in load_catalog(None).models if m.modality is Modality.TEXT)
REQUEST = GenerationRequest("r", SelectionRequest("a", derive_requirements(Modality.TEXT)), prompt="hi")


def _chunk(text: str) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@dataclass
class Upstream:
    """A Chat Completions server that records each client socket and how many streams run at once.
    ``after_done`` is what it does after ``data: [DONE]``: end the body at once, end it after a
    pause, or keep it open."""

    after_done: str = "end"
    peers: set[object] = field(default_factory=set)
    running: int = 0
    most_at_once: int = 0
    hold_s: float = 0.0
    raw: list[bytes] = field(default_factory=list)
    runner: web.AppRunner | None = None

    async def completions(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for frame in self.raw or [_chunk("a"), _chunk("b")]:
                await resp.write(frame)
            await asyncio.sleep(self.hold_s)
            await resp.write(b"data: [DONE]\n\n")
            if self.after_done == "pause":
                await asyncio.sleep(0.05)
            elif self.after_done == "open":
                await asyncio.sleep(10)
            await resp.write_eof()
            return resp
        finally:
            self.running -= 1

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        self.runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    """The upstream on a free loopback port."""
    server = Upstream()
    base = await server.start()
    yield server, base
    assert server.runner is not None
    await server.runner.cleanup()


async def _texts(adapter: OpenAICompatProvider) -> str:
    out = ""
    async for event in adapter.stream(MODEL, REQUEST):
        if isinstance(event, TextChunk):
            out += event.text
        else:
            assert isinstance(event, Finished)
    return out


class TestConnectionReuse:
    """Streams that end at ``[DONE]`` give their connection back to the pool."""

    @pytest.mark.parametrize("after_done", ["end", "pause"])
    async def test_sequential_streams_share_one_socket(self, upstream: tuple[Upstream, str], after_done: str) -> None:
        """Ten streams one after another use one connection, also when the body ends a little
        after ``[DONE]``."""
        server, base = upstream
        server.after_done = after_done
        adapter = OpenAICompatProvider("compat", Endpoint(base, "k"))
        try:
            for _ in range(10):
                assert await _texts(adapter) == "ab"
        finally:
            await adapter.close()
        assert len(server.peers) == 1

    async def test_a_body_left_open_is_closed(self, upstream: tuple[Upstream, str]) -> None:
        """A body that stays open after ``[DONE]`` is closed after a short wait; the call succeeds
        and the next one opens a new connection."""
        server, base = upstream
        server.after_done = "open"
        adapter = OpenAICompatProvider("compat", Endpoint(base, "k"))
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            assert await _texts(adapter) == "ab"
            assert loop.time() - started < 5
            assert await _texts(adapter) == "ab"
        finally:
            await adapter.close()
        assert len(server.peers) == 2

    async def test_the_pool_is_bounded(self, upstream: tuple[Upstream, str]) -> None:
        """With a pool of two, six concurrent streams use at most two connections at once."""
        server, base = upstream
        server.hold_s = 0.05
        adapter = OpenAICompatProvider("compat", Endpoint(base, "k", max_connections=2))
        try:
            assert await asyncio.gather(*(_texts(adapter) for _ in range(6))) == ["ab"] * 6
        finally:
            await adapter.close()
        assert server.most_at_once <= 2
        assert len(server.peers) <= 2


class TestServerSentEvents:
    """The SSE parser follows the format whatever the chunking."""

    def test_split_lines(self) -> None:
        """LF, CRLF and CR end lines; a CR at the end of a chunk waits for a possible LF."""
        assert split_lines(b"a\nb\r\nc\rd") == ([b"a", b"b", b"c"], b"d")
        assert split_lines(b"a\r") == ([], b"a\r")
        assert split_lines(b"a\r" + b"\nb\n") == ([b"a", b"b"], b"")

    @pytest.mark.parametrize("size", [1, 3, 7, 1000])
    async def test_events_across_chunk_boundaries(self, upstream: tuple[Upstream, str], size: int) -> None:
        """Named events, multi-line data, comments and CRLF endings, cut into chunks of any size."""
        server, base = upstream
        body = (
            b": keep-alive\r\n\r\nevent: ping\r\ndata: {}\r\n\r\n"
            b'data: one\ndata:two\n\nevent:  delta \ndata: {"x": 1}\n\ndata: tail\n'
        )
        server.raw = [body[i : i + size] for i in range(0, len(body), size)]
        client = make_client(Endpoint(base))
        try:
            async with client.stream("POST", "/chat/completions", json={}) as response:
                events = [e async for e in sse(response)]
        finally:
            await client.aclose()
        assert events == [("ping", "{}"), ("", "one\ntwo"), ("delta", '{"x": 1}'), ("", "tail\n[DONE]")]


class TestTransportFailures:
    """Transport failures become the table's reasons."""

    async def test_connection_refused(self) -> None:
        """Nothing listening: PROVIDER_UNAVAILABLE, retryable."""
        adapter = OpenAICompatProvider("compat", Endpoint("http://127.0.0.1:9", "k", 2.0, 2.0))
        try:
            with pytest.raises(ProviderError) as failed:
                await _texts(adapter)
        finally:
            await adapter.close()
        assert (failed.value.reason, failed.value.retryable) == ("PROVIDER_UNAVAILABLE", True)

    async def test_closed_client(self, upstream: tuple[Upstream, str]) -> None:
        """A closed client says so and refuses calls with PROVIDER_UNAVAILABLE."""
        _, base = upstream
        adapter = OpenAICompatProvider("compat", Endpoint(base, "k"))
        assert not adapter.closed
        await adapter.close()
        assert adapter.closed
        with pytest.raises(ProviderError) as failed:
            await _texts(adapter)
        assert failed.value.reason == "PROVIDER_UNAVAILABLE"


class TestBenchmark:
    """The README's client benchmark runs and shows connections reused."""

    def test_bench_http_client(self) -> None:
        """A short run of ``bench/http_client.py`` (the README's command with small counts) reports
        its figures and opens no more sockets than streams run at once."""
        root = Path(__file__).resolve().parents[1]
        args = ["--requests", "20", "--tokens", "5", "--concurrency", "4", "--runs", "1"]
        done = subprocess.run(
            [sys.executable, str(root / "bench" / "http_client.py"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert "CPU per token" in done.stdout
        found = re.search(r"sockets used per run: +(\d+) \(1-token\), (\d+)", done.stdout)
        assert found is not None, done.stdout
        assert max(int(found.group(1)), int(found.group(2))) <= 4
