"""The ledger's rules, run against real SQLite and real PostgreSQL with the same tests."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from switchboard.catalog import load_catalog
from switchboard.errors import ExhaustedError, NotFoundError, PreconditionError, SwitchboardError
from switchboard.ledger import AlreadyExistsError, AsyncLedger, EntryKind, Ledger, SlotClaim, month_bounds
from switchboard.stores import PostgresStore, SqliteStore

PLANS = load_catalog(None).plans  # free 500, pro 5000, business 50000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger on an empty store of each kind, with a hand-moved clock."""
    if request.param == "sqlite":
        store: SqliteStore | PostgresStore = SqliteStore(tmp_path / "ledger.db")
    else:
        store = PostgresStore(request.getfixturevalue("fresh_postgres"))
    led = Ledger(store, PLANS, Clock())
    yield led
    store.close()


def assert_consistent(ledger: Ledger, account_id: str) -> None:
    """The journal sums to the stored balance, part by part."""
    record = ledger.get(account_id)
    assert record is not None
    assert ledger.totals(account_id) == (record.balance, record.allowance, record.topup)


class TestAccounts:
    """Accounts start with their plan's allowance."""

    def test_create_and_get(self, ledger: Ledger) -> None:
        """A new account holds the plan's allowance for the current calendar month."""
        record = ledger.create_account("a", "pro")
        assert (record.plan_id, record.allowance, record.topup, record.balance) == ("pro", 5000, 0, 5000)
        assert (record.period_start, record.period_end) == month_bounds(datetime(2026, 11, 5, tzinfo=UTC))
        assert ledger.get("a") == record
        assert ledger.get("nobody") is None
        assert_consistent(ledger, "a")

    def test_duplicate_and_unknown_plan(self, ledger: Ledger) -> None:
        """Creating twice is ALREADY_EXISTS; an unknown plan is PLAN_NOT_FOUND."""
        ledger.create_account("a", "free")
        with pytest.raises(AlreadyExistsError):
            ledger.create_account("a", "free")
        with pytest.raises(NotFoundError) as err:
            ledger.create_account("b", "platinum")
        assert err.value.reason == "PLAN_NOT_FOUND"

    def test_upgrade_grants_the_difference_once(self, ledger: Ledger) -> None:
        """free -> pro mid-period adds 4500 credits once; back to free takes nothing away."""
        ledger.create_account("a", "free")
        assert ledger.set_plan("a", "pro").allowance == 5000
        assert ledger.set_plan("a", "free").allowance == 5000
        assert ledger.set_plan("a", "pro").allowance == 5000
        assert_consistent(ledger, "a")


class TestTopUps:
    """Top-ups are idempotent by key and carry over."""

    def test_idempotent(self, ledger: Ledger) -> None:
        """The same key twice adds the credits once."""
        ledger.create_account("a", "free")
        first, applied = ledger.top_up("a", 100, "order-1")
        again, applied_again = ledger.top_up("a", 100, "order-1")
        assert (applied, applied_again) == (True, False)
        assert first.topup == again.topup == 100
        assert_consistent(ledger, "a")

    def test_key_reused_for_another_amount(self, ledger: Ledger) -> None:
        """A key reused with another amount is refused."""
        ledger.create_account("a", "free")
        ledger.top_up("a", 100, "k")
        with pytest.raises(PreconditionError) as err:
            ledger.top_up("a", 200, "k")
        assert err.value.reason == "IDEMPOTENCY_KEY_REUSED"

    def test_unknown_account(self, ledger: Ledger) -> None:
        """Top-ups need an existing account."""
        with pytest.raises(NotFoundError):
            ledger.top_up("ghost", 5, "k")


