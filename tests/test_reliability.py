"""Reliability over real channels and real processes: bounded money fields, bounded parsing,
settlement around failures and shutdown, lost holds, backend outages, workers, ports, TLS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import servers
from certs import Authority
from conftest import ServerFactory, error_info
from grpc_health.v1 import health_pb2, health_pb2_grpc
from procs import BIN, ServerProcess
from structlog.testing import capture_logs
from switchboard.catalog import load_catalog
from switchboard.errors import BackendUnavailableError
from switchboard.ledger import EntryKind, Ledger
from switchboard.providers.simulated import SimulationProfile
from switchboard.stores import open_store
from switchboard.types import (
    Finished,
    FinishReason,
    GenerationRequest,
    Model,
    ProviderEvent,
    TextChunk,
    Usage,
)
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2, router_pb2_grpc
from test_credits import config_with_test_plans, journal_matches
from usecase import make_app, request, run_all, until

TEXT = catalog_pb2.MODALITY_TEXT
INT64_MAX = 2**63 - 1


def gen(account: str, request_id: str = "", **kw: object) -> router_pb2.GenerateRequest:
    kw.setdefault("modality", TEXT)
    return router_pb2.GenerateRequest(account_id=account, request_id=request_id, prompt="hello", **kw)  # type: ignore[arg-type]


async def reason_of(awaitable: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await awaitable  # type: ignore[misc]
    info = error_info(err.value)
    return err.value.code(), info.reason, dict(info.metadata)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'money.db'}"
    return str(request.getfixturevalue("fresh_postgres"))


class TestMoneyBounds:
    """Money fields are bounded at the API and the ledger's sums stay exact integers."""

    async def test_huge_grant_is_refused_and_the_account_stays_sound(
        self, start_server: ServerFactory, ledger_url: str
    ) -> None:
        """A grant of 2^63-1 is INVALID_ARGUMENT naming `credits` and changes nothing; grants up
        to the limit work; the top-up balance has a ceiling; the journal sums to the balance."""
        handle, stub = await start_server(ledger=ledger_url)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="m"), timeout=10)
        for credits in (INT64_MAX, 10**12 + 1):
            code, reason, meta = await reason_of(
                acc.GrantCredits(
                    accounts_pb2.GrantCreditsRequest(account_id="m", credits=credits, idempotency_key=f"k{credits}"),
                    timeout=10,
                )
            )
            assert (code, reason, meta.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", "credits")
        for i in range(1000):
            req = accounts_pb2.GrantCreditsRequest(account_id="m", credits=10**12, idempotency_key=f"big-{i}")
            await acc.GrantCredits(req, timeout=10)
        req = accounts_pb2.GrantCreditsRequest(account_id="m", credits=1, idempotency_key="one-more")
        code, reason, _ = await reason_of(acc.GrantCredits(req, timeout=10))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BALANCE_LIMIT_EXCEEDED")
        got = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="m"), timeout=10)).account
        assert got.topup_credits == 10**15
        assert isinstance(got.balance, int)
        assert got.balance == 500 + 10**15
        async for frame in stub.Generate(gen("m", "r1", pinned_model_id="gpt-5.4-nano"), timeout=30):
            last = frame
        assert last.completion.balance_remaining == got.balance - last.completion.credits_charged
        led = handle.app.ledger
        total, _, _ = await led.totals("m")
        record = await led.get("m")
        assert record is not None
        assert total == record.balance
        await channel.close()

    async def test_huge_cost_cap_is_refused(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """max_credits above 10^12 is INVALID_ARGUMENT naming the field."""
        req = router_pb2.SelectModelRequest(request=gen("c", max_credits=INT64_MAX))
        code, reason, meta = await reason_of(stub.SelectModel(req, timeout=10))
        assert (code, reason, meta["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            "request.max_credits",
        )


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


class TestBoundedParsing:
    """Caller-controlled JSON and page tokens are parsed within bounds: INVALID_ARGUMENT, never INTERNAL."""

    @pytest.mark.parametrize(
        ("options", "field"),
        [
            (
                router_pb2.GenerationOptions(structured_output=router_pb2.StructuredOutput(json_schema="[" * 2000)),
                "request.options.structured_output.json_schema",
            ),
            (
                router_pb2.GenerationOptions(tools=[router_pb2.Tool(name="t", parameters_json_schema='{"a":' * 2000)]),
                "request.options.tools[0].parameters_json_schema",
            ),
        ],
    )
    async def test_deep_json_is_invalid_field(
        self, stub: router_pb2_grpc.RouterServiceStub, options: router_pb2.GenerationOptions, field: str
    ) -> None:
        """A schema nested 2,000 deep is INVALID_FIELD naming it."""
        req = router_pb2.SelectModelRequest(request=gen("j", options=options))
        code, reason, meta = await reason_of(stub.SelectModel(req, timeout=10))
        assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", field)

    async def test_schema_at_the_depth_limit_is_accepted(self, stub: router_pb2_grpc.RouterServiceStub) -> None:
        """Nesting up to the limit (64) is fine, and brackets inside strings do not count."""
        schema = (
            '{"a":' * 63 + '{"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}' + "}" * 63
        )
        options = router_pb2.GenerationOptions(structured_output=router_pb2.StructuredOutput(json_schema=schema))
        resp = await stub.SelectModel(router_pb2.SelectModelRequest(request=gen("j", options=options)), timeout=10)
        assert resp.decision.model.id

    @pytest.mark.parametrize("text", ["seq:" + "9" * 30, "seq:99999999999999999999", "seq:-5", "seq: 5", "seq:+5"])
    async def test_bad_page_tokens(self, start_server: ServerFactory, text: str) -> None:
        """A huge number, a negative one or a sign is INVALID_PAGE_TOKEN."""
        handle, _ = await start_server()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="p"), timeout=10)
        req = accounts_pb2.ListLedgerEntriesRequest(account_id="p", page_token=token(text))
        code, reason, meta = await reason_of(acc.ListLedgerEntries(req, timeout=10))
        assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", "page_token")
        ok = await acc.ListLedgerEntries(
            accounts_pb2.ListLedgerEntriesRequest(account_id="p", page_token=token(f"seq:{2**63 - 1}")), timeout=10
        )
        assert list(ok.entries) == []
        await channel.close()


