"""Ledger stores: SQLite (the embedded default) and PostgreSQL (shared by several replicas).

Both give the ledger write transactions that serialize on the account: SQLite by taking the
database's write lock up front (``BEGIN IMMEDIATE``, WAL mode), PostgreSQL by ``SELECT ... FOR
UPDATE`` on the account row. The schema is the same in both.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from switchboard.errors import ConfigError
from switchboard.ledger import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  plan_id TEXT NOT NULL,
  allowance BIGINT NOT NULL,
  topup BIGINT NOT NULL,
  period_start BIGINT NOT NULL,
  period_end BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
  account_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  allowance_part BIGINT NOT NULL,
  topup_part BIGINT NOT NULL,
  period_start BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (account_id, request_id)
);
CREATE INDEX IF NOT EXISTS holds_open ON holds (state, expires_ms);
CREATE INDEX IF NOT EXISTS holds_account_state ON holds (account_id, state);
CREATE TABLE IF NOT EXISTS ledger (
  seq {serial},
  account_id TEXT NOT NULL,
  kind INTEGER NOT NULL,
  amount BIGINT NOT NULL,
  allowance_delta BIGINT NOT NULL,
  topup_delta BIGINT NOT NULL,
  credits BIGINT NOT NULL,
  request_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  note TEXT NOT NULL,
  created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger (account_id, seq);
CREATE TABLE IF NOT EXISTS slots (
  account_id TEXT NOT NULL,
  lease TEXT NOT NULL,
  expires_ms BIGINT NOT NULL,
  PRIMARY KEY (account_id, lease)
);
"""


# schema change: fold into a migration. What a settlement records for usage reports (see
# ledger.ChargeUsage), added to ledgers created before it; every statement is idempotent.
_USAGE_COLUMNS = (
    ("model_id", "TEXT NOT NULL DEFAULT ''"),
    ("modality", "INTEGER NOT NULL DEFAULT 0"),
    ("tier", "INTEGER NOT NULL DEFAULT 0"),
    ("input_tokens", "BIGINT NOT NULL DEFAULT 0"),
    ("output_tokens", "BIGINT NOT NULL DEFAULT 0"),
)
# Usage reads an account's entries of a few kinds in a time range, or one model's across accounts.
_USAGE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ledger_account_kind_time ON ledger (account_id, kind, created_ms)",
    "CREATE INDEX IF NOT EXISTS ledger_model_time ON ledger (model_id, created_ms)",
)
# schema change: fold into a migration. Settlements summed per account, UTC day and model, kept in
# the settlement's transaction (ledger.Ledger._journal), so usage over whole days reads a few rows
# per day instead of every entry; filled from the ledger's settlements when first created.
_USAGE_DAILY = """
CREATE TABLE IF NOT EXISTS usage_daily (
  account_id TEXT NOT NULL,
  day BIGINT NOT NULL,
  model_id TEXT NOT NULL,
  modality INTEGER NOT NULL,
  tier INTEGER NOT NULL,
  requests BIGINT NOT NULL,
  credits BIGINT NOT NULL,
  input_tokens BIGINT NOT NULL,
  output_tokens BIGINT NOT NULL,
  PRIMARY KEY (account_id, day, model_id, modality, tier)
);
CREATE INDEX IF NOT EXISTS usage_daily_model ON usage_daily (model_id, day);
"""
USAGE_BACKFILL = (
    "INSERT INTO usage_daily (account_id, day, model_id, modality, tier, requests, credits, input_tokens,"
    " output_tokens) SELECT account_id, created_ms / 86400000, model_id, modality, tier, COUNT(*), SUM(credits),"
    " SUM(input_tokens), SUM(output_tokens) FROM ledger WHERE kind IN (5, 6)"
    " GROUP BY account_id, created_ms / 86400000, model_id, modality, tier"
)


