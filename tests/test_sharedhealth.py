"""Model health shared by every process: real Redis, SQLite and PostgreSQL stores, and two real
server processes that must agree."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from conftest import eventually
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import ServerProcess
from servers import free_port
from structlog.testing import capture_logs
from switchboard.health import CircuitBreaker
from switchboard.sharedhealth import LedgerHealthStore, RedisHealthStore, SharedHealth
from switchboard.stores import PostgresStore, SqliteStore
from switchboard.types import BreakerState, HealthStore
from switchboard.v1 import catalog_pb2, router_pb2, router_pb2_grpc

AGREEMENT_BOUND_S = 5.0
"""What the tests allow for every process to agree: the sync interval (0.5 s) plus a store round
trip, with a wide margin for a loaded machine."""


@pytest.fixture(params=["redis", "sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[HealthStore, HealthStore]]:
    """Two store clients on one shared store, as two processes would have."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        key = f"health-{time.monotonic_ns()}"
        pair: tuple[HealthStore, HealthStore] = (RedisHealthStore(url, key), RedisHealthStore(url, key))
        yield pair
        for s in pair:
            await s.close()
        return
    if request.param == "sqlite":
        ledgers: tuple[SqliteStore | PostgresStore, ...] = (
            SqliteStore(tmp_path / "l.db"),
            SqliteStore(tmp_path / "l.db"),
        )
    else:
        dsn = request.getfixturevalue("fresh_postgres")
        ledgers = (PostgresStore(dsn, workers=2), PostgresStore(dsn, workers=2))
    yield LedgerHealthStore(ledgers[0]), LedgerHealthStore(ledgers[1])
    for led in ledgers:
        led.close()


def shared(store: HealthStore) -> SharedHealth:
    return SharedHealth(CircuitBreaker(threshold=3, cooldown_s=60), store, interval_s=0.05)


class TestReplace:
    """The local breaker takes the shared state, except what it counted since."""

    def test_takes_the_shared_state_and_keeps_unsent_counts(self) -> None:
        """Cool-downs found in the store start here; models in ``keep`` keep their own count;
        models the store no longer lists recover."""
        now = [100.0]
        breaker = CircuitBreaker(threshold=3, cooldown_s=60, clock=lambda: now[0])
        changes: list[tuple[str, bool]] = []
        breaker.on_change = lambda model, serving: changes.append((model, serving))
        breaker.record_failure("mine")
        breaker.record_failure("mine")
        breaker.replace({"x": BreakerState(3, 10_000), "mine": BreakerState(1)}, keep={"mine"})
        assert not breaker.is_available("x")
        assert breaker.cooldown_remaining_ms("x") == 10_000
        assert breaker.failures("mine") == 2  # not replaced by the store's older count
        assert changes == [("x", False)]
        breaker.replace({})
        assert breaker.is_available("x")
        assert breaker.failures("mine") == 0
        assert changes == [("x", False), ("x", True)]


class TestSharedBreaker:
    """A failure counted by any process counts for all of them."""

    async def test_failures_add_up_across_processes(self, stores: tuple[HealthStore, HealthStore]) -> None:
        """Two failures in one process and one in another cool the model down in both; a success
        anywhere brings it back everywhere."""
        a, b = shared(stores[0]), shared(stores[1])
        changes: list[tuple[str, bool]] = []
        a.on_change = lambda model, serving: changes.append((model, serving))
        a.record_failure("m")
        a.record_failure("m")
        await a.sync()
        b.record_failure("m")  # the third failure, counted in another process
        await b.sync()
        assert not b.is_available("m")
        assert a.is_available("m")  # a has not read the store yet
        await a.sync()
        assert not a.is_available("m")
        assert 50_000 < a.cooldown_remaining_ms("m") <= 60_000
        assert changes == [("m", False)]
        assert b.is_available("other")
        b.record_success("m")
        assert b.is_available("m")
        await b.sync()
        await a.sync()
        assert a.is_available("m")
        assert changes == [("m", False), ("m", True)]

    async def test_success_of_a_healthy_model_writes_nothing(self, stores: tuple[HealthStore, HealthStore]) -> None:
        """Successes of a model with no failures leave nothing to send to the store."""
        a = shared(stores[0])
        for _ in range(100):
            a.record_success("m")
        assert not a._pending
        a.record_failure("m")
        a.record_success("m")
        assert list(a._pending) == [("failure", "m"), ("success", "m")]
        await a.sync()
        assert await stores[1].snapshot() == {}


