"""Per-account limits on concurrent Generate calls.

A slot is a lease: taken when a stream starts, returned when it ends (completion, error,
cancellation, deadline). ``MemoryLimiter`` counts in this process; ``RedisLimiter`` counts across
replicas with leases that expire unless refreshed, so the slots of a crashed replica come back on
their own. A call over the limit is refused at once (CONCURRENCY_LIMIT); it does not queue.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from switchboard.errors import ExhaustedError
from switchboard.ledger import AsyncLedger, SlotClaim
from switchboard.outage import Outage

T = TypeVar("T")


class SlotLimiter(Protocol):
    """Counts an account's streams in flight against a limit."""

    def claim(self, lease_id: str, limit: int) -> SlotClaim | None:
        """A slot for the ledger to take in the same transaction as the credit hold (and return in
        the settlement's), or None when this limiter keeps its slots itself (``acquire``)."""
        ...

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot unless ``limit`` (0: none) are taken already."""
        ...

    async def refresh(self, account_id: str, lease_id: str) -> bool:
        """Keep a lease alive; False when it is gone (expired and taken away)."""
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

    def claim(self, lease_id: str, limit: int) -> None:
        """Slots are kept here, not in the ledger."""

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot unless the limit is reached."""
        held = self._slots.setdefault(account_id, set())
        if limit and len(held) >= limit:
            return False
        held.add(lease_id)
        return True

    async def refresh(self, account_id: str, lease_id: str) -> bool:
        """Nothing expires in one process: True while the slot is held."""
        return lease_id in self._slots.get(account_id, ())

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
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) >= now then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
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
        self.outage = Outage("limiter", "LIMITER_UNAVAILABLE")
        from redis.asyncio.retry import Retry  # noqa: PLC0415
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

        # A pooled connection that Redis closed (it restarted) fails its next command; that command
        # is sent again at once on a new connection, so calls do not fail while Redis is up. Every
        # command here is idempotent (a lease is a sorted-set member named by the stream). A
        # timeout is not retried: it would only double the wait.
        self._redis = aioredis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._refresh = self._redis.register_script(_REFRESH)
        self._count = self._redis.register_script(_COUNT)

    def claim(self, lease_id: str, limit: int) -> None:
        """Slots are kept in Redis, not in the ledger."""

    async def _reach(self, work: Awaitable[T]) -> T:
        """Await a Redis call; LIMITER_UNAVAILABLE (one log line per outage) when Redis is unreachable."""
        from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
        from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: PLC0415

        try:
            result = await work
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self.outage.failed(exc) from None
        self.outage.succeeded()
        return result

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot atomically unless the limit is reached."""
        args: list[str | int] = [lease_id, limit, self.lease_ms]
        return bool(await self._reach(self._acquire(keys=[self.prefix + account_id], args=args)))

    async def refresh(self, account_id: str, lease_id: str) -> bool:
        """Push the lease's expiry back by a full lease; False when it had expired."""
        return bool(await self._reach(self._refresh(keys=[self.prefix + account_id], args=[lease_id, self.lease_ms])))

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return the slot."""
        await self._reach(self._redis.zrem(self.prefix + account_id, lease_id))

    async def in_flight(self, account_id: str) -> int:
        """Live leases of the account."""
        return int(await self._reach(self._count(keys=[self.prefix + account_id])))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


class LedgerSlots:
    """Slots kept in the ledger's own database (the default): a Generate call takes its slot in
    the same transaction as its credit hold and returns it in the same transaction as the
    settlement, so the limit costs no extra round trip and holds across every worker and replica
    that share the ledger. Slots lapse unless refreshed, so a crashed process's slots come back."""

    def __init__(self, ledger: AsyncLedger, lease_s: float = 30.0) -> None:
        self.ledger = ledger
        self.lease_s = lease_s

    def claim(self, lease_id: str, limit: int) -> SlotClaim:
        """The claim for a slot taken or refreshed now."""
        return SlotClaim(lease_id, limit, int((time.time() + self.lease_s) * 1000))

    async def acquire(self, account_id: str, lease_id: str, limit: int) -> bool:
        """Take a slot on its own (no hold) unless the limit is reached."""
        try:
            await self.ledger.take_slot(account_id, self.claim(lease_id, limit))
        except ExhaustedError:
            return False
        return True

    async def refresh(self, account_id: str, lease_id: str) -> bool:
        """Push the slot's expiry back (the hold's refresh does this for Generate calls)."""
        return await self.ledger.refresh_slot(account_id, self.claim(lease_id, 0))

    async def release(self, account_id: str, lease_id: str) -> None:
        """Return the slot."""
        await self.ledger.release_slot(account_id, lease_id)

    async def in_flight(self, account_id: str) -> int:
        """Live slots of the account."""
        return await self.ledger.slots_in_use(account_id)

    async def close(self) -> None:
        """The ledger is closed by its owner."""
