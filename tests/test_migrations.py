"""Versioned ledger migrations, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from switchboard.catalog import load_catalog
from switchboard.ledger import Ledger, SlotClaim
from switchboard.migrations import LATEST, MIGRATIONS, SchemaTooNewError
from switchboard.stores import PostgresStore, SqliteStore

PLANS = load_catalog(None).plans
BIN = Path(sys.executable).with_name("switchboard")
# The ledger's schema as it was before versions were recorded, verbatim (``{serial}`` is the
# dialect's auto-incrementing key).
V1_SCHEMA = (Path(__file__).parent / "data" / "ledger_schema_v1.sql").read_text()
_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgres": "BIGSERIAL PRIMARY KEY"}

Store = SqliteStore | PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("fresh_postgres"))


def open_url(url: str, *, migrate: bool = True) -> Store:
    if url.startswith("sqlite:"):
        return SqliteStore(url.removeprefix("sqlite:"), migrate=migrate)
    return PostgresStore(url, workers=2, migrate=migrate)


def create_v1(url: str) -> None:
    """Create the ledger's tables the way the server did before migrations existed."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:"))
        conn.executescript(V1_SCHEMA.format(serial=_SERIAL["sqlite"]))
        conn.close()
        return
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url) as conn:
        for statement in V1_SCHEMA.format(serial=_SERIAL["postgres"]).split(";"):
            if statement.strip():
                conn.execute(statement)


def versions(store: Store) -> list[int]:
    with store.reading() as tx:
        return [int(r[0]) for r in tx.all("SELECT version FROM schema_version ORDER BY version")]


@pytest.fixture
def populated_v1(ledger_url: str) -> tuple[str, dict[str, tuple[int, int, int]], int]:
    """A version-1 ledger with accounts, top-ups, settled and open holds; yields its URL, every
    account's (balance, allowance, topup) and the number of journal entries."""
    create_v1(ledger_url)
    store = open_url(ledger_url, migrate=False)
    # Today's Ledger also records which process took a hold or slot (migration 4): give it those
    # columns while it writes the version-1 data, then take them away again.
    later = [(table, column) for table in ("holds", "slots") for column in ("owner", "incarnation")]
    with store.transaction() as tx:
        for table, column in later:
            kind = "TEXT NOT NULL DEFAULT ''" if column == "owner" else "BIGINT NOT NULL DEFAULT 0"
            tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    ledger = Ledger(store, PLANS)
    far = int((time.time() + 3600) * 1000)
    for i, plan in enumerate(("free", "pro", "business")):
        account = f"acct-{i}"
        ledger.create_account(account, plan)
        ledger.top_up(account, 100 * (i + 1), key=f"topup-{i}")
        ledger.hold(account, f"req-{i}-a", 40, far, SlotClaim(f"lease-{i}", 4, far))
        ledger.settle(account, f"req-{i}-a", 25, "done", lease=f"lease-{i}")
        ledger.hold(account, f"req-{i}-b", 30, far)  # left open: it must survive the upgrade
    with store.transaction() as tx:
        for table, column in later:
            tx.run(f"ALTER TABLE {table} DROP COLUMN {column}")
    balances = {}
    for i in range(3):
        record = ledger.get(f"acct-{i}")
        assert record is not None
        balances[record.account_id] = (record.balance, record.allowance, record.topup)
    with store.reading() as tx:
        row = tx.one("SELECT COUNT(*) FROM ledger")
    assert row is not None
    store.close()
    return ledger_url, balances, int(row[0])


class TestUpgrade:
    """A ledger created before versions were recorded is adopted as version 1 and upgraded."""

    def test_upgrade_keeps_every_balance(self, populated_v1: tuple[str, dict[str, tuple[int, int, int]], int]) -> None:
        """Every migration runs; balances, open holds and the journal come through unchanged."""
        url, balances, entries = populated_v1
        store = open_url(url)
        try:
            assert store.migrated is not None
            assert (store.migrated.before, store.migrated.after) == (1, LATEST)
            assert versions(store) == [m.version for m in MIGRATIONS]
            ledger = Ledger(store, PLANS)
            for account, expected in balances.items():
                record = ledger.get(account)
                assert record is not None
                assert (record.balance, record.allowance, record.topup) == expected
                assert ledger.totals(account) == expected
            with store.reading() as tx:
                row = tx.one("SELECT COUNT(*) FROM ledger")
                assert row is not None
                assert row[0] == entries
                assert tx.one("SELECT COUNT(*) FROM holds WHERE state = 'held'") == (3,)
            settled = ledger.settle("acct-1", "req-1-b", 30, "after the upgrade")  # the open hold still settles
            assert settled.charged == 30
            after = ledger.get("acct-1")
            assert after is not None
            assert (after.balance, after.held) == (balances["acct-1"][0], 0)  # the 30 were held already
            assert ledger.totals("acct-1") == (after.balance, after.allowance, after.topup)
        finally:
            store.close()

    def test_reopening_applies_nothing(self, ledger_url: str) -> None:
        """A database at the latest version is left as it is."""
        open_url(ledger_url).close()
        store = open_url(ledger_url)
        try:
            assert store.migrated is not None
            assert (store.migrated.before, store.migrated.after) == (LATEST, LATEST)
            assert versions(store) == [m.version for m in MIGRATIONS]
        finally:
            store.close()


