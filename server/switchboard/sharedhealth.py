"""Model health shared by every worker and replica of a deployment.

Each process keeps its own ``CircuitBreaker``, which selection, ListModels and the health service
read without any I/O. ``SharedHealth`` keeps it in step with a ``HealthStore`` that all
processes share: Redis when the limiter uses one (the limiter's URL), otherwise the ledger's own
database (``model_health``, see ``migrations``).

- A failure is counted in the local breaker at once and written to the store right away (a
  background task; the caller never waits). A success is written only when it closes a breaker
  that had failures, so a healthy model costs no writes.
- Every ``interval_s`` the task reads the whole shared state (one round trip: a few rows) and
  makes it the local breaker's state; a cool-down started anywhere is seen everywhere.

So every process agrees within ``interval_s`` plus one store round trip of a failure being
counted anywhere. When the store cannot be reached, each process goes on with its own breaker
(per-process health), logs that once per outage, and takes the shared state back as soon as the
store answers again; callers never see an error from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import structlog

from switchboard.health import CircuitBreaker
from switchboard.ledger import Store
from switchboard.types import BreakerState, HealthStore

log = structlog.get_logger("switchboard")


class SharedHealth:
    """A ``ModelHealth`` whose breakers are shared through a ``HealthStore``."""

    def __init__(self, breaker: CircuitBreaker, store: HealthStore, interval_s: float = 0.5) -> None:
        self.breaker = breaker
        self.store = store
        self.interval_s = interval_s
        self._pending: deque[tuple[str, str]] = deque()  # ("failure" | "success", model id), in order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.shared = True
        """False while the store cannot be reached (per-process health)."""
        self.syncs = 0
        """Snapshots taken from the store (for tests and diagnostics)."""

    @property
    def on_change(self) -> Callable[[str, bool], None] | None:
        """Told (model id, serving) when a cool-down starts or ends, here or elsewhere."""
        return self.breaker.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[str, bool], None] | None) -> None:
        self.breaker.on_change = callback

    def is_available(self, model_id: str) -> bool:
        """False while the model cools down (as last read from the store, or counted here since)."""
        return self.breaker.is_available(model_id)

    def cooldown_remaining_ms(self, model_id: str) -> int:
        """Milliseconds until the model is tried again; 0 when it is available."""
        return self.breaker.cooldown_remaining_ms(model_id)

    def record_failure(self, model_id: str) -> None:
        """Count the failure here now and in the store right after."""
        self.breaker.record_failure(model_id)
        self._push("failure", model_id)

    def record_success(self, model_id: str) -> None:
        """Close the breaker; tell the store only when there were failures to forget."""
        had_failures = self.breaker.failures(model_id) > 0
        self.breaker.record_success(model_id)
        if had_failures:
            self._push("success", model_id)

    def _push(self, kind: str, model_id: str) -> None:
        self._pending.append((kind, model_id))
        self._wake.set()

    def start(self) -> None:
        """Start following the store on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop following the store and close its connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.store.close()

    async def sync(self) -> None:
        """Write the failures and successes counted here, then take the store's state, except
        for models with a failure or success counted while it was being read (the store has
        not seen those yet: they keep their local state until the next sync)."""
        threshold, cooldown_ms = self.breaker.threshold, round(self.breaker.cooldown_s * 1000)
        while self._pending:
            kind, model_id = self._pending[0]
            if kind == "failure":
                await self.store.failure(model_id, threshold, cooldown_ms)
            else:
                await self.store.success(model_id)
            self._pending.popleft()
        states = await self.store.snapshot()
        self.syncs += 1
        self.breaker.replace(states, keep={model_id for _, model_id in self._pending})

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.sync()
                if not self.shared:
                    self.shared = True
                    log.info("model_health_shared", message="the shared model health store answers again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: go on with this process's own breaker
                self._pending.clear()  # already counted here; the store takes over when it is back
                if self.shared:
                    self.shared = False
                    log.warning(
                        "model_health_not_shared",
                        error=f"{type(exc).__name__}: {exc}",
                        message="the shared model health store cannot be reached: each process uses its own",
                    )
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval_s)