class TestHolds:
    """Holds are taken atomically, allowance first, and settled exactly once."""

    def test_allowance_first_then_topup(self, ledger: Ledger) -> None:
        """A hold larger than the allowance takes the rest from top-ups."""
        ledger.create_account("a", "free")
        ledger.top_up("a", 100, "k")
        after = ledger.hold("a", "r1", 550, expires_ms=10**15)
        assert (after.allowance, after.topup, after.held) == (0, 50, 550)
        settled = ledger.settle("a", "r1", 520)
        assert settled.charged == 520
        assert (settled.account.allowance, settled.account.topup, settled.account.held) == (0, 80, 0)
        assert_consistent(ledger, "a")

    def test_insufficient(self, ledger: Ledger) -> None:
        """A hold beyond the balance is INSUFFICIENT_CREDITS and changes nothing."""
        ledger.create_account("a", "free")
        with pytest.raises(ExhaustedError) as err:
            ledger.hold("a", "r1", 501, expires_ms=10**15)
        assert err.value.metadata["balance"] == "500"
        assert ledger.get("a").balance == 500  # type: ignore[union-attr]
        assert_consistent(ledger, "a")

    def test_request_id_holds_once(self, ledger: Ledger) -> None:
        """The same request id cannot hold twice, even after it was settled."""
        ledger.create_account("a", "free")
        ledger.hold("a", "r1", 5, expires_ms=10**15)
        ledger.settle("a", "r1", 5)
        with pytest.raises(AlreadyExistsError) as err:
            ledger.hold("a", "r1", 5, expires_ms=10**15)
        assert err.value.reason == "DUPLICATE_REQUEST"

    def test_settle_twice_charges_once(self, ledger: Ledger) -> None:
        """A second settlement changes nothing and reports the first charge."""
        ledger.create_account("a", "free")
        ledger.hold("a", "r1", 10, expires_ms=10**15)
        first = ledger.settle("a", "r1", 7)
        second = ledger.settle("a", "r1", 10)
        assert (first.charged, first.closed, second.charged, second.closed) == (7, True, 7, False)
        assert ledger.get("a").balance == 493  # type: ignore[union-attr]
        assert_consistent(ledger, "a")

    def test_charge_never_exceeds_hold(self, ledger: Ledger) -> None:
        """Charging more than held charges what was held."""
        ledger.create_account("a", "free")
        ledger.hold("a", "r1", 10, expires_ms=10**15)
        assert ledger.settle("a", "r1", 99).charged == 10
        assert ledger.get("a").balance == 490  # type: ignore[union-attr]

    def test_release_and_extend(self, ledger: Ledger) -> None:
        """A release returns everything; an extension takes more atomically."""
        ledger.create_account("a", "free")
        ledger.hold("a", "r1", 10, expires_ms=10**15)
        ledger.extend_hold("a", "r1", 15)
        assert ledger.get("a").held == 25  # type: ignore[union-attr]
        with pytest.raises(ExhaustedError):
            ledger.extend_hold("a", "r1", 476)
        released = ledger.settle("a", "r1", 0)
        assert released.charged == 0
        assert released.account.balance == 500
        kinds = [e.kind for e in ledger.entries("a", 0, 100)]
        assert kinds == [EntryKind.ALLOWANCE_GRANT, EntryKind.HOLD, EntryKind.HOLD, EntryKind.RELEASE]
        assert_consistent(ledger, "a")

    def test_expired_holds_are_swept(self, ledger: Ledger) -> None:
        """A hold past its expiry is released by the sweeper; an open one is not."""
        clock = ledger.clock
        assert isinstance(clock, Clock)
        now_ms = int(clock.now.timestamp() * 1000)
        ledger.create_account("a", "free")
        ledger.hold("a", "old", 30, expires_ms=now_ms - 1)
        ledger.hold("a", "live", 20, expires_ms=now_ms + 60_000)
        assert ledger.sweep() == 1
        assert ledger.sweep() == 0
        record = ledger.get("a")
        assert record is not None
        assert (record.balance, record.held) == (480, 20)
        assert ledger.refresh_hold("a", "live", now_ms + 120_000) == (True, True)
        assert ledger.refresh_hold("a", "old", now_ms + 120_000) == (False, True)
        assert_consistent(ledger, "a")


