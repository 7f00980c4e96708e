"""Credits and concurrency over real channels: AccountService, credit-aware selection, holds and
charges around Generate, concurrency limits, several replicas, and a crash mid-stream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
import yaml
from conftest import ServerFactory, error_info, eventually, wait_until
from google.protobuf import json_format
from procs import ServerProcess
from switchboard.catalog import default_config_text, parse_config
from switchboard.ledger import Ledger
from switchboard.providers.simulated import SimulationProfile
from switchboard.server import ServerHandle
from switchboard.stores import open_store
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc

TEXT = catalog_pb2.MODALITY_TEXT


def config_with_test_plans(tmp_path: Path) -> str:
    """The default config plus plan `fifty` (50 credits, no concurrency limit) and `trio`
    (1,000 credits, three concurrent requests)."""
    config = parse_config(default_config_text(), "default.yaml")
    config.plans.add(id="fifty", monthly_credits=50, max_concurrent_requests=0)
    config.plans.add(id="trio", monthly_credits=1000, max_concurrent_requests=3)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(json_format.MessageToDict(config)))
    return str(path)


async def admin(port: int) -> tuple[grpc.aio.Channel, accounts_pb2_grpc.AccountServiceStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return channel, accounts_pb2_grpc.AccountServiceStub(channel)


def gen(account: str, request_id: str = "", **kw: object) -> router_pb2.GenerateRequest:
    kw.setdefault("modality", TEXT)
    return router_pb2.GenerateRequest(account_id=account, request_id=request_id, prompt="hello", **kw)  # type: ignore[arg-type]


async def run(stub: router_pb2_grpc.RouterServiceStub, req: router_pb2.GenerateRequest) -> router_pb2.Completion:
    last = None
    async for frame in stub.Generate(req, timeout=30):
        last = frame
    assert last is not None
    return last.completion


async def no_slots(handle: ServerHandle, account_id: str) -> bool:
    """Whether the account holds no concurrency slot."""
    return await handle.app.limiter.in_flight(account_id) == 0


async def drain(call: grpc.aio.UnaryStreamCall) -> None:
    """Read a stream that was started with read() to its end."""
    while await call.read() is not grpc.aio.EOF:
        pass


def journal_matches(ledger_url: str, config_path: str | None, account_id: str) -> tuple[int, int]:
    """(balance, journal sum) read straight from the store."""
    from switchboard.catalog import load_catalog  # noqa: PLC0415

    store = open_store(ledger_url)
    try:
        led = Ledger(store, load_catalog(config_path).plans)
        record = led.get(account_id)
        assert record is not None
        return record.balance + record.held, led.totals(account_id)[0] + record.held
    finally:
        store.close()


class TestAccountService:
    """The admin API over a real channel."""

    async def test_lifecycle(self, start_server: ServerFactory) -> None:
        """Create, top up (idempotently), change plan, read the ledger page by page."""
        handle, _ = await start_server(auto_create_accounts=False)
        channel, accounts = await admin(handle.port)
        created = (
            await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="acme"), timeout=5)
        ).account
        assert (created.plan_id, created.balance, created.allowance_credits) == ("free", 500, 500)
        assert created.period_end.seconds > created.period_start.seconds
        req = accounts_pb2.GrantCreditsRequest(account_id="acme", credits=250, idempotency_key="order-7")
        first = await accounts.GrantCredits(req, timeout=5)
        second = await accounts.GrantCredits(req, timeout=5)
        assert (first.applied, second.applied, second.account.balance, second.account.topup_credits) == (
            True,
            False,
            750,
            250,
        )
        moved = await accounts.UpdateAccountPlan(
            accounts_pb2.UpdateAccountPlanRequest(account_id="acme", plan_id="pro"), timeout=5
        )
        assert (moved.account.plan_id, moved.account.allowance_credits) == ("pro", 5000)
        page = await accounts.ListLedgerEntries(
            accounts_pb2.ListLedgerEntriesRequest(account_id="acme", page_size=2), timeout=5
        )
        assert [e.kind for e in page.entries] == [
            accounts_pb2.LEDGER_ENTRY_KIND_ALLOWANCE_GRANT,
            accounts_pb2.LEDGER_ENTRY_KIND_TOP_UP,
        ]
        rest = await accounts.ListLedgerEntries(
            accounts_pb2.ListLedgerEntriesRequest(account_id="acme", page_token=page.next_page_token), timeout=5
        )
        assert [e.amount for e in rest.entries] == [4500]
        assert rest.next_page_token == ""
        await channel.close()

    @pytest.mark.parametrize(
        ("call", "code", "reason"),
        [
            ("GetAccount", grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"),
            ("CreateAccountDup", grpc.StatusCode.ALREADY_EXISTS, "ACCOUNT_EXISTS"),
            ("BadPlan", grpc.StatusCode.NOT_FOUND, "PLAN_NOT_FOUND"),
            ("BadToken", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN"),
            ("NoKey", grpc.StatusCode.INVALID_ARGUMENT, "FIELD_REQUIRED"),
            ("KeyReused", grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED"),
        ],
    )
    async def test_errors(self, start_server: ServerFactory, call: str, code: grpc.StatusCode, reason: str) -> None:
        """Admin errors carry their code and reason."""
        handle, _ = await start_server(auto_create_accounts=False)
        channel, accounts = await admin(handle.port)
        await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="a"), timeout=5)
        await accounts.GrantCredits(
            accounts_pb2.GrantCreditsRequest(account_id="a", credits=1, idempotency_key="k"), timeout=5
        )
        calls = {
            "GetAccount": lambda: accounts.GetAccount(accounts_pb2.GetAccountRequest(account_id="zz"), timeout=5),
            "CreateAccountDup": lambda: accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(account_id="a"), timeout=5
            ),
            "BadPlan": lambda: accounts.UpdateAccountPlan(
                accounts_pb2.UpdateAccountPlanRequest(account_id="a", plan_id="gold"), timeout=5
            ),
            "BadToken": lambda: accounts.ListLedgerEntries(
                accounts_pb2.ListLedgerEntriesRequest(account_id="a", page_token="!!"), timeout=5
            ),
            "NoKey": lambda: accounts.GrantCredits(
                accounts_pb2.GrantCreditsRequest(account_id="a", credits=5), timeout=5
            ),
            "KeyReused": lambda: accounts.GrantCredits(
                accounts_pb2.GrantCreditsRequest(account_id="a", credits=2, idempotency_key="k"), timeout=5
            ),
        }
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await calls[call]()
        assert (err.value.code(), error_info(err.value).reason) == (code, reason)
        await channel.close()

    async def test_unknown_account_is_refused_by_default(self, start_server: ServerFactory) -> None:
        """Without auto-creation, Generate for an unknown account is NOT_FOUND: no free allowance
        for invented ids."""
        _, stub = await start_server(auto_create_accounts=False)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(stub, gen("invented"))
        assert error_info(err.value).reason == "ACCOUNT_NOT_FOUND"


class TestCreditAwareSelection:
    """The balance steers automatic selection; a pinned model is never swapped for a cheaper one."""

    async def test_steps_down_and_pinned_error(self, start_server: ServerFactory) -> None:
        """Pro with 2 credits left gets a Lite model; pinning an Advanced model is INSUFFICIENT_CREDITS."""
        handle, stub = await start_server(auto_create_accounts=False)
        channel, accounts = await admin(handle.port)
        await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="p", plan_id="pro"), timeout=5)
        led = handle.app.ledger
        await led.hold("p", "spend", 4998, 10**15)
        await led.settle("p", "spend", 4998)
        decision = (await stub.SelectModel(router_pb2.SelectModelRequest(request=gen("p")), timeout=5)).decision
        assert decision.model.tier == catalog_pb2.TIER_LITE
        assert decision.start_tier == catalog_pb2.TIER_STANDARD
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SelectModel(
                router_pb2.SelectModelRequest(request=gen("p", pinned_model_id="gpt-5.5")), timeout=5
            )
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(err.value)
        assert info.reason == "INSUFFICIENT_CREDITS"
        assert (info.metadata["balance"], info.metadata["cheapest_price"]) == ("2", "10")
        completion = await run(stub, gen("p", "r1"))
        assert (completion.credits_charged, completion.balance_remaining) == (1, 1)
        await channel.close()


class TestSettlement:
    """Each way a stream ends settles its hold by the documented rule."""

    async def test_cancel_before_output_releases(self, start_server: ServerFactory) -> None:
        """Cancelled while waiting for the first token: nothing charged, nothing held, slot back."""
        handle, stub = await start_server(simulation=SimulationProfile(time_to_first_token_s=5))
        call = stub.Generate(gen("c1", "r1"), timeout=30)
        first = await call.read()
        assert first.WhichOneof("event") == "decision"
        call.cancel()
        led = handle.app.ledger
        await wait_until(lambda: handle.app.simulator.active_streams == 0)
        await eventually(lambda: no_slots(handle, "c1"))
        record = await led.get("c1")
        assert record is not None
        assert (record.balance, record.held) == (500, 0)

    async def test_cancel_after_output_charges_delivered(self, start_server: ServerFactory) -> None:
        """Cancelled after output: the per-request price is charged once; the hold is closed."""
        handle, stub = await start_server(simulation=SimulationProfile(tokens=500, inter_token_s=0.01))
        call = stub.Generate(gen("c2", "r1", pinned_model_id="gpt-5.4"), timeout=30)
        deltas = 0
        async for frame in call:
            deltas += frame.WhichOneof("event") == "delta"
            if deltas == 3:
                break
        call.cancel()
        led = handle.app.ledger

        async def settled() -> bool:
            record = await led.get("c2")
            return record is not None and record.held == 0

        for _ in range(200):
            if await settled():
                break
            await asyncio.sleep(0.01)
        record = await led.get("c2")
        assert record is not None
        assert (record.balance, record.held) == (490, 0)
        assert (await led.totals("c2"))[0] == 490

    async def test_provider_failure_mid_stream_is_not_billed(self, start_server: ServerFactory) -> None:
        """STREAM_INTERRUPTED releases the hold."""
        profile = SimulationProfile(tokens=10, fail_mid_stream=frozenset({"*"}))
        handle, stub = await start_server(simulation=profile)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(stub, gen("c3", "r1"))
        assert error_info(err.value).reason == "STREAM_INTERRUPTED"
        led = handle.app.ledger
        record = await led.get("c3")
        assert record is not None
        assert (record.balance, record.held) == (500, 0)

    async def test_fallback_to_dearer_model_extends_hold(self, start_server: ServerFactory) -> None:
        """Pro text falls back past every Standard model to Advanced: charged the Advanced price."""
        failing = frozenset({"gemini-3-flash-preview", "gpt-5.4-mini", "claude-haiku-4-5"})
        handle, stub = await start_server(simulation=SimulationProfile(tokens=3, fail_before_first=failing))
        channel, accounts = await admin(handle.port)
        await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="f", plan_id="pro"), timeout=5)
        completion = await run(stub, gen("f", "r1"))
        assert (completion.model_id, completion.attempts, completion.credits_charged) == (
            "gemini-3.1-pro-preview",
            4,
            10,
        )
        assert completion.balance_remaining == 4990
        await channel.close()


class TestConcurrency:
    """Plan limits on streams in flight."""

    async def test_limit_and_slots_return(self, start_server: ServerFactory, tmp_path: Path) -> None:
        """trio allows three streams; the fourth is CONCURRENCY_LIMIT; slots return on completion,
        cancellation and deadline."""
        slow = SimulationProfile(tokens=300, inter_token_s=0.01)
        handle, stub = await start_server(config_path=config_with_test_plans(tmp_path), simulation=slow)
        channel, accounts = await admin(handle.port)
        await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="t", plan_id="trio"), timeout=5)
        calls = [stub.Generate(gen("t", f"r{i}"), timeout=0.5 if i == 2 else 30) for i in range(3)]
        for c in calls:
            await c.read()
        got = await accounts.GetAccount(accounts_pb2.GetAccountRequest(account_id="t"), timeout=5)
        assert got.account.requests_in_flight == 3
        assert got.account.held_credits == 3
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(stub, gen("t", "r-over"))
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(err.value).reason == "CONCURRENCY_LIMIT"
        calls[0].cancel()
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await drain(calls[2])
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await drain(calls[1])
        await eventually(lambda: no_slots(handle, "t"))
        assert (await run(stub, gen("t", "r-after"))).credits_charged == 1
        await channel.close()

    @pytest.mark.parametrize("backend", ["sqlite", "postgres"])
    async def test_200_streams_against_50_credits(
        self, start_server: ServerFactory, tmp_path: Path, backend: str, request: pytest.FixtureRequest
    ) -> None:
        """200 concurrent Generate calls against 50 credits: 50 complete, the rest are refused,
        nothing is overspent, and the ledger sums to the balance."""
        ledger = f"sqlite:{tmp_path / 'l.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_postgres")
        config = config_with_test_plans(tmp_path)
        handle, stub = await start_server(
            config_path=config, ledger=ledger, simulation=SimulationProfile(tokens=5, inter_token_s=0.005)
        )
        channel, accounts = await admin(handle.port)
        await accounts.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="x", plan_id="fifty"), timeout=5)

        async def one(i: int) -> str:
            try:
                c = await run(stub, gen("x", f"r{i}"))
            except grpc.aio.AioRpcError as exc:
                return error_info(exc).reason
            return f"charged {c.credits_charged}"

        outcomes = await asyncio.gather(*(one(i) for i in range(200)))
        assert outcomes.count("charged 1") == 50
        assert set(outcomes) == {"charged 1", "INSUFFICIENT_CREDITS"}
        got = (await accounts.GetAccount(accounts_pb2.GetAccountRequest(account_id="x"), timeout=5)).account
        assert (got.balance, got.held_credits) == (0, 0)
        led = handle.app.ledger
        assert (await led.totals("x"))[0] == 0
        await channel.close()


def Replica(tmp: Path, name: str, *args: str) -> ServerProcess:
    """One replica: a single-process server."""
    return ServerProcess(tmp, name, "--workers", "1", *args)


class TestReplicas:
    """Two processes sharing PostgreSQL and Redis keep one balance and one concurrency limit."""

    @pytest.mark.parametrize("limiter", ["redis", "ledger"])
    async def test_two_replicas(
        self, tmp_path: Path, fresh_postgres: str, limiter: str, request: pytest.FixtureRequest
    ) -> None:
        """A global limit of three across both replicas, and no overspending across them, with the
        limit kept in Redis or in the shared ledger."""
        config = config_with_test_plans(tmp_path)
        common = [
            "--config",
            config,
            "--ledger",
            fresh_postgres,
            "--limiter",
            request.getfixturevalue("redis_url") if limiter == "redis" else "ledger",
            "--sim-ttft-ms",
            "0",
            "--sim-inter-token-ms",
            "10",
            "--sim-tokens",
            "100",
        ]
        a = Replica(tmp_path, "a", *common)
        b = Replica(tmp_path, "b", *common)
        try:
            ca = grpc.aio.insecure_channel(f"127.0.0.1:{a.port}")
            cb = grpc.aio.insecure_channel(f"127.0.0.1:{b.port}")
            sa, sb = router_pb2_grpc.RouterServiceStub(ca), router_pb2_grpc.RouterServiceStub(cb)
            acc = accounts_pb2_grpc.AccountServiceStub(ca)
            await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="t", plan_id="trio"), timeout=10)
            streams = [
                sa.Generate(gen("t", "s1"), timeout=30),
                sb.Generate(gen("t", "s2"), timeout=30),
                sa.Generate(gen("t", "s3"), timeout=30),
            ]
            for s in streams:
                await s.read()
            for stub in (sa, sb):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await run(stub, gen("t", f"over-{id(stub)}"))
                assert error_info(err.value).reason == "CONCURRENCY_LIMIT"
            for s in streams:
                s.cancel()
            await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="x", plan_id="fifty"), timeout=10)

            async def one(i: int) -> str:
                try:
                    await run(sa if i % 2 else sb, gen("x", f"r{i}", pinned_model_id="gpt-5.4-nano"))
                except grpc.aio.AioRpcError as exc:
                    return error_info(exc).reason
                return "OK"

            results = await asyncio.gather(*(one(i) for i in range(120)))
            assert results.count("OK") == 50
            assert set(results) == {"OK", "INSUFFICIENT_CREDITS"}
            got = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="x"), timeout=10)).account
            assert (got.balance, got.held_credits) == (0, 0)
            await ca.close()
            await cb.close()
        finally:
            a.stop()
            b.stop()
        assert journal_matches(fresh_postgres, config, "x") == (0, 0)


class TestCrash:
    """A server killed mid-stream leaves no credit lost or held once the hold expires."""

    @pytest.mark.parametrize("limiter", ["redis", "ledger"])
    async def test_sigkill_mid_stream(self, tmp_path: Path, limiter: str, request: pytest.FixtureRequest) -> None:
        """SIGKILL while streaming; a new server on the same ledger releases the hold after its
        expiry, and the slot (a Redis lease or a ledger slot) comes back when it lapses."""
        ledger = f"sqlite:{tmp_path / 'crash.db'}"
        args = [
            "--ledger",
            ledger,
            "--limiter",
            request.getfixturevalue("redis_url") if limiter == "redis" else "ledger",
            "--auto-create-accounts",
            "--hold-ttl",
            "1",
            "--lease",
            "1",
            "--sweep-interval",
            "0.2",
            "--sim-ttft-ms",
            "0",
            "--sim-inter-token-ms",
            "20",
            "--sim-tokens",
            "1000",
        ]
        first = Replica(tmp_path, "first", *args)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{first.port}")
        stub = router_pb2_grpc.RouterServiceStub(channel)
        call = stub.Generate(gen("k", "r1", pinned_model_id="gpt-5.4"), timeout=30)
        await call.read()
        await call.read()
        store = open_store(ledger)
        try:
            from switchboard.catalog import load_catalog  # noqa: PLC0415

            led = Ledger(store, load_catalog(None).plans)
            held = led.get("k")
            assert held is not None
            assert (held.balance, held.held) == (490, 10)
        finally:
            store.close()
        first.stop(signal.SIGKILL)
        call.cancel()
        await channel.close()
        second = Replica(tmp_path, "second", *args)
        try:
            c2 = grpc.aio.insecure_channel(f"127.0.0.1:{second.port}")
            acc = accounts_pb2_grpc.AccountServiceStub(c2)
            deadline = time.monotonic() + 15
            while True:
                got = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="k"), timeout=5)).account
                if got.held_credits == 0 and got.requests_in_flight == 0:
                    break
                assert time.monotonic() < deadline, got
                await asyncio.sleep(0.2)
            assert got.balance == 500
            await c2.close()
        finally:
            second.stop()
        assert journal_matches(ledger, None, "k") == (500, 500)
        log = (tmp_path / "second.log").read_text()
        assert any(
            json.loads(line).get("event") == "holds_expired" for line in log.splitlines() if line.startswith("{")
        )


assert os.sep == "/"