def _add_usage_columns_sqlite(conn: sqlite3.Connection) -> None:
    """Add the usage columns and indexes to an SQLite ledger that lacks them (idempotent, and safe
    when several processes open the ledger at once)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
    for name, decl in _USAGE_COLUMNS:
        if name not in have:
            try:
                conn.execute(f"ALTER TABLE ledger ADD COLUMN {name} {decl}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise
    for statement in _USAGE_INDEXES:
        conn.execute(statement)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage_daily'").fetchone() is None:
            for statement in _USAGE_DAILY.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(USAGE_BACKFILL)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.conn.execute(sql.replace("%s", "?"), params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql.replace("%s", "?"), params).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql.replace("%s", "?"), params).rowcount


_BUSY_TIMEOUT_S = 30.0


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def sqlite_connect(path: str | Path, schema: str) -> sqlite3.Connection:
    """A connection in WAL mode with ``schema`` created. Switching to WAL does not wait on other
    processes' locks, so set-up is retried while several workers start at once."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={round(_BUSY_TIMEOUT_S * 1000)}")
            conn.executescript(schema)
            return conn
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or attempt == 199:
                raise
            time.sleep(0.05)
    return conn


class SqliteStore:
    """The ledger in one SQLite file (WAL mode). Safe for several processes on one machine."""

    for_update = ""
    workers = 1
    binary_collation = " COLLATE BINARY"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite_connect(self.path, _SCHEMA.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
        _add_usage_columns_sqlite(self._conn)
        self._lock = threading.Lock()

    def _begin_immediate(self) -> None:
        """Take the write lock, retrying every 50 µs to 1 ms while another process holds it.

        SQLite's own busy handler sleeps 1, 2, 5 ... up to 100 ms between tries, however soon the
        lock is free; with one ledger thread per process, one such sleep stalls every request of
        the process queued behind it. Ledger transactions hold the lock for well under a
        millisecond, so a fine-grained retry gets it as soon as it is released."""
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=0")
        try:
            delay = 0.00005
            deadline = time.monotonic() + _BUSY_TIMEOUT_S
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, 0.001)
        finally:
            conn.execute(f"PRAGMA busy_timeout={round(_BUSY_TIMEOUT_S * 1000)}")

    @contextmanager
    def transaction(self) -> Iterator[_SqliteTx]:
        """A write transaction holding the database's write lock from the start."""
        with self._lock:
            self._begin_immediate()
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[_SqliteTx]:
        """A read snapshot (deferred transaction: no write lock)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield _SqliteTx(self._conn)
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _PgTx:
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.cur.execute(sql, params)
        row: tuple[Any, ...] | None = self.cur.fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(sql, params)
        return list(self.cur.fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(sql, params)
        return int(self.cur.rowcount)


class PostgresStore:
    """The ledger in PostgreSQL, shared by every replica; accounts are locked row by row."""

    for_update = " FOR UPDATE"
    binary_collation = ' COLLATE "C"'

    def __init__(self, dsn: str, workers: int = 8) -> None:
        from psycopg_pool import ConnectionPool  # noqa: PLC0415 - only PostgreSQL deployments need it

        self.workers = workers
        self._pool = ConnectionPool(dsn, min_size=1, max_size=workers, open=True, kwargs={"autocommit": False})
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(727274)")  # one replica creates the schema at a time
            for statement in _SCHEMA.format(serial="BIGSERIAL PRIMARY KEY").split(";"):
                if statement.strip():
                    conn.execute(statement)
            for name, decl in _USAGE_COLUMNS:
                conn.execute(f"ALTER TABLE ledger ADD COLUMN IF NOT EXISTS {name} {decl}")
            for statement in _USAGE_INDEXES:
                conn.execute(statement)
            row = conn.execute("SELECT to_regclass('usage_daily')").fetchone()
            if row is None or row[0] is None:
                for statement in _USAGE_DAILY.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(USAGE_BACKFILL)

    @contextmanager
    def transaction(self) -> Iterator[_PgTx]:
        """A transaction on a pooled connection, committed on exit."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PgTx(cur)

    @contextmanager
    def reading(self) -> Iterator[_PgTx]:
        """A read-only transaction on a pooled connection."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            yield _PgTx(cur)

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()


def open_store(url: str) -> Store:
    """The store a ledger URL names: ``sqlite:PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:"):
        return SqliteStore(url.removeprefix("sqlite:").removeprefix("//"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise ConfigError(f"--ledger {url!r}: use sqlite:PATH or postgresql://...")
