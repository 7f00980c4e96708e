"""Credits and concurrency around one Generate call.

A ``Meter`` takes a concurrency slot and holds the decision's estimated cost before the first
provider call, keeps both alive while the stream runs, and settles exactly once:

- completed: charge the actual cost (never more than held), return the rest;
- failed or cancelled before any output: release the hold;
- the provider failed after output (STREAM_INTERRUPTED): release the hold — a broken answer is
  not billed;
- the caller cancelled, or its deadline passed, after output: charge what was delivered (the
  per-request price plus the tokens streamed), capped by the hold;
- the completion was reported but the run ended before ``complete`` charged it: release;
- the server cut the stream at shutdown, or its hold or slot was found lost: release.

Before output goes out the stream checks its hold and slot are still its own (``check``): free
while the keep-alive is on time, one ledger round trip after a pause longer than half their life.

If the process dies, the hold expires and the sweeper releases it, and a Redis lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from switchboard.errors import BackendUnavailableError, ExhaustedError, HoldLostError, NotFoundError, ShuttingDownError
from switchboard.ledger import AsyncLedger, ChargeUsage, SlotClaim
from switchboard.limiter import SlotLimiter
from switchboard.selection import Selector
from switchboard.types import (
    AccountState,
    Artifact,
    Catalog,
    Citation,
    Decision,
    GenerationRequest,
    Model,
    ProviderEvent,
    ReasoningChunk,
    TextChunk,
    ToolCallEvent,
    Usage,
)

log = structlog.get_logger("switchboard")


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """How long holds and leases live and whether unknown accounts are created."""

    hold_ttl_s: float = 300.0
    keepalive_s: float = 10.0
    auto_create_accounts: bool = False
    lease_s: float = 30.0

    @property
    def stale_s(self) -> float:
        """How long since the last confirmed refresh a stream trusts its hold and slot without
        asking the ledger: half the shorter of their lives."""
        return min(self.hold_ttl_s, self.lease_s) / 2


class LedgerAccounts:
    """Account state for selection, read from the ledger through a short cache.

    Selection only needs a recent balance: the hold that Generate takes is the atomic check, and
    a hold that finds less than the cache said makes Generate re-read and select again. A
    balance this process learns from a hold or a settlement replaces the cached one at once.
    """

    def __init__(self, ledger: AsyncLedger, catalog: Catalog, auto_create: bool, cache_s: float = 1.0) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.auto_create = auto_create
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, AccountState]] = {}

    async def state(self, account_id: str, *, fresh: bool = False) -> AccountState:
        """The account's plan and spendable balance; unknown accounts are created on the
        default plan when allowed, else ACCOUNT_NOT_FOUND."""
        now = time.monotonic()
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > now and not fresh:
            return cached[1]
        if self.auto_create:
            record = await self.ledger.ensure_account(account_id, self.catalog.default_plan_id)
        else:
            found = await self.ledger.get(account_id)
            if found is None:
                raise NotFoundError(
                    "ACCOUNT_NOT_FOUND", f"no account has the id {account_id!r}", {"account_id": account_id}
                )
            record = found
        return self.remember(account_id, record.plan_id, record.balance)

    def remember(self, account_id: str, plan_id: str, balance: int) -> AccountState:
        """Cache what the ledger just said about an account."""
        plan = self.catalog.plans.get(plan_id) or self.catalog.default_plan
        state = AccountState(account_id=account_id, plan=plan, balance=balance)
        if self.cache_s > 0:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[account_id] = (time.monotonic() + self.cache_s, state)
        return state


class Billing:
    """Makes a Meter per Generate call, and knows the meters running now."""

    def __init__(
        self, ledger: AsyncLedger, limiter: SlotLimiter, settings: BillingSettings, accounts: LedgerAccounts
    ) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.settings = settings
        self.accounts = accounts
        self.closing: set[asyncio.Future[None]] = set()
        self.running: dict[asyncio.Task[Any], Meter] = {}

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) for meters still settling, e.g. of streams just cancelled."""
        if self.closing:
            await asyncio.wait(set(self.closing), timeout=timeout_s)

    def cut(self) -> int:
        """The server cuts every running stream (end of the shutdown grace): each ends with
        SERVER_SHUTTING_DOWN and is not charged. Returns how many."""
        for task, meter in list(self.running.items()):
            meter.cut = True
            task.cancel()
        return len(self.running)

    def meter(self, account: AccountState, decision: Decision, request: GenerationRequest) -> Meter:
        """A meter for one call."""
        return Meter(self, account, decision, request)

    def expiry_ms(self) -> int:
        """When a hold taken or refreshed now expires (wall clock, as the ledger stores it)."""
        return int((time.time() + self.settings.hold_ttl_s) * 1000)


