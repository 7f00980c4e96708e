"""Usage reports from the ledger: the same answers on SQLite and PostgreSQL, paged, over the wire."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from conftest import ServerFactory, error_info
from google.protobuf import timestamp_pb2
from procs import BIN, ServerProcess
from switchboard.catalog import load_catalog
from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.ledger import ChargeUsage, Ledger
from switchboard.stores import PostgresStore, SqliteStore
from switchboard.usage import GroupBy, UsageQuery, UsageTotals, usage
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc, catalog_pb2, router_pb2

PLANS = load_catalog(None).plans
LITE = ChargeUsage("gpt-5.4-nano", 1, 1, 10, 20)
STD = ChargeUsage("gpt-5.4-mini", 1, 2, 100, 200)
IMG = ChargeUsage("openai/gpt-image-2", 2, 3, 5, 0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger of each kind with a few days of traffic on two accounts."""
    if request.param == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(tmp_path / "ledger.db")
    else:
        store = PostgresStore(request.getfixturevalue("fresh_postgres"))
    clock = Clock()
    led = Ledger(store, PLANS, clock)
    led.create_account("a", "pro")
    led.create_account("b", "pro")
    led.top_up("a", 70, "order-1")
    n = 0
    for day, charges in enumerate([[(LITE, 1), (STD, 3)], [(STD, 3), (IMG, 40)], [(LITE, 0)]]):
        clock.now = datetime(2026, 11, 20 + day, 12, tzinfo=UTC)
        for charge_usage, credits in charges:
            for account in ("a", "b"):
                n += 1
                led.hold(account, f"r{n}", 50, 2**62)
                led.settle(account, f"r{n}", credits, usage=charge_usage)
    yield led
    store.close()


def keyed(groups: list[UsageTotals]) -> dict[object, tuple[int, int, int, int]]:
    return {g.key: (g.requests, g.credits, g.input_tokens, g.output_tokens) for g in groups}


class TestGroups:
    """Totals per group, from the settlement entries of the range."""

    def test_by_model_in_the_current_period(self, ledger: Ledger) -> None:
        """No range means the account's current period; the zero-credit release still counts as a request."""
        report = usage(ledger, UsageQuery(account_id="a"))
        assert keyed(report.groups) == {
            "gpt-5.4-mini": (2, 6, 200, 400),
            "gpt-5.4-nano": (2, 1, 20, 40),
            "openai/gpt-image-2": (1, 40, 5, 0),
        }
        assert (report.total.requests, report.total.credits) == (5, 47)
        assert (report.top_ups, report.allowance_granted, report.allowance_expired) == (70, 5000, 0)
        assert report.start_ms == int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)

    def test_by_modality_tier_and_day(self, ledger: Ledger) -> None:
        """Each grouping partitions the same totals."""
        by_modality = keyed(usage(ledger, UsageQuery(account_id="a", group_by=GroupBy.MODALITY)).groups)
        assert by_modality == {1: (4, 7, 220, 440), 2: (1, 40, 5, 0)}
        by_tier = keyed(usage(ledger, UsageQuery(account_id="a", group_by=GroupBy.TIER)).groups)
        assert by_tier == {1: (2, 1, 20, 40), 2: (2, 6, 200, 400), 3: (1, 40, 5, 0)}
        days = usage(ledger, UsageQuery(account_id="a", group_by=GroupBy.DAY)).groups
        first = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp()) // 86400
        assert keyed(days) == {first: (2, 4, 110, 220), first + 1: (2, 43, 105, 200), first + 2: (1, 0, 10, 20)}

    def test_a_range(self, ledger: Ledger) -> None:
        """A range keeps only its entries: 21 November alone; the top-up of the 20th is outside it."""
        start = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp() * 1000)
        report = usage(ledger, UsageQuery(account_id="a", start_ms=start, end_ms=start + 86_400_000))
        assert keyed(report.groups) == {"gpt-5.4-mini": (1, 3, 100, 200), "openai/gpt-image-2": (1, 40, 5, 0)}
        assert report.top_ups == 0

    def test_ranges_with_part_days(self, ledger: Ledger) -> None:
        """Whole days come from the daily sums and the hours at the edges from the entries: a range
        from 06:00 on the 20th to 18:00 on the 22nd holds every request, one from 13:00 on the 20th
        to 11:00 on the 22nd only those of the 21st, and one inside a day only that day's."""

        def ms(day: int, hour: int) -> int:
            return int(datetime(2026, 11, day, hour, tzinfo=UTC).timestamp() * 1000)

        wide = usage(ledger, UsageQuery(account_id="a", start_ms=ms(20, 6), end_ms=ms(22, 18)))
        assert keyed(wide.groups) == keyed(usage(ledger, UsageQuery(account_id="a")).groups)
        narrow = usage(ledger, UsageQuery(account_id="a", start_ms=ms(20, 13), end_ms=ms(22, 11)))
        assert keyed(narrow.groups) == {"gpt-5.4-mini": (1, 3, 100, 200), "openai/gpt-image-2": (1, 40, 5, 0)}
        inside = usage(ledger, UsageQuery(account_id="a", start_ms=ms(22, 11), end_ms=ms(22, 13)))
        assert keyed(inside.groups) == {"gpt-5.4-nano": (1, 0, 10, 20)}

    def test_one_model_across_accounts(self, ledger: Ledger) -> None:
        """With only a model, every account's use of it, grouped by account; nothing added is reported."""
        report = usage(ledger, UsageQuery(model_id="gpt-5.4-mini", group_by=GroupBy.ACCOUNT))
        assert keyed(report.groups) == {"a": (2, 6, 200, 400), "b": (2, 6, 200, 400)}
        assert report.top_ups == 0