class TestRollover:
    """A new month expires the old allowance, grants the new one, keeps top-ups."""

    def test_monthly_rollover(self, ledger: Ledger) -> None:
        """Unspent allowance does not carry over; top-ups do; it happens once."""
        clock = ledger.clock
        assert isinstance(clock, Clock)
        ledger.create_account("a", "free")
        ledger.top_up("a", 70, "k")
        ledger.hold("a", "r1", 100, expires_ms=10**15)
        ledger.settle("a", "r1", 100)
        clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
        record = ledger.get("a")
        assert record is not None
        assert (record.allowance, record.topup) == (500, 70)
        assert record.period_start == int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
        assert ledger.get("a") == record
        kinds = [e.kind for e in ledger.entries("a", 0, 100)]
        assert kinds[-2:] == [EntryKind.ALLOWANCE_EXPIRE, EntryKind.ALLOWANCE_GRANT]
        expire = ledger.entries("a", 0, 100)[-2]
        assert expire.amount == -400
        assert_consistent(ledger, "a")

    def test_hold_across_rollover(self, ledger: Ledger) -> None:
        """A hold from last month, released this month, does not revive last month's allowance."""
        clock = ledger.clock
        assert isinstance(clock, Clock)
        ledger.create_account("a", "free")
        ledger.top_up("a", 10, "k")
        ledger.hold("a", "r1", 505, expires_ms=10**15)
        clock.now += timedelta(days=15)
        settled = ledger.settle("a", "r1", 0)
        assert (settled.account.allowance, settled.account.topup) == (500, 10)
        assert_consistent(ledger, "a")


class TestConcurrency:
    """Concurrent holds never spend more than the balance."""

    async def test_200_holds_against_50(self, ledger: Ledger) -> None:
        """200 concurrent one-credit holds against 50 credits: exactly 50 succeed."""
        ledger.create_account("a", "free")
        ledger.hold("a", "setup", 450, expires_ms=10**15)
        ledger.settle("a", "setup", 450)
        aled = AsyncLedger(ledger)

        async def attempt(i: int) -> bool:
            try:
                await aled.call(ledger.hold, "a", f"r{i}", 1, 10**15)
            except ExhaustedError:
                return False
            return True

        results = await asyncio.gather(*(attempt(i) for i in range(200)))
        assert sum(results) == 50
        record = ledger.get("a")
        assert record is not None
        assert (record.balance, record.held) == (0, 50)
        assert_consistent(ledger, "a")
        aled._pool.shutdown()

    async def test_grouped_holds_match_one_by_one(self, ledger: Ledger) -> None:
        """Holds through AsyncLedger.hold arriving together: on SQLite they share transactions, and
        each gets exactly the outcome it would have alone, in arrival order: the first 20 of 60
        one-credit holds against 20 credits succeed, a repeated request id is DUPLICATE_REQUEST, an
        unknown account NOT_FOUND, a slot over the limit CONCURRENCY_LIMIT, and a refused hold
        leaves no trace in the ledger."""
        ledger.create_account("a", "free")
        ledger.create_account("b", "free")
        ledger.hold("a", "setup", 480, expires_ms=10**15)
        ledger.settle("a", "setup", 480)
        aled = AsyncLedger(ledger)
        far = 10**15

        async def attempt(account: str, request_id: str, slot: SlotClaim | None = None) -> str:
            try:
                await aled.hold(account, request_id, 1, far, slot)
            except SwitchboardError as exc:
                return exc.reason
            return "ok"

        calls = [attempt("a", f"r{i}") for i in range(60)]
        calls += [attempt("b", "dup"), attempt("b", "dup"), attempt("nobody", "x")]
        calls += [attempt("b", f"s{i}", SlotClaim(f"lease-{i}", 2, far)) for i in range(3)]
        outcomes = await asyncio.gather(*calls)
        grouped = isinstance(ledger.store, SqliteStore)
        assert sorted(outcomes[:60]) == ["INSUFFICIENT_CREDITS"] * 40 + ["ok"] * 20
        assert sorted(outcomes[60:62]) == ["DUPLICATE_REQUEST", "ok"]
        assert outcomes[62] == "ACCOUNT_NOT_FOUND"
        assert sorted(outcomes[63:]) == ["CONCURRENCY_LIMIT", "ok", "ok"]
        if grouped:  # one writer: arrival order decides, as if each hold ran alone in turn
            assert outcomes[:20] == ["ok"] * 20
            assert outcomes[60:62] == ["ok", "DUPLICATE_REQUEST"]
            assert outcomes[63:] == ["ok", "ok", "CONCURRENCY_LIMIT"]
        record = ledger.get("a")
        assert record is not None
        assert (record.balance, record.held) == (0, 20)
        assert_consistent(ledger, "a")
        assert_consistent(ledger, "b")
        assert ledger.slots_in_use("b") == 2
        holds = [e for e in ledger.entries("a", 0, 1000) if e.kind is EntryKind.HOLD]
        assert len(holds) == 21  # the setup hold and the 20 that succeeded, nothing from the refused
        if grouped:
            assert aled.hold_transactions < len(calls) // 2  # far fewer transactions than holds
        else:
            assert aled.hold_transactions == len(calls)  # several connections: one transaction each
        aled._pool.shutdown()