class RestartableRedis:
    """A Redis the test can stop and start again on the same port."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@contextmanager
def restartable_redis() -> Iterator[RestartableRedis]:
    """A started RestartableRedis, stopped at the end."""
    redis = RestartableRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class TestStoreLost:
    """Without the shared store each process keeps its own health; callers see no error."""

    async def test_redis_goes_away_and_comes_back(self) -> None:
        """Redis stops: one warning, local counting goes on; Redis returns: shared state again."""
        with restartable_redis() as redis, capture_logs() as logs:
            health = shared(RedisHealthStore(redis.url, timeout_s=0.5))
            await eventually(lambda: _ping(redis.url), within=10)
            health.start()
            await eventually(lambda: _true(health.syncs > 0), within=10)
            redis.stop()
            for _ in range(3):
                health.record_failure("m")
            assert not health.is_available("m")  # counted here at once, store or not
            await eventually(lambda: _true(not health.shared), within=10)
            await asyncio.sleep(0.5)  # several more failed syncs: still one warning
            assert not health.is_available("m")
            lost = [e for e in logs if e["event"] == "model_health_not_shared"]
            assert len(lost) == 1
            redis.start()
            await eventually(lambda: _true(health.shared), within=20)
            assert health.is_available("m")  # the store's state (no failures) wins again
            assert [e["event"] for e in logs].count("model_health_shared") == 1
            await health.close()


async def _true(value: bool) -> bool:
    return value


async def _ping(url: str) -> bool:
    import redis.asyncio as aioredis  # noqa: PLC0415
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

    client = aioredis.from_url(url)
    try:
        return bool(await client.ping())
    except RedisConnectionError:
        return False
    finally:
        await client.aclose()


# ------------------------------------------------------------- two real server processes


async def _views(target: str, model_id: str) -> tuple[bool, bool, bool]:
    """Whether ListModels, the health service and automatic selection of the server at
    ``target`` each say ``model_id`` is cooling down."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        listing = {m.model.id: m for m in (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models}
        check = health_pb2.HealthCheckRequest(service=f"switchboard.model/{model_id}")
        status = (await health_pb2_grpc.HealthStub(channel).Check(check, timeout=5)).status
        auto = router_pb2.GenerateRequest(account_id="acct", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")
        chosen = (await stub.SelectModel(router_pb2.SelectModelRequest(request=auto), timeout=5)).decision.model.id
    return (
        listing[model_id].health == router_pb2.MODEL_HEALTH_COOLING_DOWN,
        status == health_pb2.HealthCheckResponse.NOT_SERVING,
        chosen != model_id,
    )


async def _fail_once(target: str, model_id: str, n: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        req = router_pb2.GenerateRequest(
            account_id="acct",
            modality=catalog_pb2.MODALITY_TEXT,
            prompt="hi",
            pinned_model_id=model_id,
            request_id=f"fail-{n}",
        )
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in stub.Generate(req, timeout=20):
                pass


class TestTwoServers:
    """Two server processes sharing a store agree on model health within a bounded delay."""

    @pytest.mark.parametrize("shared_by", ["sqlite", "redis", "postgres"])
    async def test_cooldown_seen_by_both(self, tmp_path: Path, shared_by: str, request: pytest.FixtureRequest) -> None:
        """Two failures on one server and one on the other cool the model down on both: ListModels,
        the health service and automatic selection all say so, on both, within the bound."""
        args = ["--workers", "1", "--auto-create-accounts", "--sim-fail-before", "*", "--breaker-failures", "3"]
        args += ["--breaker-cooldown", "120", "--sim-ttft-ms", "0"]
        if shared_by == "sqlite":
            args += ["--ledger", f"sqlite:{tmp_path / 'shared.db'}"]
        elif shared_by == "redis":
            args += ["--ledger", f"sqlite:{tmp_path / 'shared.db'}", "--limiter", request.getfixturevalue("redis_url")]
            request.getfixturevalue("redis_url")
        else:
            args += ["--ledger", request.getfixturevalue("fresh_postgres")]
        a = ServerProcess(tmp_path, "a", *args)
        b = ServerProcess(tmp_path, "b", *args)
        try:
            model_id = await _chosen(b.target)
            assert await _views(a.target, model_id) == (False, False, False)
            await _fail_once(a.target, model_id, 1)
            await _fail_once(a.target, model_id, 2)
            await _fail_once(b.target, model_id, 3)
            counted = time.monotonic()
            agreed: dict[str, float] = {}
            while len(agreed) < 2:
                for name, server in (("a", a), ("b", b)):
                    if name not in agreed and await _views(server.target, model_id) == (True, True, True):
                        agreed[name] = time.monotonic() - counted
                assert time.monotonic() - counted < AGREEMENT_BOUND_S, f"not agreed: {agreed}"
                await asyncio.sleep(0.01)
            print(f"\nagreement delay via {shared_by}: a {agreed['a'] * 1000:.0f} ms, b {agreed['b'] * 1000:.0f} ms")
        finally:
            a.stop()
            b.stop()


async def _chosen(target: str) -> str:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        auto = router_pb2.GenerateRequest(account_id="acct", modality=catalog_pb2.MODALITY_TEXT, prompt="hi")
        return str((await stub.SelectModel(router_pb2.SelectModelRequest(request=auto), timeout=5)).decision.model.id)