class TestExpiredHolds:
    """A hold the sweeper releases is reported under the model it was taken for."""

    def test_swept_hold_counts_under_its_model(self, ledger: Ledger) -> None:
        before = keyed(usage(ledger, UsageQuery(account_id="b", model_id="claude-opus-4-6")).groups)
        ledger.hold("b", "lost", 30, expires_ms=1, usage=ChargeUsage("claude-opus-4-6", 1, 3))
        assert ledger.sweep() == 1
        after = keyed(usage(ledger, UsageQuery(account_id="b", model_id="claude-opus-4-6")).groups)
        assert before == {}
        assert after == {"claude-opus-4-6": (1, 0, 0, 0)}


class TestPages:
    """Groups come in key order, a page at a time."""

    def test_pages_cover_every_group_once(self, ledger: Ledger) -> None:
        seen: list[object] = []
        token = ""
        while True:
            report = usage(ledger, UsageQuery(account_id="a", page_size=1, page_token=token))
            seen += [g.key for g in report.groups]
            token = report.next_page_token
            if not token:
                break
        assert seen == ["gpt-5.4-mini", "gpt-5.4-nano", "openai/gpt-image-2"]

    def test_a_token_of_another_grouping_is_refused(self, ledger: Ledger) -> None:
        token = usage(ledger, UsageQuery(account_id="a", page_size=1)).next_page_token
        with pytest.raises(InvalidRequestError) as err:
            usage(ledger, UsageQuery(account_id="a", group_by=GroupBy.DAY, page_token=token))
        assert err.value.reason == "INVALID_PAGE_TOKEN"
        with pytest.raises(InvalidRequestError):
            usage(ledger, UsageQuery(account_id="a", page_token="!!"))


class TestBadQueries:
    """Bad queries get a reason."""

    def test_reasons(self, ledger: Ledger) -> None:
        with pytest.raises(InvalidRequestError) as err:
            usage(ledger, UsageQuery())
        assert err.value.reason == "FIELD_REQUIRED"
        with pytest.raises(NotFoundError):
            usage(ledger, UsageQuery(account_id="nobody"))
        with pytest.raises(InvalidRequestError) as err:
            usage(ledger, UsageQuery(account_id="a", start_ms=10, end_ms=10))
        assert err.value.reason == "INVALID_FIELD"