def _schema(path: Path) -> set[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    objects = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    columns = {
        (table, str(col[1]), f"{col[2]} notnull={col[3]} pk={col[5]}")
        for (kind, table, _) in objects
        if kind == "table"
        for col in conn.execute(f"PRAGMA table_info({table})")
    }
    conn.close()
    return {tuple(o) for o in objects} | columns


def test_upgraded_schema_equals_a_fresh_one(tmp_path: Path) -> None:
    """An adopted and upgraded SQLite ledger has exactly the tables, columns and indexes of a new one."""
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    create_v1(f"sqlite:{old}")
    SqliteStore(old).close()
    SqliteStore(new).close()
    assert _schema(old) == _schema(new)
    assert ("index", "ledger_account_time", "ledger") in _schema(new)


class TestConcurrentStart:
    """Replicas that start together apply each migration once."""

    def test_stores_opened_at_once(self, ledger_url: str) -> None:
        """Four stores open the same empty database at the same moment: one migrates, the others find it done."""
        barrier = threading.Barrier(4)
        stores: list[Store] = []
        errors: list[BaseException] = []

        def open_one() -> None:
            barrier.wait()
            try:
                stores.append(open_url(ledger_url))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        try:
            assert errors == []
            done = sorted((s.migrated.before, s.migrated.after) for s in stores if s.migrated is not None)
            assert done == [(0, LATEST)] + [(LATEST, LATEST)] * 3
            assert versions(stores[0]) == [m.version for m in MIGRATIONS]
        finally:
            for s in stores:
                s.close()

    def test_migrate_commands_at_once(self, ledger_url: str) -> None:
        """Three `switchboard migrate` processes against one database: all succeed, each version is recorded once."""
        procs = [
            subprocess.Popen(
                [str(BIN), "migrate", "--ledger", ledger_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        said = sorted(out.strip().splitlines()[-1] for out, _ in outputs)  # after the JSON log lines
        assert said == [f"ledger schema: version 0 -> {LATEST}"] + [f"ledger schema: version {LATEST}, up to date"] * 2
        store = open_url(ledger_url)
        try:
            assert versions(store) == [m.version for m in MIGRATIONS]
        finally:
            store.close()


class TestNewerSchema:
    """A build refuses a ledger migrated by a newer build."""

    @pytest.fixture
    def newer(self, ledger_url: str) -> str:
        store = open_url(ledger_url)
        with store.transaction() as tx:
            tx.run(
                "INSERT INTO schema_version (version, description, applied_ms) VALUES (%s, 'from the future', 0)",
                (LATEST + 1,),
            )
        store.close()
        return ledger_url

    def test_store_refuses(self, newer: str) -> None:
        """Opening the store raises SchemaTooNewError naming both versions."""
        with pytest.raises(SchemaTooNewError) as caught:
            open_url(newer)
        assert (caught.value.found, caught.value.known) == (LATEST + 1, LATEST)
        assert f"version {LATEST + 1}" in str(caught.value)
        assert f"version {LATEST}" in str(caught.value)

    @pytest.mark.parametrize("workers", ["1", "2"])
    def test_serve_refuses_to_start(self, newer: str, tmp_path: Path, workers: str) -> None:
        """`switchboard serve` (one process, or a supervisor before it starts workers) exits with
        status 2 and says which versions it found and knows."""
        proc = subprocess.run(
            [str(BIN), "serve", "--workers", workers, "--listen", "127.0.0.1:0", "--ledger", newer],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        assert f"schema is at version {LATEST + 1}, newer than version {LATEST}" in proc.stderr