# KEYS[1]: a hash of model id -> "failures:open_until_ms" (Redis's own clock).
# ARGV: model id, threshold, cool-down in ms.
_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failures, open_until = 0, 0
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local sep = string.find(v, ':', 1, true)
  failures = tonumber(string.sub(v, 1, sep - 1))
  open_until = tonumber(string.sub(v, sep + 1))
end
failures = failures + 1
if failures >= tonumber(ARGV[2]) then open_until = now + tonumber(ARGV[3]) end
redis.call('HSET', KEYS[1], ARGV[1], failures .. ':' .. open_until)
return failures
"""
_SNAPSHOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, ':', 1, true)
  local remaining = tonumber(string.sub(v, sep + 1)) - now
  if remaining < 0 then remaining = 0 end
  table.insert(out, all[i])
  table.insert(out, tonumber(string.sub(v, 1, sep - 1)))
  table.insert(out, remaining)
end
return out
"""


class RedisHealthStore:
    """Breakers in one Redis hash; cool-downs are timed by Redis's clock, so replicas' clocks
    need not agree."""

    def __init__(self, url: str, key: str = "switchboard:model-health", timeout_s: float = 2.0) -> None:
        import redis.asyncio as aioredis  # noqa: PLC0415 - only multi-replica deployments need it

        self.key = key
        self._redis = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._failure = self._redis.register_script(_FAILURE)
        self._snapshot = self._redis.register_script(_SNAPSHOT)

    async def failure(self, model_id: str, threshold: int, cooldown_ms: int) -> None:
        """Count a failure atomically."""
        await self._failure(keys=[self.key], args=[model_id, threshold, cooldown_ms])

    async def success(self, model_id: str) -> None:
        """Forget the model's failures."""
        await self._redis.hdel(self.key, model_id)

    async def snapshot(self) -> dict[str, BreakerState]:
        """Every model with failures, with the cool-down left."""
        flat = await self._snapshot(keys=[self.key])
        return {
            (flat[i].decode() if isinstance(flat[i], bytes) else str(flat[i])): BreakerState(
                int(flat[i + 1]), int(flat[i + 2])
            )
            for i in range(0, len(flat), 3)
        }

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


_UPSERT_FAILURE = """
INSERT INTO model_health (model_id, failures, open_until_ms) VALUES (%s, 1, %s)
ON CONFLICT (model_id) DO UPDATE SET
  failures = model_health.failures + 1,
  open_until_ms = CASE WHEN model_health.failures + 1 >= %s THEN %s ELSE model_health.open_until_ms END
"""


class LedgerHealthStore:
    """Breakers in the ledger's database (table ``model_health``), on a thread of their own so
    they never wait behind ledger work on the event loop. Cool-downs are timed by each
    process's wall clock (replicas' clocks are assumed to agree to well under a second)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _failure(self, model_id: str, threshold: int, cooldown_ms: int) -> None:
        open_until = self._now_ms() + cooldown_ms
        with self.store.transaction() as tx:
            tx.run(_UPSERT_FAILURE, (model_id, open_until if threshold <= 1 else 0, threshold, open_until))

    def _success(self, model_id: str) -> None:
        with self.store.transaction() as tx:
            tx.run("DELETE FROM model_health WHERE model_id = %s", (model_id,))

    def _snapshot(self) -> dict[str, BreakerState]:
        with self.store.reading() as tx:
            rows = tx.all("SELECT model_id, failures, open_until_ms FROM model_health")
        now = self._now_ms()
        return {str(m): BreakerState(int(f), max(0, int(until) - now)) for m, f, until in rows}

    async def failure(self, model_id: str, threshold: int, cooldown_ms: int) -> None:
        """Count a failure in one statement."""
        await asyncio.to_thread(self._failure, model_id, threshold, cooldown_ms)

    async def success(self, model_id: str) -> None:
        """Forget the model's failures."""
        await asyncio.to_thread(self._success, model_id)

    async def snapshot(self) -> dict[str, BreakerState]:
        """Every model with failures, with the cool-down left."""
        return await asyncio.to_thread(self._snapshot)

    async def close(self) -> None:
        """The ledger's store is closed by its owner."""
