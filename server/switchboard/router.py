"""The Generate and SelectModel use-cases: one core object the servicer calls with converted
types (no gRPC here).

``Router.quote`` is SelectModel: the decision for a request, no side effects.

``Router.run`` is Generate: decide, take the slot and hold (deciding again on the ledger's own
balance when the cached one was stale), run with fallback, meter what is delivered, and settle
once. Its rules:

- The completion is reported for exactly what is charged: ``Completed`` is yielded *before* the
  charge with the credits it will carry; the caller builds its reply, then ``commit()`` charges.
  A run that ends before ``commit()`` — however it ends — charges nothing.
- A hold or slot found lost (another replica swept it while this process was paused past the
  hold's or lease's life) ends the run with ``HOLD_LOST``: it is not re-taken behind the limit's
  back and the answer is not finished free.
- Streams the server cuts at the end of its shutdown grace end with ``SERVER_SHUTTING_DOWN`` and
  are not charged: a cancellation the server makes is not the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TypeAlias

from switchboard import logs
from switchboard.billing import Billing, LedgerAccounts, Meter
from switchboard.errors import ExhaustedError, ShuttingDownError
from switchboard.generation import FallbackNotice, Generator, Outcome
from switchboard.providers import ProviderRegistry
from switchboard.selection import Selector
from switchboard.types import (
    AccountState,
    Artifact,
    Citation,
    Decision,
    GenerationRequest,
    HealthView,
    ReasoningChunk,
    TextChunk,
    ToolCallEvent,
)


@dataclass(frozen=True, slots=True)
class Started:
    """The decision a run starts with."""

    decision: Decision
    simulated: bool


class Completed:
    """A finished generation, reported before its charge. ``credits_charged`` is what ``commit``
    will charge; ``balance_remaining`` is known once it has."""

    __slots__ = ("_meter", "balance_remaining", "credits_charged", "outcome", "request_id")

    def __init__(self, outcome: Outcome, request_id: str, meter: Meter) -> None:
        self.outcome = outcome
        self.request_id = request_id
        self.credits_charged = meter.charge_for(outcome.credits)
        self.balance_remaining: int | None = None
        self._meter = meter

    async def commit(self) -> None:
        """Charge the credits (HOLD_LOST when the hold was swept meanwhile)."""
        await self._meter.complete(self.credits_charged, self.outcome.usage)
        self.credits_charged = self._meter.charged
        self.balance_remaining = self._meter.balance


RunEvent: TypeAlias = (
    Started | FallbackNotice | TextChunk | ReasoningChunk | Citation | Artifact | ToolCallEvent | Completed
)


class Router:
    """Quotes and runs Generate requests over one catalog, its providers and the ledger."""

    def __init__(
        self,
        accounts: LedgerAccounts,
        selector: Selector,
        health: HealthView,
        billing: Billing,
        generator: Generator,
        providers: ProviderRegistry,
    ) -> None:
        self.accounts = accounts
        self.selector = selector
        self.health = health
        self.billing = billing
        self.generator = generator
        self.providers = providers

    async def decide(self, gen: GenerationRequest, *, fresh: bool = False) -> tuple[AccountState, Decision]:
        """The account's state and the decision for ``gen`` (ACCOUNT_NOT_FOUND, selection errors)."""
        logs.bind(request_id=gen.request_id, account=gen.selection.account_id)
        account = await self.accounts.state(gen.selection.account_id, fresh=fresh)
        decision = self.selector.select(gen.selection, account, self.health)
        logs.bind(model=decision.model.id, mode=decision.mode.name.lower(), attempts=1)
        return account, decision

    async def quote(self, gen: GenerationRequest) -> tuple[Decision, bool]:
        """SelectModel: the decision Generate would make, and whether its model is simulated."""
        _, decision = await self.decide(gen)
        return decision, self.providers.is_simulated(decision.model.id)

    async def run(self, gen: GenerationRequest) -> AsyncGenerator[RunEvent, None]:
        """Generate: yield the decision, fallbacks, output, then one ``Completed`` to commit."""
        account, decision = await self.decide(gen)
        meter = self.billing.meter(account, decision, gen)
        try:
            await meter.open()
        except ExhaustedError as exc:
            if exc.reason != "INSUFFICIENT_CREDITS":
                raise
            # The balance selection used was stale: decide again on the ledger's own figure.
            account, decision = await self.decide(gen, fresh=True)
            meter = self.billing.meter(account, decision, gen)
            await meter.open()
        task = asyncio.current_task()
        running = self.billing.running
        if task is not None:
            running[task] = meter
        error: BaseException | None = None
        try:
            yield Started(decision, self.providers.is_simulated(decision.model.id))
            async with contextlib.aclosing(self.generator.run(decision, gen, gate=meter)) as events:
                async for event in events:
                    if isinstance(event, Outcome):
                        await meter.check()
                        logs.bind(model=event.model.id, attempts=event.attempts)
                        yield Completed(event, gen.request_id, meter)
                        return
                    if isinstance(event, FallbackNotice):
                        logs.bind(model=event.to_model.id, attempts=event.attempt)
                    else:
                        await meter.check()
                        meter.saw(event)
                    yield event
        except asyncio.CancelledError as exc:
            if meter.cut:
                error = ShuttingDownError()
                raise error from None
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            if task is not None:
                running.pop(task, None)
            await meter.close(error)
            if meter.settled:
                logs.bind(credits=meter.charged)