def test_a_ledger_from_before_usage_is_upgraded(tmp_path: Path) -> None:
    """An SQLite ledger made without the usage columns gains them when opened; its old settlements
    count as requests of no model."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL, kind INTEGER NOT NULL,"
        " amount BIGINT NOT NULL, allowance_delta BIGINT NOT NULL, topup_delta BIGINT NOT NULL, credits BIGINT NOT NULL,"
        " request_id TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, note TEXT NOT NULL, created_ms BIGINT NOT NULL);"
        "INSERT INTO ledger (account_id, kind, amount, allowance_delta, topup_delta, credits, request_id,"
        " idempotency_key, note, created_ms) VALUES ('a', 5, 0, 0, 0, 7, 'old', 'settle:a:old', '', 1000);"
    )
    conn.close()
    for _ in range(2):  # opening twice changes nothing more
        store = SqliteStore(path)
        led = Ledger(store, PLANS, Clock())
        report = usage(led, UsageQuery(account_id="a", start_ms=0, end_ms=2000))
        store.close()
        assert keyed(report.groups) == {"": (1, 7, 0, 0)}


class TestOverTheWire:
    """GetUsage on a live server after real Generate calls."""

    async def test_generate_then_usage(self, start_server: ServerFactory) -> None:
        """Two text requests and an image: grouped by model and by modality, with tokens; bad input has a reason."""
        handle, stub = await start_server()
        for modality, prompt in (("TEXT", "Hello there"), ("TEXT", "Again"), ("IMAGE", "A fox")):
            req = router_pb2.GenerateRequest(
                account_id="u1", modality=catalog_pb2.Modality.Value("MODALITY_" + modality), prompt=prompt
            )
            _ = [f async for f in stub.Generate(req)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            accounts = accounts_pb2_grpc.AccountServiceStub(channel)
            resp = await accounts.GetUsage(accounts_pb2.GetUsageRequest(account_id="u1"))
            by_model = {g.model_id: g for g in resp.groups}
            assert sum(g.requests for g in resp.groups) == 3 == resp.total.requests
            text = by_model["gemini-3.1-flash-lite"]
            assert text.requests == 2
            assert text.output_tokens > 0
            assert text.input_tokens > 0
            assert resp.total.credits == sum(g.credits for g in resp.groups) > 0
            assert resp.allowance_granted_credits == 500
            resp = await accounts.GetUsage(
                accounts_pb2.GetUsageRequest(account_id="u1", group_by=accounts_pb2.USAGE_GROUP_BY_MODALITY)
            )
            assert {catalog_pb2.Modality.Name(g.modality): g.requests for g in resp.groups} == {
                "MODALITY_TEXT": 2,
                "MODALITY_IMAGE": 1,
            }
            day = await accounts.GetUsage(
                accounts_pb2.GetUsageRequest(account_id="u1", group_by=accounts_pb2.USAGE_GROUP_BY_DAY)
            )
            assert [g.day for g in day.groups] == [datetime.now(UTC).strftime("%Y-%m-%d")]
            later = datetime.now(UTC) + timedelta(days=40)
            empty = await accounts.GetUsage(
                accounts_pb2.GetUsageRequest(
                    account_id="u1",
                    start_time=timestamp_pb2.Timestamp(seconds=int(later.timestamp())),
                    end_time=timestamp_pb2.Timestamp(seconds=int(later.timestamp()) + 3600),
                )
            )
            assert list(empty.groups) == []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await accounts.GetUsage(accounts_pb2.GetUsageRequest(account_id="u1", group_by=99))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(err.value).reason == "INVALID_ENUM_VALUE"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await accounts.GetUsage(accounts_pb2.GetUsageRequest())
            assert error_info(err.value).reason == "FIELD_REQUIRED"


def test_cli_usage(tmp_path: Path) -> None:
    """`switchboard usage ACCOUNT` prints a line per model and the totals after a generation."""
    server = ServerProcess(
        tmp_path, "usage", "--workers", "1", "--ledger", f"sqlite:{tmp_path / 'l.db'}", "--auto-create-accounts"
    )
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            [str(BIN), *a, "--target", server.target], capture_output=True, text=True, timeout=60, check=False
        )
        assert run("generate", "--account", "u9", "Hi").returncode == 0
        out = run("usage", "u9")
        by_day = run("usage", "u9", "--by", "day", "--json")
        bad = run("usage")
    finally:
        server.stop()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2].split()[:3] == ["gemini-3.1-flash-lite", "1", "1"]
    assert lines[3].split()[:3] == ["total", "1", "1"]
    assert "allowance granted 500" in out.stdout
    assert len(json.loads(by_day.stdout)["groups"]) == 1
    assert bad.returncode == 1
    assert "reason: FIELD_REQUIRED" in bad.stderr
