"""Per-account limits on concurrent Generate calls.

A slot is a lease: taken when a stream starts, returned when it ends (completion, error,
cancellation, deadline). ``MemoryLimiter`` counts in this process; ``RedisLimiter`` counts across
replicas with leases that expire unless refreshed, so the slots of a crashed replica come back on
their own. A call over the limit is refused at once (CONCURRENCY_LIMIT); it does not queue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class SlotLimiter(Protocol):
    """Counts an account's streams in flight against a limit."""

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot unless ``limit`` (0: none) are taken already."""
        ...

    async def refresh(self, account_id: str, lease_id: str) -> None:
        """Keep a lease alive."""
        ...

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return a slot (idempotent)."""
        ...

    async def in_flight(self, account_id: str) -> int:
        """How many slots the account holds."""
        ...

    async def close(self) -> None:
        """Drop connections."""
        ...


class MemoryLimiter:
    """Slots counted in this process."""

    def __init__(self) -> None:
        self._slots: dict[str, set[str]] = {}

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot unless the limit is reached."""
        held = self._slots.setdefault(account_id, set())
        if limit and len(held) >= limit:
            return False
        held.add(lease_id)
        return True

    async def refresh(self, account_id: str, lease_id: str) -> None:
        """Nothing to refresh in one process."""

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return a slot."""
        held = self._slots.get(account_id)
        if held is not None:
            held.discard(lease_id)
            if not held:
                del self._slots[account_id]

    async def in_flight(self, account_id: str) -> int:
        """Slots held by the account."""
        return len(self._slots.get(account_id, ()))

    async def close(self) -> None:
        """Nothing to close."""


# KEYS[1]: the account's sorted set of leases (score: expiry in ms, Redis's own clock).
# ARGV: lease id, limit (0: none), lease ttl in ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
end
return 1
"""
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisLimiter:
    """Slots shared by every replica, as leases in Redis that expire unless refreshed."""

    def __init__(self, url: str, lease_s: float = 30.0, prefix: str = "switchboard:slots:") -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - only multi-replica deployments need it

        self.lease_ms = int(lease_s * 1000)
        self.prefix = prefix
        self._redis = aioredis.from_url(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._refresh = self._redis.register_script(_REFRESH)
        self._count = self._redis.register_script(_COUNT)

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot atomically unless the limit is reached."""
        return bool(await self._acquire(keys=[self.prefix + account_id], args=[lease_id, limit, self.lease_ms]))

    async def refresh(self, account_id: str, lease_id: str) -> None:
        """Push the lease's expiry back by a full lease."""
        await self._refresh(keys=[self.prefix + account_id], args=[lease_id, self.lease_ms])

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return the slot."""
        await self._redis.zrem(self.prefix + account_id, lease_id)

    async def in_flight(self, account_id: str) -> int:
        """Live leases of the account."""
        return int(await self._count(keys=[self.prefix + account_id]))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class SqliteLimiter:
    """Slots shared by the worker processes of one machine, as leases in the ledger's SQLite file
    (the default when ``--workers`` is above 1 with the SQLite ledger)."""

    def __init__(self, path: str, lease_s: float = 30.0) -> None:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

        from switchboard.stores import sqlite_connect  # noqa: PLC0415

        self.lease_ms = int(lease_s * 1000)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slots")
        self._conn = sqlite_connect(
            path,
            "CREATE TABLE IF NOT EXISTS slots (account_id TEXT NOT NULL, lease_id TEXT NOT NULL,"
            " expires_ms BIGINT NOT NULL, PRIMARY KEY (account_id, lease_id));",
        )

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _tx(self, fn: Callable[[], T]) -> T:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot atomically unless the limit is reached."""

        def take() -> bool:
            now = int(time.time() * 1000)
            c = self._conn
            c.execute("DELETE FROM slots WHERE account_id = ? AND expires_ms < ?", (account_id, now))
            (held,) = c.execute("SELECT COUNT(*) FROM slots WHERE account_id = ?", (account_id,)).fetchone()
            if limit and held >= limit:
                return False
            c.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, ?)", (account_id, lease_id, now + self.lease_ms))
            return True

        return await self._run(lambda: self._tx(take))

    async def refresh(self, account_id: str, lease_id: str) -> None:
        """Push the lease's expiry back by a full lease."""
        expires = int(time.time() * 1000) + self.lease_ms
        await self._run(
            lambda: self._conn.execute(
                "UPDATE slots SET expires_ms = ? WHERE account_id = ? AND lease_id = ?", (expires, account_id, lease_id)
            )
        )

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return the slot."""
        sql = "DELETE FROM slots WHERE account_id = ? AND lease_id = ?"
        await self._run(lambda: self._conn.execute(sql, (account_id, lease_id)))

    async def in_flight(self, account_id: str) -> int:
        """Live leases of the account."""
        now = int(time.time() * 1000)
        row = await self._run(
            lambda: self._conn.execute(
                "SELECT COUNT(*) FROM slots WHERE account_id = ? AND expires_ms >= ?", (account_id, now)
            ).fetchone()
        )
        return int(row[0])

    async def close(self) -> None:
        """Stop the thread and close the connection."""
        self._pool.shutdown(wait=True)
        self._conn.close()