class LyingProvider:
    """A provider that streams one chunk and then reports an absurd token count."""

    name = "lying"
    simulated = False

    def supports(self, model: Model) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def stream(self, model: Model, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        yield TextChunk("hello")
        yield Finished(FinishReason.STOP, Usage(input_tokens=3, output_tokens=2**64))


def stored_account(path: Path, account_id: str) -> tuple[int, int, int, list[EntryKind]]:
    """(balance, held, journal sum, entry kinds) read straight from an SQLite ledger file."""
    store = open_store(f"sqlite:{path}")
    try:
        led = Ledger(store, load_catalog(None).plans)
        record = led.get(account_id)
        assert record is not None
        kinds = [e.kind for e in led.entries(account_id, 0, 1000)]
        return record.balance, record.held, led.totals(account_id)[0], kinds
    finally:
        store.close()


class TestNoChargeForWhatFailed:
    """A client sees the completion for exactly what was charged, or is not charged."""

    async def test_a_completion_that_cannot_be_reported_is_not_charged(
        self, start_server: ServerFactory, tmp_path: Path
    ) -> None:
        """A provider whose final usage cannot be priced or reported ends the stream with an error
        that is not INTERNAL, and nothing is charged."""
        catalog = load_catalog(None)
        adapters = {m.adapter: LyingProvider() for m in catalog.models}
        handle, stub = await start_server(adapters=adapters)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Generate(gen("l", "r1", pinned_model_id="gpt-5.4-nano"), timeout=30):
                pass
        assert err.value.code() is not grpc.StatusCode.INTERNAL
        assert error_info(err.value).reason == "STREAM_INTERRUPTED"
        record = await handle.app.ledger.get("l")
        assert record is not None
        assert (record.balance, record.held) == (500, 0)


class TestShutdownCut:
    """Streams the server cuts at the end of its shutdown grace are not charged and say why."""

    async def test_cut_stream_is_unavailable_and_free(self, start_server: ServerFactory, tmp_path: Path) -> None:
        """After output, a stream outliving the grace ends UNAVAILABLE SERVER_SHUTTING_DOWN; the
        hold is released, nothing charged, and the journal sums to the balance."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.05, tokens=400)
        handle, stub = await start_server(simulation=slow)
        call = stub.Generate(gen("s", "r1", pinned_model_id="gpt-5.4-nano"), timeout=30)
        kinds = [(await call.read()).WhichOneof("event") for _ in range(3)]
        assert kinds == ["decision", "delta", "delta"]
        await asyncio.wait_for(handle.stop(0.5), 20)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while await call.read() is not grpc.aio.EOF:
                pass
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value).reason == "SERVER_SHUTTING_DOWN"
        balance, held, total, entries = stored_account(tmp_path / "ledger-0.db", "s")
        assert (balance, held, total) == (500, 0, 500)
        assert EntryKind.CHARGE not in entries

    @pytest.mark.parametrize("workers", ["1", "2"])
    async def test_sigterm_cuts_without_charge(self, tmp_path: Path, workers: str) -> None:
        """SIGTERM to a real server (one worker, or a supervisor of two): a stream outliving the
        1 s grace ends UNAVAILABLE SERVER_SHUTTING_DOWN, the process exits 0, nothing is charged."""
        db = tmp_path / "term.db"
        s = ServerProcess(
            tmp_path, "term", "--workers", workers, "--grace", "1", "--ledger", f"sqlite:{db}",
            "--auto-create-accounts", "--sim-ttft-ms", "0", "--sim-inter-token-ms", "50", "--sim-tokens", "2000",
        )  # fmt: skip
        channel = grpc.aio.insecure_channel(s.target)
        try:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            call = stub.Generate(gen("t", "r1", pinned_model_id="gpt-5.4-nano"), timeout=60)
            assert [(await call.read()).WhichOneof("event") for _ in range(2)] == ["decision", "delta"]
            s.proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert (err.value.code(), error_info(err.value).reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "SERVER_SHUTTING_DOWN",
            )
            assert s.proc.wait(timeout=30) == 0
        finally:
            await channel.close()
            s.stop()
        balance, held, total, entries = stored_account(db, "t")
        assert (balance, held, total) == (500, 0, 500)
        assert EntryKind.CHARGE not in entries


class TestPausedReplica:
    """A replica paused past its holds' and slots' life does not finish its streams free, and the
    concurrency limit holds across the pause."""

    async def test_sigstop_past_the_lease(self, tmp_path: Path, fresh_postgres: str) -> None:
        """Replica A runs 3 streams (the plan's limit) and is stopped; B sweeps A's holds, its
        slots lapse, and B starts 3 streams. When A resumes, its streams end UNAVAILABLE HOLD_LOST
        and are not charged; B's keep running; the journal sums to the balance."""
        config = config_with_test_plans(tmp_path)
        common = [
            "--workers", "1", "--config", config, "--ledger", fresh_postgres, "--limiter", "ledger",
            "--hold-ttl", "1", "--lease", "1", "--sweep-interval", "0.2",
            "--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "400",
        ]  # fmt: skip
        a = ServerProcess(tmp_path, "a", *common)
        b = ServerProcess(tmp_path, "b", *common)
        ca, cb = grpc.aio.insecure_channel(a.target), grpc.aio.insecure_channel(b.target)
        try:
            sa, sb = router_pb2_grpc.RouterServiceStub(ca), router_pb2_grpc.RouterServiceStub(cb)
            acc = accounts_pb2_grpc.AccountServiceStub(cb)
            await acc.CreateAccount(accounts_pb2.CreateAccountRequest(account_id="t", plan_id="trio"), timeout=10)
            on_a = [sa.Generate(gen("t", f"a{i}", pinned_model_id="gpt-5.4-nano"), timeout=60) for i in range(3)]
            for call in on_a:
                assert (await call.read()).WhichOneof("event") == "decision"
                assert (await call.read()).WhichOneof("event") == "delta"
            os.kill(a.proc.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(3.0)  # three hold and lease lives: B's sweeper releases A's holds
                on_b = [sb.Generate(gen("t", f"b{i}", pinned_model_id="gpt-5.4-nano"), timeout=60) for i in range(3)]
                for call in on_b:
                    assert (await call.read()).WhichOneof("event") == "decision"
            finally:
                os.kill(a.proc.pid, signal.SIGCONT)
            for call in on_a:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    while (frame := await call.read()) is not grpc.aio.EOF:
                        assert frame.WhichOneof("event") != "completion", "a stream finished after its hold was swept"
                assert (err.value.code(), error_info(err.value).reason) == (grpc.StatusCode.UNAVAILABLE, "HOLD_LOST")
            for call in on_b:
                assert (await call.read()).WhichOneof("event") == "delta"
            code, reason, _ = await reason_of(sb.Generate(gen("t", "over"), timeout=10).read())
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "CONCURRENCY_LIMIT")
            for call in on_b:
                call.cancel()
            entries = (
                await acc.ListLedgerEntries(
                    accounts_pb2.ListLedgerEntriesRequest(account_id="t", page_size=500), timeout=10
                )
            ).entries
            for i in range(3):
                kinds = [e.kind for e in entries if e.request_id == f"a{i}"]
                assert accounts_pb2.LEDGER_ENTRY_KIND_CHARGE not in kinds
        finally:
            await ca.close()
            await cb.close()
            a.stop()
            b.stop()
        balance, total = journal_matches(fresh_postgres, config, "t")
        assert balance == total


class TestTlsStartup:
    """TLS files that do not work stop start-up with a message naming the file and the problem."""

    def test_mismatched_key_and_garbage_pem(self, tmp_path: Path) -> None:
        """A key of another certificate, a garbage key and a garbage certificate: exit 2 with the
        file named, and no traceback."""
        ca = Authority(tmp_path, "ca")
        one, two = ca.issue("localhost", server=True), ca.issue("other", server=True)
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        cases = [
            (one.cert_path, two.key_path, two.key_path, "does not match"),
            (one.cert_path, str(garbage), str(garbage), "not a PEM private key"),
            (str(garbage), one.key_path, str(garbage), "not a PEM certificate"),
        ]
        for cert, key, named, problem in cases:
            out = subprocess.run(
                [str(BIN), "serve", "--workers", "1", "--listen", "127.0.0.1:0", "--ledger",
                 f"sqlite:{tmp_path / 'tls.db'}", "--tls-cert", cert, "--tls-key", key],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode == 2, out.stderr
            assert named in out.stderr
            assert problem in out.stderr
            assert "Traceback" not in out.stderr


def log_events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def serves(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        return len(stub.ListModels(router_pb2.ListModelsRequest(), timeout=10).models) == 28


def wait_for_event(path: Path, event: str, count: int = 1, within: float = 30.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + within
    while True:
        found = [e for e in log_events(path) if e.get("event") == event]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"no {event} in the log"
        time.sleep(0.1)


class TestWorkers:
    """A dead worker is restarted while the others keep serving; a crash loop stops the server."""

    def test_dead_worker_is_restarted(self, tmp_path: Path) -> None:
        """kill -9 of one of two workers: it is restarted (logged), the server keeps serving, and
        SIGTERM still exits 0."""
        s = ServerProcess(tmp_path, "w", "--workers", "2", "--ledger", f"sqlite:{tmp_path / 'w.db'}")
        try:
            pids = wait_for_event(s.log_path, "workers_serving")[0]["pids"]
            assert isinstance(pids, list)
            os.kill(pids[0], signal.SIGKILL)
            restarted = wait_for_event(s.log_path, "worker_restarted")[0]
            assert restarted["pid"] not in pids
            deadline = time.monotonic() + 30
            while restarted["pid"] not in [e.get("pid") for e in log_events(s.log_path) if e.get("event") == "serving"]:
                assert time.monotonic() < deadline, "the restarted worker did not serve"
                time.sleep(0.1)
            assert [e["restart_in_s"] for e in log_events(s.log_path) if e.get("event") == "worker_exited"] == [0.5]
            assert s.proc.poll() is None
            for _ in range(10):
                assert serves(s.target)
        finally:
            s.stop()
        assert s.proc.returncode == 0

    def test_crash_loop_stops_the_server(self, tmp_path: Path) -> None:
        """A worker that dies five times within a minute is not restarted again: exit 1."""
        s = ServerProcess(tmp_path, "loop", "--workers", "2", "--ledger", f"sqlite:{tmp_path / 'l.db'}")
        try:
            pid = wait_for_event(s.log_path, "workers_serving")[0]["pids"][0]  # type: ignore[index]
            for death in range(1, 6):
                os.kill(int(pid), signal.SIGKILL)  # type: ignore[call-overload]
                if death < 5:
                    pid = wait_for_event(s.log_path, "worker_restarted", death)[-1]["pid"]
            assert s.proc.wait(timeout=60) == 1
            assert wait_for_event(s.log_path, "worker_crash_loop")
        finally:
            s.stop()


class TestOnePortOneServer:
    """Only a server's own workers share its port."""

    def test_two_supervisors_started_at_once(self, tmp_path: Path) -> None:
        """Two `serve --workers 2` on one free port, started together: one serves, the other exits
        2 saying the address is in use."""
        port = servers.free_port()
        procs = [
            subprocess.Popen(
                [
                    str(BIN),
                    "serve",
                    "--workers",
                    "2",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--ledger",
                    f"sqlite:{tmp_path / f's{i}.db'}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while all(p.poll() is None for p in procs):
                assert time.monotonic() < deadline, "neither server exited"
                time.sleep(0.1)
            loser = next(p for p in procs if p.poll() is not None)
            winner = next(p for p in procs if p is not loser)
            assert loser.returncode == 2
            assert loser.stderr is not None
            assert "address is in use" in loser.stderr.read()
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert serves(f"127.0.0.1:{port}")
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "the other server did not serve"
                    time.sleep(0.2)
            assert winner.poll() is None
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=30)

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_second_server_on_a_port_in_use_exits(self, tmp_path: Path, workers: str) -> None:
        """A second `switchboard serve` on the port of a running one exits non-zero saying the
        address is in use, without a traceback; the first keeps all its connections."""
        first = ServerProcess(tmp_path, "first", "--workers", "2", "--ledger", f"sqlite:{tmp_path / 'p.db'}")
        try:
            out = subprocess.run(
                [str(BIN), "serve", "--workers", workers, "--listen", first.target, "--ledger",
                 f"sqlite:{tmp_path / 'q.db'}"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode != 0
            assert "address is in use" in out.stderr + out.stdout
            assert "Traceback" not in out.stderr
            assert serves(first.target)
        finally:
            first.stop()


class TestRestartReclaims:
    """A restarted server releases the holds of its own previous incarnation at once."""

    async def test_restart_releases_own_holds_only(self, tmp_path: Path) -> None:
        """Replicas `a` and `b` share a ledger; `a` is killed mid-stream and restarted with the same
        instance id: its hold is released at start-up (not after --hold-ttl), `b`'s stays."""
        ledger = f"sqlite:{tmp_path / 'reclaim.db'}"
        common = [
            "--workers", "1", "--ledger", ledger, "--auto-create-accounts", "--limiter", "ledger",
            "--sim-ttft-ms", "0", "--sim-inter-token-ms", "20", "--sim-tokens", "2000",
        ]  # fmt: skip
        a = ServerProcess(tmp_path, "a", *common, "--instance-id", "replica-a")
        b = ServerProcess(tmp_path, "b", *common, "--instance-id", "replica-b")
        a2 = None
        ca, cb = grpc.aio.insecure_channel(a.target), grpc.aio.insecure_channel(b.target)
        try:
            on_a = router_pb2_grpc.RouterServiceStub(ca).Generate(
                gen("ka", "r1", pinned_model_id="gpt-5.4"), timeout=60
            )
            on_b = router_pb2_grpc.RouterServiceStub(cb).Generate(
                gen("kb", "r1", pinned_model_id="gpt-5.4"), timeout=60
            )
            for call in (on_a, on_b):
                await call.read()
                await call.read()
            a.stop(signal.SIGKILL)
            on_a.cancel()
            a2 = ServerProcess(tmp_path, "a2", *common, "--instance-id", "replica-a")
            acc = accounts_pb2_grpc.AccountServiceStub(cb)
            ka = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="ka"), timeout=10)).account
            kb = (await acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="kb"), timeout=10)).account
            assert (ka.balance, ka.held_credits, ka.requests_in_flight) == (500, 0, 0)
            assert (kb.balance, kb.held_credits, kb.requests_in_flight) == (490, 10, 1)
            assert (await on_b.read()).WhichOneof("event") == "delta"
            on_b.cancel()
            started = [e for e in log_events(a2.log_path) if e.get("event") == "incarnation"]
            assert started == [started[0]]
            assert (started[0]["instance_id"], started[0]["incarnation"], started[0]["holds_released"]) == (
                "replica-a",
                2,
                1,
            )
        finally:
            await ca.close()
            await cb.close()
            b.stop()
            if a2 is not None:
                a2.stop()

    @pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
    def test_an_existing_database_is_upgraded(
        self, tmp_path: Path, backend: str, request: pytest.FixtureRequest
    ) -> None:
        """A database made by the previous schema gains the owner columns when opened (again and
        again), and each incarnation releases the hold the one before it left."""
        v1_schema = (Path(__file__).parent / "data" / "ledger_schema_v1.sql").read_text()
        if backend == "sqlite":
            url = f"sqlite:{tmp_path / 'old.db'}"
            import sqlite3  # noqa: PLC0415

            with sqlite3.connect(tmp_path / "old.db") as conn:
                conn.executescript(v1_schema.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        else:
            import psycopg  # noqa: PLC0415

            url = request.getfixturevalue("fresh_postgres")
            with psycopg.connect(url, autocommit=True) as conn:
                for statement in v1_schema.format(serial="BIGSERIAL PRIMARY KEY").split(";"):
                    if statement.strip():
                        conn.execute(statement)
        for left in (0, 1):
            store = open_store(url)
            try:
                led = Ledger(store, load_catalog(None).plans)
                assert led.begin_incarnation("x")[1] == left
                led.ensure_account("u", "free")
                led.hold("u", f"r{led.incarnation}", 5, 10**15)
            finally:
                store.close()
        store = open_store(url)
        try:
            led = Ledger(store, load_catalog(None).plans)
            assert led.begin_incarnation("x") == (3, 1)
            record = led.get("u")
            assert record is not None
            assert (record.balance, record.held) == (500, 0)
        finally:
            store.close()


class Restartable:
    """A real PostgreSQL or Redis server on a fixed loopback port that a test stops and starts."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = servers.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if kind == "postgresql":
            self.bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
            self.data = tempfile.mkdtemp(prefix="sb-outage-pg-")
            if os.geteuid() == 0:
                shutil.chown(self.data, "postgres", "postgres")
            subprocess.run(
                servers._as_postgres(
                    [f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"]
                ),
                check=True,
                capture_output=True,
            )
        self.start()

    @property
    def url(self) -> str:
        if self.kind == "postgresql":
            return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.kind == "postgresql":
            cmd = servers._as_postgres(
                [f"{self.bindir}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.data,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
            )  # fmt: skip
        else:
            cmd = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers._wait_port(self.port, self.proc, self.kind)
        if self.kind == "postgresql":
            import psycopg  # noqa: PLC0415

            for _ in range(100):
                try:
                    with psycopg.connect(self.url, connect_timeout=2):
                        return
                except psycopg.OperationalError:
                    time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.kind == "postgresql":  # fast shutdown: clients are disconnected, not waited for
                stop = [f"{self.bindir}/pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w"]
                subprocess.run(servers._as_postgres(stop), check=False, capture_output=True, timeout=60)
            else:
                self.proc.terminate()
            self.proc.wait(timeout=30)

    def remove(self) -> None:
        self.stop()
        if self.kind == "postgresql":
            shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[Restartable]:
    server = Restartable(request.param)
    yield server
    server.remove()


async def status_of(call: object) -> tuple[str, str]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, error_info(exc).reason
    return "OK", ""


async def generate_status(stub: router_pb2_grpc.RouterServiceStub, request_id: str) -> tuple[str, str]:
    async def run() -> None:
        async for _ in stub.Generate(gen("o", request_id, pinned_model_id="gpt-5.4-nano"), timeout=30):
            pass

    return await status_of(run())


async def refused_while_down(
    stub: router_pb2_grpc.RouterServiceStub, acc: accounts_pb2_grpc.AccountServiceStub, reason: str
) -> None:
    """Generate (several times) and GetAccount are UNAVAILABLE with ``reason``."""
    for i in range(4):
        assert await generate_status(stub, f"down-{i}") == ("UNAVAILABLE", reason)
    got = await status_of(acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="o"), timeout=30))
    assert got == ("UNAVAILABLE", reason)


class TestBackendOutages:
    """A backend that goes away is UNAVAILABLE with a reason, logged once, and recovers by itself."""

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    async def test_ledger_down_and_back(self, start_server: ServerFactory, backend: Restartable) -> None:
        """PostgreSQL stops: Generate and GetAccount are UNAVAILABLE LEDGER_UNAVAILABLE, health is
        NOT_SERVING, one `ledger_unavailable` log line for many calls; PostgreSQL starts again:
        calls succeed and health is SERVING without a restart."""
        handle, stub = await start_server(ledger=backend.url, sweep_interval_s=0.2, balance_cache_s=0.0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        assert await generate_status(stub, "before") == ("OK", "")
        with capture_logs() as logs:
            backend.stop()
            await refused_while_down(stub, acc, "LEDGER_UNAVAILABLE")
            await asyncio.sleep(0.1)
            check = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
            backend.start()
            deadline = time.monotonic() + 30
            while (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)).status != (
                health_pb2.HealthCheckResponse.SERVING
            ):
                assert time.monotonic() < deadline, "health did not come back"
                await asyncio.sleep(0.2)
            results = [await generate_status(stub, f"after-{i}") for i in range(3)]
        assert results[-1] == ("OK", "")
        events = [e["event"] for e in logs]
        assert events.count("ledger_unavailable") == 1
        assert "ledger_recovered" in events
        assert "unexpected_error" not in events
        record = await handle.app.ledger.get("o")
        total, _, _ = await handle.app.ledger.totals("o")
        assert record is not None
        assert total == record.balance
        await channel.close()

    @pytest.mark.parametrize("backend", ["redis"], indirect=True)
    async def test_limiter_down_and_back(self, start_server: ServerFactory, backend: Restartable) -> None:
        """Redis stops: Generate and GetAccount are UNAVAILABLE LIMITER_UNAVAILABLE, logged once;
        Redis starts again: calls succeed; nothing stays held."""
        handle, stub = await start_server(limiter=backend.url)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        assert await generate_status(stub, "before") == ("OK", "")
        with capture_logs() as logs:
            backend.stop()
            await refused_while_down(stub, acc, "LIMITER_UNAVAILABLE")
            backend.start()
            deadline = time.monotonic() + 30
            while await generate_status(stub, f"after-{time.monotonic()}") != ("OK", ""):
                assert time.monotonic() < deadline, "the limiter did not come back"
                await asyncio.sleep(0.2)
        events = [e["event"] for e in logs]
        assert events.count("limiter_unavailable") == 1
        assert "limiter_recovered" in events
        assert "unexpected_error" not in events
        record = await handle.app.ledger.get("o")
        assert record is not None
        assert record.held == 0
        await channel.close()

    @pytest.mark.parametrize("backend", ["redis"], indirect=True)
    async def test_first_call_after_a_limiter_restart_succeeds(
        self, start_server: ServerFactory, backend: Restartable
    ) -> None:
        """Redis restarts while no call is running: its pooled connections were closed by the old
        server, and the first calls after it is back reconnect instead of failing
        LIMITER_UNAVAILABLE while Redis is up."""
        handle, stub = await start_server(limiter=backend.url)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}")
        acc = accounts_pb2_grpc.AccountServiceStub(channel)
        assert await generate_status(stub, "before") == ("OK", "")
        backend.stop()
        backend.start()
        with capture_logs() as logs:
            assert await generate_status(stub, "after") == ("OK", "")
            assert await status_of(acc.GetAccount(accounts_pb2.GetAccountRequest(account_id="o"), timeout=30)) == (
                "OK",
                "",
            )
        assert "limiter_unavailable" not in [e["event"] for e in logs]
        await channel.close()

    @pytest.mark.parametrize("backend", ["redis"], indirect=True)
    async def test_limiter_lost_mid_stream_does_not_fail_a_settled_stream(
        self, start_server: ServerFactory, backend: Restartable
    ) -> None:
        """Redis stops while a stream runs: the stream completes and is charged once; its lease
        lapses by itself instead of turning the finished stream into an error."""
        slow = SimulationProfile(time_to_first_token_s=0.0, inter_token_s=0.02, tokens=60)
        handle, stub = await start_server(limiter=backend.url, simulation=slow)
        call = stub.Generate(gen("m", "r1", pinned_model_id="gpt-5.4-nano"), timeout=30)
        assert (await call.read()).WhichOneof("event") == "decision"
        backend.stop()
        last = None
        while (frame := await call.read()) is not grpc.aio.EOF:
            last = frame
        assert last is not None
        assert last.WhichOneof("event") == "completion"
        assert await call.code() is grpc.StatusCode.OK
        record = await handle.app.ledger.get("m")
        assert record is not None
        assert (record.balance, record.held) == (500 - last.completion.credits_charged, 0)


class TestKeepAliveThroughAnOutage:
    """A stream's keep-alive refreshes its credit hold and its concurrency lease each on its own."""

    async def test_ledger_down_does_not_let_the_lease_lapse(self, tmp_path: Path) -> None:
        """PostgreSQL stops mid-stream for longer than the lease while Redis stays up: the stream's
        Redis lease is still refreshed, so its slot stays taken and the limit holds."""
        pg, redis = Restartable("postgresql"), Restartable("redis")
        app = make_app(
            tmp_path,
            ledger=pg.url,
            limiter=redis.url,
            simulation=SimulationProfile(tokens=6000, inter_token_s=0.01),
            hold_ttl_s=2.0,
            lease_s=2.0,
        )
        run = app.router.run(request("ka", "r1", pinned_model_id="gpt-5.4-nano"))
        try:
            await until(run, TextChunk)
            assert await app.limiter.in_flight("ka") == 1
            pg.stop()
            await asyncio.sleep(5.0)  # two and a half leases' lives: refreshed, or gone by now
            assert await app.limiter.in_flight("ka") == 1
        finally:
            pg.start()
            with contextlib.suppress(Exception):
                await run.aclose()
            await app.close()
            pg.remove()
            redis.remove()


class TestStuckPeer:
    """A peer that stops inside a transaction (a replica paused by SIGSTOP, a GC pause, a lost
    machine whose connection is not yet dropped) keeps its row locks; calls that need them end in
    bounded time with UNAVAILABLE instead of waiting for the peer, and nothing is charged."""

    async def test_a_locked_account_row_is_unavailable_not_a_hang(self, tmp_path: Path, fresh_postgres: str) -> None:
        import psycopg  # noqa: PLC0415

        app = make_app(tmp_path, ledger=fresh_postgres)
        await run_all(app, request("lk", "warm", pinned_model_id="gpt-5.4-nano"))
        peer = await asyncio.to_thread(psycopg.connect, fresh_postgres)
        try:
            await asyncio.to_thread(peer.execute, "SELECT * FROM accounts WHERE account_id = %s FOR UPDATE", ("lk",))
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as err:
                await asyncio.wait_for(run_all(app, request("lk", "stuck", pinned_model_id="gpt-5.4-nano")), 30)
            assert time.monotonic() - started < 12
            assert err.value.reason == "LEDGER_UNAVAILABLE"
            assert not app.ledger.outage.down  # one busy row is not a ledger outage: health stays SERVING
        finally:
            await asyncio.to_thread(peer.rollback)
            await asyncio.to_thread(peer.close)
        await run_all(app, request("lk", "after", pinned_model_id="gpt-5.4-nano"))
        after = await app.ledger.get("lk")
        assert after is not None
        assert after.held == 0
        total, _, _ = await app.ledger.totals("lk")
        assert total == after.balance
        entries = [e for e in await app.ledger.entries("lk", 0, 100) if e.request_id == "stuck"]
        assert entries == []
        await app.close()


class TestWhatIsAnOutage:
    """Only errors that mean the database cannot be reached count as an outage."""

    def test_classification(self) -> None:
        """Locks past the timeout and broken connections are outages; a deadlock or a missing
        table is not (it stays a bug to see)."""
        import sqlite3  # noqa: PLC0415

        import psycopg  # noqa: PLC0415
        from psycopg_pool import PoolTimeout  # noqa: PLC0415
        from switchboard.stores import PostgresStore, SqliteStore  # noqa: PLC0415

        assert SqliteStore.unreachable(sqlite3.OperationalError("database is locked"))
        assert SqliteStore.unreachable(sqlite3.OperationalError("unable to open database file"))
        assert not SqliteStore.unreachable(sqlite3.OperationalError("no such table: holds"))
        assert PostgresStore.unreachable(psycopg.OperationalError("connection failed: Connection refused"))
        assert PostgresStore.unreachable(PoolTimeout("couldn't get a connection after 5.00 sec"))
        assert PostgresStore.unreachable(psycopg.errors.AdminShutdown("terminating connection"))
        assert not PostgresStore.unreachable(psycopg.errors.DeadlockDetected("deadlock detected"))
        assert not PostgresStore.unreachable(ValueError("bug"))
