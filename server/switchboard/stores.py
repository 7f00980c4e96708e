"""Ledger stores: SQLite (the embedded default) and PostgreSQL (shared by several replicas).

Both give the ledger write transactions that serialize on the account: SQLite by taking the
database's write lock up front (``BEGIN IMMEDIATE``, WAL mode), PostgreSQL by ``SELECT ... FOR
UPDATE`` on the account row. The schema is the same in both; ``migrations`` creates and upgrades
it when a store opens.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from switchboard import migrations
from switchboard.errors import ConfigError
from switchboard.migrations import Migrated


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
_SQLITE_UNREACHABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full")
"""SQLite errors that mean the database file cannot be used now (rather than a bug)."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def sqlite_connect(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode. Switching to WAL does not wait on other processes' locks, so
    set-up is retried while several workers start at once."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    for attempt in range(200):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={round(_BUSY_TIMEOUT_S * 1000)}")
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

    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        """Open (creating) the file and, unless ``migrate`` is False, bring its schema to the
        latest version (``migrated`` says what was done)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite_connect(self.path)
        self._lock = threading.Lock()
        self.migrated: Migrated | None = None
        if migrate:
            try:
                with self.transaction() as tx:  # BEGIN IMMEDIATE: one process migrates at a time
                    self.migrated = migrations.migrate(tx, "sqlite")
            except BaseException:
                self._conn.close()
                raise

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
        """Close the connection, once no other thread is using it (closing it under a running
        statement crashes the process)."""
        with self._lock:
            self._conn.close()

    @staticmethod
    def unreachable(exc: BaseException) -> bool:
        """The file cannot be opened, read or written, or stayed locked past the busy timeout."""
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and any(m in text for m in _SQLITE_UNREACHABLE)

    @staticmethod
    def busy(exc: BaseException) -> bool:
        """A lock held past the busy timeout already counts as unreachable: nothing else is busy."""
        return False


_PG_WAIT_S = 5.0
"""How long a ledger call waits for a PostgreSQL connection before it is LEDGER_UNAVAILABLE."""
_PG_LOCK_WAIT_MS = 3000
"""How long a ledger statement waits for a row lock. Ledger transactions hold their locks for
milliseconds; a lock held for seconds belongs to a peer that stopped inside a transaction (a
replica paused by SIGSTOP or a GC pause, a machine lost before its connection is dropped), and a
call waiting for it would hang until the peer resumes. It ends LEDGER_UNAVAILABLE instead."""
_PG_STATEMENT_MS = 10_000
"""The longest one ledger statement may run (a backstop: ledger statements take milliseconds)."""


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

    def __init__(self, dsn: str, workers: int = 8, *, migrate: bool = True) -> None:
        """Open a pool of up to ``workers`` connections and, unless ``migrate`` is False, bring the
        schema to the latest version (``migrated`` says what was done)."""
        from psycopg_pool import ConnectionPool  # noqa: PLC0415 - only PostgreSQL deployments need it

        self.workers = workers
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=workers,
            open=True,
            timeout=_PG_WAIT_S,
            kwargs={
                "autocommit": False,
                "connect_timeout": 5,
                "options": f"-c lock_timeout={_PG_LOCK_WAIT_MS} -c statement_timeout={_PG_STATEMENT_MS}",
            },
        )
        self.migrated: Migrated | None = None
        if migrate:
            try:
                with self.transaction() as tx:
                    # One replica at a time, however long another one's migration takes.
                    tx.run("SET LOCAL lock_timeout = 0")
                    tx.run("SET LOCAL statement_timeout = 0")
                    tx.run("SELECT pg_advisory_xact_lock(%s)", (migrations.ADVISORY_LOCK,))
                    self.migrated = migrations.migrate(tx, "postgresql")
            except BaseException:
                self._pool.close()
                raise

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

    @staticmethod
    def unreachable(exc: BaseException) -> bool:
        """The server refuses or dropped the connection, or no connection came within the wait."""
        import psycopg  # noqa: PLC0415
        from psycopg_pool import PoolTimeout  # noqa: PLC0415

        if isinstance(exc, psycopg.InterfaceError | PoolTimeout):
            return True
        # Connection exceptions (08...) and server shutdown (57P...), or no SQLSTATE at all (the
        # connection broke); a deadlock or serialization failure is not an outage.
        state = getattr(exc, "sqlstate", None) or ""
        return isinstance(exc, psycopg.OperationalError) and (not state or state.startswith(("08", "57P")))

    @staticmethod
    def busy(exc: BaseException) -> bool:
        """A statement gave up waiting for a row lock (``lock_timeout``) or ran past
        ``statement_timeout``: the database answers, but a peer holds what the call needs."""
        import psycopg  # noqa: PLC0415

        return isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled)


def open_store(url: str, pool: int = 8) -> SqliteStore | PostgresStore:
    """The store a ledger URL names, ``sqlite:PATH`` or ``postgresql://...`` (with up to ``pool``
    connections), its schema migrated to the latest version."""
    if url.startswith("sqlite:"):
        return SqliteStore(url.removeprefix("sqlite:").removeprefix("//"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, pool)
    raise ConfigError(f"--ledger {url!r}: use sqlite:PATH or postgresql://...")
