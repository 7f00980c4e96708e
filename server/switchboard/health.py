"""Model health: a circuit breaker per model.

A model whose calls fail ``threshold`` times in a row (provider errors only; a caller's
cancellation is not a failure) is cooling down for ``cooldown_s`` seconds: automatic selection
skips it. When the cool-down ends the model is tried again (half-open): a success closes the
breaker, and a single failure starts a new cool-down. Pinned requests are not affected: the
breaker only steers automatic selection. Reading the state (``is_available``, metrics) changes
nothing.

It is pure: no I/O, an injectable clock. It is the selector's ``HealthView``, the generator's
``AttemptObserver`` and, on its own, per-process ``ModelHealth``; ``sharedhealth`` keeps it in
step with the other processes of a deployment through ``replace``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

import structlog

from switchboard.types import BreakerState

log = structlog.get_logger("switchboard")


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreaker:
    """Per-model failure counting and cool-downs."""

    def __init__(
        self, threshold: int = 3, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.on_change: Callable[[str, bool], None] | None = None
        """Told (model id, serving) when a cool-down starts and when a model succeeds again."""
        self.threshold = max(1, threshold)
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._states: dict[str, _State] = {}
        self.cooldowns = 0
        """How many cool-downs have started (for metrics)."""

    def is_available(self, model_id: str) -> bool:
        """False while the model cools down."""
        state = self._states.get(model_id)
        return state is None or state.failures < self.threshold or self.clock() >= state.open_until

    def record_success(self, model_id: str) -> None:
        """A call finished: the breaker closes."""
        state = self._states.pop(model_id, None)
        if state is not None and state.failures >= self.threshold:
            log.info("model_recovered", model=model_id)
            if self.on_change is not None:
                self.on_change(model_id, True)

    def record_failure(self, model_id: str) -> None:
        """A call failed with a provider error."""
        state = self._states.setdefault(model_id, _State())
        state.failures += 1
        if state.failures >= self.threshold:
            state.open_until = self.clock() + self.cooldown_s
            self.cooldowns += 1
            log.warning("model_cooling_down", model=model_id, failures=state.failures, cooldown_s=self.cooldown_s)
            if self.on_change is not None:
                self.on_change(model_id, False)

    def cooldown_remaining_ms(self, model_id: str) -> int:
        """Milliseconds until the model is tried again; 0 when it is available."""
        state = self._states.get(model_id)
        if state is None or state.failures < self.threshold:
            return 0
        return max(0, round((state.open_until - self.clock()) * 1000))

    def failures(self, model_id: str) -> int:
        """Consecutive failures counted for the model (0 after a success)."""
        state = self._states.get(model_id)
        return 0 if state is None else state.failures

    def replace(self, states: Mapping[str, BreakerState], keep: Set[str] = frozenset()) -> None:
        """Take ``states`` (read from a shared store just now) as the whole truth, except for the
        models in ``keep`` (counted here since, not yet in the store), whose state stays as it is:
        every other model not in ``states`` has no failures. ``on_change`` hears of each
        cool-down that starts or ends."""
        now = self.clock()
        before = {m for m, state in self._states.items() if state.failures >= self.threshold}
        fresh = {
            m: _State(state.failures, now + state.remaining_ms / 1000)
            for m, state in states.items()
            if state.failures and m not in keep
        }
        fresh.update((m, state) for m, state in self._states.items() if m in keep)
        self._states = fresh
        after = {m for m, state in self._states.items() if state.failures >= self.threshold}
        for model_id in sorted(after - before):
            log.warning("model_cooling_down", model=model_id, failures=self._states[model_id].failures, shared=True)
            if self.on_change is not None:
                self.on_change(model_id, False)
        for model_id in sorted(before - after):
            log.info("model_recovered", model=model_id, shared=True)
            if self.on_change is not None:
                self.on_change(model_id, True)

    def start(self) -> None:
        """Nothing runs in the background."""

    async def close(self) -> None:
        """Nothing to release."""