class TestPaging:
    """Entries page by sequence number."""

    def test_entries_after(self, ledger: Ledger) -> None:
        """Reading after the last sequence seen continues where the page ended."""
        ledger.create_account("a", "free")
        for i in range(5):
            ledger.top_up("a", 1, f"k{i}")
        first = ledger.entries("a", 0, 4)
        rest = ledger.entries("a", first[-1].sequence, 4)
        assert [e.kind for e in first + rest] == [EntryKind.ALLOWANCE_GRANT] + [EntryKind.TOP_UP] * 5
        assert len(rest) == 2


def test_sqlite_writer_gets_the_lock_as_soon_as_another_connection_releases_it(tmp_path: Path) -> None:
    """Two stores on one file (as two worker processes have): a writer waiting for the lock gets it
    within milliseconds of its release, not after one of SQLite's own busy sleeps (up to 100 ms)."""
    path = tmp_path / "shared.db"
    first, second = SqliteStore(path), SqliteStore(path)
    lags: list[float] = []
    try:
        for _ in range(5):
            locked = threading.Event()
            released: list[float] = []

            def hold_lock(locked: threading.Event = locked, released: list[float] = released) -> None:
                with first.transaction() as tx:
                    tx.run("DELETE FROM slots WHERE lease = %s", ("nobody",))
                    locked.set()
                    time.sleep(0.4)  # long enough that SQLite's handler would be at its 25-100 ms sleeps
                    released.append(time.perf_counter())

            holder = threading.Thread(target=hold_lock)
            holder.start()
            assert locked.wait(5)
            waiting = time.perf_counter()
            with second.transaction() as tx:
                got = time.perf_counter()
                assert got - waiting > 0.2  # it really waited for the first writer
                tx.run("DELETE FROM slots WHERE lease = %s", ("nobody",))
            holder.join()
            lags.append(got - released[0])
    finally:
        first.close()
        second.close()
    assert statistics.median(lags) < 0.01, lags


