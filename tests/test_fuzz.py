"""Hostile input over a real channel to a `switchboard serve` process: generated protobuf messages
with arbitrary field values, and random or mutated bytes on the wire.

Over 10,000 calls in all: none may end INTERNAL or UNKNOWN, none may reach its deadline, and the
server's resident memory must stay bounded. Hypothesis runs derandomized and the byte fuzzer uses a
fixed seed, so CI sees the same cases every run.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from switchboard.v1 import accounts_pb2, catalog_pb2, router_pb2

T = TypeVar("T")
BIN = Path(sys.executable).with_name("switchboard")
DEADLINE_S = 30.0
CONCURRENCY = 48
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
SERVICE = "/switchboard.v1.RouterService/"
ACCOUNTS_SERVICE = "/switchboard.v1.AccountService/"
ACCOUNT_METHODS = ["CreateAccount", "UpdateAccountPlan", "GetAccount", "GrantCredits", "ListLedgerEntries"]
MAX_PROMPT = 50_000
MAX_ATTACHMENT = 16_384


@dataclass
class Target:
    """The server process, a loop and channel to it, and what the calls returned."""

    proc: subprocess.Popen[bytes]
    port: int
    loop: asyncio.AbstractEventLoop
    channel: grpc.aio.Channel
    codes: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)

    def rss_mb(self) -> float:
        """The server's resident set size in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def run(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        """Make ``calls`` with at most CONCURRENCY in flight, recording each outcome."""
        self.loop.run_until_complete(self._run(calls))

    async def _run(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(call: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                start = time.monotonic()
                code = grpc.StatusCode.OK
                try:
                    await call()
                except grpc.aio.AioRpcError as exc:
                    code = exc.code()
                    if code in FORBIDDEN and len(self.failures) < 20:
                        self.failures.append(f"{code.name}: {exc.details()}")
                self.slowest = max(self.slowest, time.monotonic() - start)
                self.codes[code.name] += 1

        await asyncio.gather(*(one(c) for c in calls))

    def unary(self, method: str, payload: bytes, service: str = SERVICE) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            await self.channel.unary_unary(service + method)(payload, timeout=DEADLINE_S)

        return call

    def stream(self, payload: bytes) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            async for _ in self.channel.unary_stream(SERVICE + "Generate")(payload, timeout=DEADLINE_S):
                pass

        return call


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server process with a fast simulator and small prompt and attachment limits."""
    tmp = tmp_path_factory.mktemp("fuzz")
    port_file = tmp / "port"
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(BIN),
            "serve",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--port-file",
            str(port_file),
            "--ledger",
            f"sqlite:{tmp / 'ledger.db'}",
            "--auto-create-accounts",
            "--log-level",
            "warning",
            "--sim-ttft-ms",
            "0",
            "--sim-inter-token-ms",
            "0",
            "--sim-tokens",
            "3",
            "--max-prompt-chars",
            str(MAX_PROMPT),
            "--max-attachment-bytes",
            str(MAX_ATTACHMENT),
            "--grace",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        assert proc.poll() is None, "server exited"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    port = int(port_file.read_text())
    loop = asyncio.new_event_loop()

    async def connect() -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    t = Target(proc, port, loop, loop.run_until_complete(connect()))
    yield t
    loop.run_until_complete(t.channel.close())
    loop.close()
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    errors = [line for line in (tmp / "server.log").read_text().splitlines() if '"error"' in line]
    assert not errors, errors[:5]


# ------------------------------------------------------------------ strategies


def mostly(usual: st.SearchStrategy[T], odd: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``usual`` about seven times in eight, else ``odd`` (so requests get past validation often)."""
    return st.integers(0, 7).flatmap(lambda n: odd if n == 7 else usual)


def enum(values: list[int]) -> st.SearchStrategy[int]:
    """Mostly known non-zero values, sometimes zero or any 32-bit int (unknown enum values)."""
    return mostly(st.sampled_from([v for v in values if v]), st.integers(-(2**31), 2**31 - 1))


def big_text(limit: int) -> st.SearchStrategy[str]:
    """Short arbitrary text, or one character repeated up to just past ``limit``."""
    repeated = st.tuples(st.characters(), st.integers(0, limit + 10)).map(lambda t: t[0] * t[1])
    return mostly(st.sampled_from(["hi", "write a poem", "a cat on a mat"]), st.one_of(st.text(max_size=40), repeated))


MODALITIES = list(catalog_pb2.Modality.values())
TIERS = list(catalog_pb2.Tier.values())
CAPS = list(catalog_pb2.Capability.values())
ROLES = list(router_pb2.Role.values())
MIMES = ["image/png", "audio/mpeg", "video/mp4", "application/pdf", "text/plain", "bogus", "image/", "a/b;c=d"]
VALID_ACCOUNTS = st.sampled_from(["acct-a", "acct-b", "acct-c", "acct-d"])
ACCOUNTS = mostly(VALID_ACCOUNTS, st.text(max_size=300))

attachments = mostly(
    st.just([]),
    st.lists(
        st.builds(
            router_pb2.Attachment,
            mime_type=st.one_of(st.sampled_from(MIMES), st.text(max_size=20)),
            data=st.one_of(st.binary(max_size=64), st.integers(0, MAX_ATTACHMENT + 8).map(lambda n: b"\0" * n)),
            name=st.text(max_size=10),
        )
        | st.builds(router_pb2.Attachment, mime_type=st.sampled_from(MIMES), uri=st.text(max_size=60)),
        max_size=4,
    ),
)
options = st.builds(
    router_pb2.GenerationOptions,
    web_search=st.booleans(),
    reasoning=st.booleans(),
    language=st.one_of(st.sampled_from(["", "en", "de-DE", "zz-ZZZZZZZZZ"]), st.text(max_size=12)),
    max_output_tokens=st.integers(-(2**31), 2**31 - 1),
    voice=st.text(max_size=10),
    tools=st.lists(
        st.builds(
            router_pb2.Tool,
            name=st.sampled_from(["f", "g", ""]) | st.text(max_size=8),
            description=st.text(max_size=20),
            parameters_json_schema=st.sampled_from(["", "{}", '{"type":"object"}', "{", "[]"]) | st.text(max_size=20),
        ),
        max_size=3,
    ),
) | st.builds(
    router_pb2.GenerationOptions,
    structured_output=st.builds(
        router_pb2.StructuredOutput,
        json_schema=st.sampled_from(["", "{}", '{"type":"object"}', "not json", "[1]", "{" * 5000]),
        name=st.text(max_size=10),
    ),
)
messages = st.lists(
    st.builds(router_pb2.ChatMessage, role=enum(ROLES), content=big_text(MAX_PROMPT // 2), attachments=attachments),
    max_size=6,
)


@st.composite
def generate_requests(draw: st.DrawFn) -> router_pb2.GenerateRequest:
    req = router_pb2.GenerateRequest(
        account_id=draw(ACCOUNTS),
        request_id=draw(st.one_of(st.just(""), st.text(max_size=300))),
        modality=draw(enum(MODALITIES)),
        required_capabilities=draw(mostly(st.just([]), st.lists(enum(CAPS), max_size=4))),
        attachments=draw(attachments),
        pinned_model_id=draw(
            st.one_of(st.just(""), st.sampled_from(["gpt-5.4-nano", "gemini-3.1-flash-lite"]), st.text(max_size=300))
        ),
        preferred_tier=draw(mostly(st.just(0), enum(TIERS))),
    )
    content = draw(st.sampled_from(["prompt", "plain", "conversation", "none"]))
    if content == "plain":
        req.prompt = draw(st.sampled_from(["hello", "draw a cat", "summarise this"]))
    elif content == "prompt":
        req.prompt = draw(big_text(MAX_PROMPT))
    elif content == "conversation":
        req.conversation.messages.extend(draw(messages))
    if draw(st.booleans()):
        req.options.CopyFrom(draw(options))
    if draw(st.integers(0, 3)) == 0:
        req.max_credits = draw(st.integers(-(2**63), 2**63 - 1))
    return req


list_requests = st.builds(
    router_pb2.ListModelsRequest, modality=enum(MODALITIES), tier=enum(TIERS), provider=st.text(max_size=30)
)

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class TestHostileInput:
    """Nothing returns INTERNAL or UNKNOWN, nothing hangs, memory stays bounded."""

    def test_generated_messages(self, target: Target) -> None:
        """Generated GenerateRequest, SelectModelRequest and ListModelsRequest messages, in batches."""
        before = target.calls

        @FUZZ
        @given(st.lists(generate_requests(), min_size=10, max_size=10), st.lists(list_requests, min_size=2, max_size=2))
        def batch(generates: list[router_pb2.GenerateRequest], lists: list[router_pb2.ListModelsRequest]) -> None:
            calls = []
            for req in generates:
                calls.append(target.stream(req.SerializeToString()))
                select = router_pb2.SelectModelRequest(request=req).SerializeToString()
                calls.append(target.unary("SelectModel", select))
            calls += [target.unary("ListModels", r.SerializeToString()) for r in lists]
            target.run(calls)

        batch()
        made = target.calls - before
        print("generated:", made, dict(target.codes), f"slowest {target.slowest:.2f}s")
        assert made >= 6000
        assert not target.failures, target.failures
        assert target.slowest < DEADLINE_S / 2
        assert target.codes["OK"] > 200  # the fuzzer reaches the deep paths, not just validation

    def test_random_bytes(self, target: Target) -> None:
        """Random bytes and mutated valid messages to every method of both services; memory stays bounded."""
        rng = random.Random(20261125)
        valid = [
            router_pb2.GenerateRequest(account_id="acct-a", modality=1, prompt="hello there").SerializeToString(),
            router_pb2.SelectModelRequest(
                request=router_pb2.GenerateRequest(
                    account_id="acct-b",
                    modality=2,
                    prompt="a cat",
                    attachments=[router_pb2.Attachment(mime_type="image/png", data=b"x")],
                )
            ).SerializeToString(),
            router_pb2.ListModelsRequest(modality=1, provider="openai").SerializeToString(),
            accounts_pb2.GrantCreditsRequest(account_id="acct-c", credits=5, idempotency_key="k").SerializeToString(),
            accounts_pb2.ListLedgerEntriesRequest(account_id="acct-a", page_size=3).SerializeToString(),
        ]

        def payload() -> bytes:
            kind = rng.random()
            if kind < 0.4:
                return rng.randbytes(rng.randint(0, 512))
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randint(1, 6)):
                op = rng.random()
                if op < 0.5 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif op < 0.75:
                    data[rng.randint(0, len(data)) : rng.randint(0, len(data))] = rng.randbytes(rng.randint(1, 16))
                else:
                    del data[rng.randint(0, len(data)) :]
            return bytes(data)

        rss_start = target.rss_mb()
        rounds = []
        for _ in range(3):
            calls = []
            for _ in range(600):
                calls.append(target.stream(payload()))
                calls.append(target.unary("SelectModel", payload()))
                calls.append(target.unary("ListModels", payload()))
                calls.append(target.unary(rng.choice(ACCOUNT_METHODS), payload(), service=ACCOUNTS_SERVICE))
            target.run(calls)
            rounds.append(target.rss_mb())
        print("bytes:", target.calls, dict(target.codes), rss_start, rounds, f"slowest {target.slowest:.2f}s")
        assert not target.failures, target.failures
        assert target.slowest < DEADLINE_S / 2
        assert target.calls >= 10_000
        # Generous: later rounds may not keep growing; nothing accumulates per call.
        assert rounds[-1] - rss_start < 200, (rss_start, rounds)
        assert rounds[-1] - rounds[0] < 64, (rss_start, rounds)
