"""Shared fixtures: a real Switchboard server on port 0 and a real channel to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from servers import postgres_server, redis_server
from switchboard.app import build_app
from switchboard.providers.simulated import SimulationProfile
from switchboard.server import ServerHandle, create_server
from switchboard.settings import Settings
from switchboard.types import Provider
from switchboard.v1 import router_pb2_grpc

FAST = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.0, tokens=12)
"""A simulated provider with no delays, so tests run fast."""

ServerFactory = Callable[..., Awaitable[tuple[ServerHandle, router_pb2_grpc.RouterServiceStub]]]


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start servers on 127.0.0.1:0 and stop them after. Defaults: the seed catalog, a fast
    simulator, a fresh SQLite ledger per server, and accounts created at first use."""
    started: list[tuple[ServerHandle, grpc.aio.Channel]] = []

    async def start(
        adapters: Mapping[str, Provider] | None = None, **overrides: object
    ) -> tuple[ServerHandle, router_pb2_grpc.RouterServiceStub]:
        base = Settings(
            listen="127.0.0.1:0",
            simulation=FAST,
            ledger=f"sqlite:{tmp_path / f'ledger-{len(started)}.db'}",
            auto_create_accounts=True,
        )
        settings = replace(base, **overrides)  # type: ignore[arg-type]
        handle = await create_server(settings, build_app(settings, adapters) if adapters else None)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        started.append((handle, channel))
        return handle, router_pb2_grpc.RouterServiceStub(channel)

    yield start
    for handle, channel in started:
        await channel.close()
        await handle.stop(0)


@pytest.fixture
async def stub(start_server: ServerFactory) -> router_pb2_grpc.RouterServiceStub:
    """A stub connected to a server with the default settings."""
    _, stub = await start_server()
    return stub


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The single ErrorInfo a Switchboard error carries (fails the test if there is not exactly one)."""
    status = rpc_status.from_call(exc)
    assert status is not None, f"no status details on {exc.code()}: {exc.details()}"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo, got {len(infos)}"
    assert infos[0].domain == "switchboard"
    return infos[0]


async def wait_until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the whole session."""
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server for the whole session."""
    with redis_server() as url:
        yield url


@pytest.fixture
def fresh_postgres(postgres_dsn: str) -> str:
    """The DSN of a new, empty database on the session's PostgreSQL server."""
    import psycopg  # noqa: PLC0415

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_dsn.rsplit("/", 1)[0] + f"/{name}"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Await ``check`` every 20 ms until it returns True; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