async def test_grouped_settlements(ledger: Ledger) -> None:
    """Settlements arriving together (grouped on SQLite) each charge what they would alone; a
    request settled twice in the same burst is charged once, and an unknown account fails alone."""
    ledger.create_account("a", "free")
    for i in range(40):
        ledger.hold("a", f"r{i}", 5, 10**15)
    aled = AsyncLedger(ledger)
    calls = [aled.settle("a", f"r{i}", i % 7, "completed") for i in range(40)]
    calls += [aled.settle("a", "r1", 5, "again"), aled.settle("nobody", "x", 1)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    charged = [r.charged for r in results[:40]]  # type: ignore[union-attr]
    assert charged == [min(i % 7, 5) for i in range(40)]
    again = results[40]
    assert not isinstance(again, BaseException)
    assert (again.closed, again.charged) == (False, 1)  # settled once, at its first charge
    assert isinstance(results[41], NotFoundError)
    record = ledger.get("a")
    assert record is not None
    assert (record.balance, record.held) == (500 - sum(charged), 0)
    assert_consistent(ledger, "a")
    aled.close()


async def test_grouped_hold_after_close_fails_instead_of_waiting(tmp_path: Path) -> None:
    """A hold asked of a closed AsyncLedger fails at once, and so does the next one (nothing is
    left waiting for a group that can no longer run)."""
    aled = AsyncLedger(Ledger(SqliteStore(tmp_path / "ledger.db"), PLANS))
    aled.ledger.create_account("a", "free")
    aled.close()
    for request_id in ("r1", "r2"):
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(aled.hold("a", request_id, 1, 10**15), 5)


def test_ledger_pool_flag_sizes_the_postgres_pool(fresh_postgres: str) -> None:
    """`--ledger-pool N` gives each process N PostgreSQL connections and N ledger threads."""
    from switchboard.settings import parse_serve_args  # noqa: PLC0415
    from switchboard.stores import open_store  # noqa: PLC0415

    settings = parse_serve_args(["--ledger", fresh_postgres, "--ledger-pool", "3"], {})
    assert settings.ledger_pool == 3
    store = open_store(settings.ledger, settings.ledger_pool)
    try:
        assert isinstance(store, PostgresStore)
        assert store.workers == 3
        assert store._pool.max_size == 3
    finally:
        store.close()


def test_closing_an_sqlite_store_waits_for_a_reader_in_another_thread(tmp_path: Path) -> None:
    """Closing the SQLite store while another thread reads (model health syncs from a thread)
    waits for that read instead of closing the connection under it, which crashed the process."""
    script = tmp_path / "close_while_reading.py"
    script.write_text(
        "import os, tempfile, threading\n"
        "from switchboard.stores import SqliteStore\n"
        "for _ in range(150):\n"
        "    store = SqliteStore(os.path.join(tempfile.mkdtemp(), 'l.db'))\n"
        "    def read():\n"
        "        for _ in range(10_000):\n"
        "            try:\n"
        "                with store.reading() as tx:\n"
        "                    tx.all('SELECT model_id FROM model_health')\n"
        "            except Exception:\n"
        "                return\n"
        "    readers = [threading.Thread(target=read) for _ in range(2)]\n"
        "    for t in readers:\n"
        "        t.start()\n"
        "    store.close()\n"
        "    for t in readers:\n"
        "        t.join()\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]


async def test_grouped_account_lookups(tmp_path: Path) -> None:
    """Account lookups arriving together each get their own answer, in far fewer thread hops
    than lookups: existing accounts, new ones created on the plan, unknown ones (None), and an
    unknown plan failing alone."""
    aled = AsyncLedger(Ledger(SqliteStore(tmp_path / "ledger.db"), PLANS))
    aled.ledger.create_account("old", "pro")
    calls = [aled.ensure_account(f"new-{i}", "free") for i in range(100)]
    calls += [aled.ensure_account("old", "free"), aled.ensure_account("bad", "no-such-plan")]
    calls += [aled.get("old"), aled.get("nobody")]
    results = await asyncio.gather(*calls, return_exceptions=True)
    created = results[:100]
    assert [r.account_id for r in created] == [f"new-{i}" for i in range(100)]  # type: ignore[union-attr]
    assert {(r.plan_id, r.balance) for r in created} == {("free", 500)}  # type: ignore[union-attr]
    old, bad, got, missing = results[100:]
    assert (old.account_id, old.plan_id) == ("old", "pro")  # type: ignore[union-attr]
    assert isinstance(bad, SwitchboardError)
    assert got.account_id == "old"  # type: ignore[union-attr]
    assert missing is None
    assert aled.ledger.get("bad") is None
    assert aled.lookup_groups < len(calls) // 2
    aled.close()