class Meter:
    """One Generate call's slot and hold, settled exactly once."""

    def __init__(self, billing: Billing, account: AccountState, decision: Decision, request: GenerationRequest) -> None:
        self.billing = billing
        self.account = account
        self.request = request
        self.model: Model = decision.model
        self.held = decision.estimated_credits
        self.lease = f"{request.request_id}:{uuid.uuid4().hex[:8]}"
        self.delivered_tokens = 0
        self.delivered = False
        self.settled = False
        self.completing = False
        """Set once the completion is reported: from then on, only ``complete`` charges."""
        self.cut = False
        """Set when the server cuts the stream at shutdown: nothing is charged."""
        self.balance: int | None = None
        self.charged = 0
        self._slot = False
        self._claim: SlotClaim | None = None
        self._confirmed = [0.0, 0.0]
        """When the hold's and the slot's refresh last succeeded (monotonic clock)."""
        self._lost = ""
        self._keepalive: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Take a slot (CONCURRENCY_LIMIT) and hold the estimate (INSUFFICIENT_CREDITS,
        DUPLICATE_REQUEST); nothing is held when either fails. A limiter whose slots live in the
        ledger gives a claim that the hold takes in the same transaction."""
        b = self.billing
        acct = self.account
        limit = acct.plan.max_concurrent_requests
        self._claim = b.limiter.claim(self.lease, limit)
        try:
            if self._claim is None and not await b.limiter.acquire(acct.account_id, self.lease, limit):
                raise ExhaustedError("CONCURRENCY_LIMIT", "", {})
            self._slot = True
            started = time.monotonic()
            try:
                record = await b.ledger.hold(
                    acct.account_id, self.request.request_id, self.held, b.expiry_ms(), self._claim, self._usage()
                )
            except BaseException:
                if self._claim is None:
                    await self._release_slot()
                self._slot = False
                raise
        except ExhaustedError as exc:
            if exc.reason != "CONCURRENCY_LIMIT":
                raise
            raise ExhaustedError(
                "CONCURRENCY_LIMIT",
                f"the {acct.plan.id} plan allows {limit} concurrent requests; wait for one to finish",
                {"limit": str(limit), "plan_id": acct.plan.id},
            ) from None
        self._confirmed = [started, started]
        b.accounts.remember(acct.account_id, record.plan_id, record.balance)
        self._keepalive = asyncio.create_task(self._keep_alive())

    async def prepare(self, model: Model) -> None:
        """Before an attempt on ``model``: grow the hold if the model costs more (a fallback)."""
        cost = Selector.estimate(model, self.request.selection)
        if cost > self.held:
            await self.billing.ledger.extend_hold(self.account.account_id, self.request.request_id, cost - self.held)
            self.held = cost
        self.model = model

    async def check(self) -> None:
        """Before output goes out: the hold and slot are still ours, or HOLD_LOST. Free while the
        keep-alive is on time; after a pause longer than half a hold's or lease's life (the
        process was stopped, the loop stalled), confirm with the ledger first."""
        if not self._lost and time.monotonic() - min(self._confirmed) > self.billing.settings.stale_s:
            await self._refresh()
        if self._lost:
            raise HoldLostError(
                "HOLD_LOST",
                f"this stream's {self._lost} expired while the server was paused; it was released and nothing is"
                " charged",
                {"request_id": self.request.request_id, "lost": self._lost},
            )

    def charge_for(self, credits: int) -> int:
        """What completing with ``credits`` will charge: never more than held."""
        self.completing = True
        return max(0, min(credits, self.held))

    def saw(self, event: ProviderEvent) -> None:
        """Count output as it is sent to the caller."""
        if isinstance(event, TextChunk | ReasoningChunk):  # reasoning is output the provider bills
            self.delivered_tokens += 1
            self.delivered = True
        elif isinstance(event, Artifact | ToolCallEvent | Citation):
            self.delivered = True

    async def complete(self, credits: int, usage: Usage | None = None) -> None:
        """Charge a completed generation's actual cost (HOLD_LOST when the hold is gone; ``usage``:
        the tokens the provider reported)."""
        await self.check()
        await self._settle(credits, "completed", usage)
        if self.charged < min(credits, self.held):
            self._lost = "credit hold"
            await self.check()

    async def close(self, error: BaseException | None) -> None:
        """Settle if not yet settled (by the rules above) and return the slot. Runs to the end even
        when the calling task is being cancelled (``Billing.drain`` waits for such closes)."""
        task = asyncio.ensure_future(self._close(error))
        pending = self.billing.closing
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.shield(task)

    async def _close(self, error: BaseException | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        try:
            if not self.settled:
                await self._settle(*self._settlement(error))
        finally:
            await self._release_slot()

    def _settlement(self, error: BaseException | None) -> tuple[int, str]:
        """What an unsettled stream that ended with ``error`` is charged, and why."""
        if self.cut or isinstance(error, ShuttingDownError):
            return 0, "cut by the server at shutdown"
        if self.completing:
            return 0, "completion not delivered"
        if isinstance(error, HoldLostError):
            return 0, "hold lost"
        if not self.delivered:
            return 0, "no output delivered"
        went_away = isinstance(error, asyncio.CancelledError | GeneratorExit)
        if went_away:
            price = self.model.price
            return price.cost(self.request.selection.input_tokens, self.delivered_tokens), (
                "caller left after partial output"
            )
        return 0, "provider failed mid-stream"

    async def _settle(self, credits: int, note: str, usage: Usage | None = None) -> None:
        lease = self.lease if self._slot and self._claim is not None else ""
        tokens = usage or Usage(self.request.selection.input_tokens, self.delivered_tokens)
        result = await self.billing.ledger.settle(
            self.account.account_id, self.request.request_id, credits, note, lease, self._usage(tokens)
        )
        if lease:
            self._slot = False  # returned in the settlement's transaction
        self.settled = True
        self.charged = result.charged
        self.balance = result.account.balance
        self.billing.accounts.remember(result.account.account_id, result.account.plan_id, result.account.balance)
        if not result.closed:
            log.warning("hold_already_settled", request_id=self.request.request_id, note=note)

    def _usage(self, tokens: Usage | None = None) -> ChargeUsage:
        """What the ledger records for usage reports: the model serving now and the tokens."""
        t = tokens or Usage()
        m = self.model
        return ChargeUsage(m.id, int(m.modality), int(m.tier), t.input_tokens, t.output_tokens)

    async def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            # An unreachable limiter (logged once per outage) must not turn a settled stream into an
            # error: the lease lapses by itself after --lease.
            with contextlib.suppress(BackendUnavailableError):
                await self.billing.limiter.release(self.account.account_id, self.lease)

    async def _refresh(self) -> None:
        """Push the hold's and slot's expiry back; note which one is gone when one is."""
        outcomes = await asyncio.gather(*(refresh() for refresh in self._refreshers()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _refreshers(self) -> list[Callable[[], Awaitable[None]]]:
        """The hold's refresh (with the slot when it lives in the ledger) and the limiter's lease
        refresh: each runs on its own, so a ledger that cannot be reached does not let the lease
        lapse (and the concurrency limit break) while the limiter is up, nor the reverse."""
        if self._claim is not None:
            return [self._refresh_hold]
        return [self._refresh_hold, self._refresh_lease]

    async def _refresh_hold(self) -> None:
        b = self.billing
        started = time.monotonic()
        claim = b.limiter.claim(self.lease, 0) if self._claim is not None else None
        hold_alive, slot_alive = await b.ledger.refresh_hold(
            self.account.account_id, self.request.request_id, b.expiry_ms(), claim
        )
        if not hold_alive:
            self._lost = self._lost or "credit hold"
        elif not slot_alive:
            self._lost = self._lost or "concurrency slot"
        else:
            self._confirmed = [started, started if claim is not None else self._confirmed[1]]

    async def _refresh_lease(self) -> None:
        started = time.monotonic()
        if not await self.billing.limiter.refresh(self.account.account_id, self.lease):
            self._lost = self._lost or "concurrency slot"
        else:
            self._confirmed = [self._confirmed[0], started]

    async def _keep_alive(self) -> None:
        await asyncio.gather(*(self._keep(refresh) for refresh in self._refreshers()))

    async def _keep(self, refresh: Callable[[], Awaitable[None]]) -> None:
        while not self._lost:
            await asyncio.sleep(self.billing.settings.keepalive_s)
            try:
                await refresh()
            except BackendUnavailableError:  # the outage is logged once where it is noticed
                pass
            except Exception:  # a failed refresh is retried next round; the hold's expiry is the backstop
                log.exception("keepalive_failed", request_id=self.request.request_id)


async def sweep_forever(ledger: AsyncLedger, interval_s: float) -> None:
    """Release expired holds every ``interval_s`` seconds until cancelled."""
    while True:
        try:
            released = await ledger.sweep()
            if released:
                log.info("holds_expired", released=released)
        except BackendUnavailableError:  # logged once per outage; the next round finds out if it ended
            pass
        except Exception:  # the sweep is retried next round
            log.exception("sweep_failed")
        await asyncio.sleep(interval_s)
