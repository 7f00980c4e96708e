"""Credits and concurrency around one Generate call.

A ``Meter`` takes a concurrency slot and holds the decision's estimated cost before the first
provider call, keeps both alive while the stream runs, and settles exactly once:

- completed: charge the actual cost (never more than held), return the rest;
- failed or cancelled before any output: release the hold;
- the provider failed after output (STREAM_INTERRUPTED): release the hold — a broken answer is
  not billed;
- the caller cancelled, or its deadline passed, after output: charge what was delivered (the
  per-request price plus the tokens streamed), capped by the hold.

If the process dies, the hold expires and the sweeper releases it, and a Redis lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import structlog

from switchboard.errors import ExhaustedError, NotFoundError, StreamInterruptedError
from switchboard.ledger import AsyncLedger
from switchboard.limiter import LedgerSlots, SlotLimiter
from switchboard.selection import Selector
from switchboard.types import (
    AccountState,
    Artifact,
    Catalog,
    Decision,
    GenerationRequest,
    Model,
    ProviderEvent,
    TextChunk,
    ToolCallEvent,
)

log = structlog.get_logger("switchboard")


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """How long holds and leases live and whether unknown accounts are created."""

    hold_ttl_s: float = 300.0
    keepalive_s: float = 10.0
    auto_create_accounts: bool = False
    lease_s: float = 30.0


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
    """Makes a Meter per Generate call."""

    def __init__(
        self, ledger: AsyncLedger, limiter: SlotLimiter, settings: BillingSettings, accounts: LedgerAccounts
    ) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.settings = settings
        self.accounts = accounts
        self.closing: set[asyncio.Future[None]] = set()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (at most ``timeout_s``) for meters still settling, e.g. of streams just cancelled."""
        if self.closing:
            await asyncio.wait(set(self.closing), timeout=timeout_s)

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
        self.balance: int | None = None
        self.charged = 0
        self._slot = False
        self._keepalive: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Take a slot (CONCURRENCY_LIMIT) and hold the estimate (INSUFFICIENT_CREDITS,
        DUPLICATE_REQUEST); nothing is held when either fails. With the ledger's own slots both
        happen in one transaction."""
        b = self.billing
        acct = self.account
        limit = acct.plan.max_concurrent_requests
        slots = b.limiter if isinstance(b.limiter, LedgerSlots) else None
        try:
            if slots is None and not await b.limiter.acquire(acct.account_id, self.lease, limit):
                raise ExhaustedError("CONCURRENCY_LIMIT", "", {})
            self._slot = True
            try:
                claim = slots.claim(self.lease, limit) if slots is not None else None
                record = await b.ledger.hold(acct.account_id, self.request.request_id, self.held, b.expiry_ms(), claim)
            except BaseException:
                if slots is None:
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
        b.accounts.remember(acct.account_id, record.plan_id, record.balance)
        self._keepalive = asyncio.create_task(self._keep_alive())

    async def prepare(self, model: Model) -> None:
        """Before an attempt on ``model``: grow the hold if the model costs more (a fallback)."""
        cost = Selector.estimate(model, self.request.selection)
        if cost > self.held:
            led = self.billing.ledger.ledger
            await self.billing.ledger.call(
                led.extend_hold, self.account.account_id, self.request.request_id, cost - self.held
            )
            self.held = cost
        self.model = model

    def saw(self, event: ProviderEvent) -> None:
        """Count output as it is sent to the caller."""
        if isinstance(event, TextChunk):
            self.delivered_tokens += 1
            self.delivered = True
        elif isinstance(event, Artifact | ToolCallEvent):
            self.delivered = True

    async def complete(self, credits: int) -> None:
        """Charge a completed generation's actual cost."""
        await self._settle(credits, "completed")

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
                went_away = isinstance(error, asyncio.CancelledError | GeneratorExit)
                if self.delivered and went_away and not isinstance(error, StreamInterruptedError):
                    price = self.model.price
                    partial = price.cost(self.request.selection.input_tokens, self.delivered_tokens)
                    await self._settle(partial, "caller left after partial output")
                else:
                    await self._settle(0, "no output delivered" if not self.delivered else "provider failed mid-stream")
        finally:
            await self._release_slot()

    async def _settle(self, credits: int, note: str) -> None:
        lease = self.lease if self._slot and isinstance(self.billing.limiter, LedgerSlots) else ""
        result = await self.billing.ledger.settle(
            self.account.account_id, self.request.request_id, credits, note, lease
        )
        if lease:
            self._slot = False  # returned in the settlement's transaction
        self.settled = True
        self.charged = result.charged
        self.balance = result.account.balance
        self.billing.accounts.remember(result.account.account_id, result.account.plan_id, result.account.balance)
        if not result.closed:
            log.warning("hold_already_settled", request_id=self.request.request_id, note=note)

    async def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            await self.billing.limiter.release(self.account.account_id, self.lease)

    async def _keep_alive(self) -> None:
        b = self.billing
        led = b.ledger.ledger
        slots = b.limiter if isinstance(b.limiter, LedgerSlots) else None
        acct, req = self.account.account_id, self.request.request_id
        while True:
            await asyncio.sleep(b.settings.keepalive_s)
            try:
                claim = slots.claim(self.lease, 0) if slots is not None else None
                await b.ledger.call(led.refresh_hold, acct, req, b.expiry_ms(), claim)
                if slots is None:
                    await b.limiter.refresh(acct, self.lease)
            except Exception:  # a failed refresh is retried next round; the hold's expiry is the backstop
                log.exception("keepalive_failed", request_id=self.request.request_id)


async def sweep_forever(ledger: AsyncLedger, interval_s: float) -> None:
    """Release expired holds every ``interval_s`` seconds until cancelled."""
    while True:
        try:
            released = await ledger.call(ledger.ledger.sweep)
            if released:
                log.info("holds_expired", released=released)
        except Exception:  # the sweep is retried next round
            log.exception("sweep_failed")
        await asyncio.sleep(interval_s)
