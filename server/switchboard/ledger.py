"""The credit ledger: balances, holds and an append-only journal, with one set of rules for every
storage backend.

Rules (also in README.md):
- A period is a calendar month in UTC. At the first touch of an account in a new period, what is
  left of the old allowance expires (ALLOWANCE_EXPIRE) and the plan's monthly allowance is granted
  (ALLOWANCE_GRANT). Top-ups (TOP_UP) never expire.
- Spending draws on the allowance first, then on top-ups.
- Generate holds its estimated cost (HOLD) atomically with the balance check, then settles once:
  CHARGE (spends at most what was held and returns the rest) or RELEASE (returns everything).
  A hold that is not settled before it expires is released by the sweeper, so a crashed server
  leaves no credit held.
- Every journal entry has a unique idempotency key: a top-up key or a Generate request id applied
  twice changes nothing the second time. The journal's amounts always sum to the balance.

The rules run inside one transaction per operation on a ``Tx``; the stores (SQLite, PostgreSQL)
only provide transactions and SQL dialect. Operations are synchronous and run on the store's
threads; ``AsyncLedger`` is the asyncio face the server uses.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog

from switchboard.errors import (
    BackendUnavailableError,
    ExhaustedError,
    InvalidRequestError,
    NotFoundError,
    PreconditionError,
    SwitchboardError,
)
from switchboard.outage import Outage
from switchboard.types import Plan

T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger("switchboard")

MAX_CREDITS = 10**12
"""The most credits one amount may carry: a grant, a cost cap, a hold. Far below 2^63, so sums of
many amounts stay exact 64-bit integers on every backend."""
MAX_TOPUP_BALANCE = 10**15
"""The most purchased credits an account may hold; a grant that would pass it is refused."""


class EntryKind(enum.IntEnum):
    """The kinds of journal entry; numbers match ``LedgerEntryKind`` in accounts.proto."""

    ALLOWANCE_GRANT = 1
    ALLOWANCE_EXPIRE = 2
    TOP_UP = 3
    HOLD = 4
    CHARGE = 5
    RELEASE = 6


class HoldState(enum.StrEnum):
    """Where a hold is in its life."""

    HELD = "held"
    CHARGED = "charged"
    RELEASED = "released"


class AlreadyExistsError(SwitchboardError):
    """Raised when creating something that exists, or reusing a Generate request id."""

    code = "ALREADY_EXISTS"


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An account's stored state after any period rollover."""

    account_id: str
    plan_id: str
    allowance: int
    topup: int
    period_start: int
    period_end: int
    held: int = 0

    @property
    def balance(self) -> int:
        """Credits that can be spent now (holds already taken out)."""
        return self.allowance + self.topup


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry. ``amount`` is the change to the spendable balance."""

    sequence: int
    account_id: str
    kind: EntryKind
    amount: int
    allowance_delta: int
    topup_delta: int
    credits: int
    request_id: str
    idempotency_key: str
    note: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """A concurrency slot taken in the same transaction as a hold: ``lease`` is unique per call,
    ``limit`` 0 means no limit, and the slot lapses at ``expires_ms`` unless refreshed."""

    lease: str
    limit: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class ChargeUsage:
    """What a settlement records beside the credits, for usage reports: the serving model, its
    modality and tier (the numbers of ``Modality`` and ``Tier``), and the tokens used."""

    model_id: str
    modality: int
    tier: int
    input_tokens: int = 0
    output_tokens: int = 0


HoldArgs = tuple[str, str, int, int, "SlotClaim | None", "ChargeUsage | None"]
"""The arguments of one ``Ledger.hold``: account id, request id, credits, expiry (ms), slot, usage."""
SettleArgs = tuple[str, str, int, str, str, "ChargeUsage | None"]
"""The arguments of one ``Ledger.settle``: account id, request id, charge, note, lease, usage."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """The result of settling a hold: the account after it, the credits charged, and whether
    this call closed the hold (False: it was settled before)."""

    account: AccountRecord
    charged: int
    closed: bool


class Tx(Protocol):
    """A database transaction with ``%s`` placeholders."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row."""
        ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        ...


class Store(Protocol):
    """A place the ledger lives: transactions, the row-lock suffix, and worker threads."""

    for_update: str
    """Appended to the SELECT that reads an account inside a write (PostgreSQL: FOR UPDATE)."""

    workers: int
    """How many threads may run transactions at once."""

    binary_collation: str
    """A COLLATE clause ordering text by its bytes, so both backends sort keys alike."""

    def transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction, committed on exit or rolled back on error."""
        ...

    def reading(self) -> AbstractContextManager[Tx]:
        """A read-only snapshot that takes no write lock."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the database cannot be reached (rather than a bug)."""
        ...

    def busy(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the database answers but a lock the call needs stayed taken (a
        peer stopped inside a transaction): the call fails, but the ledger is not down."""
        ...


def _insufficient(balance: int, credits: int) -> ExhaustedError:
    return ExhaustedError(
        "INSUFFICIENT_CREDITS",
        f"the balance of {balance} credits does not cover {credits} credits",
        {"balance": str(balance), "cheapest_price": str(credits)},
    )


def _check_amount(credits: int) -> None:
    """Every amount the ledger moves is an exact int within bounds (never a float, never near 2^63)."""
    if not isinstance(credits, int) or not 0 <= credits <= MAX_CREDITS:
        raise InvalidRequestError(
            "INVALID_FIELD", f"credits: {credits!r} is outside 0..{MAX_CREDITS}", {"field": "credits"}
        )


def month_bounds(when: datetime) -> tuple[int, int]:
    """Unix seconds of the start of ``when``'s calendar month (UTC) and of the next one."""
    start = datetime(when.year, when.month, 1, tzinfo=UTC)
    end = datetime(when.year + (when.month == 12), when.month % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()), int(end.timestamp())


def _now() -> datetime:
    return datetime.now(UTC)


_ACCOUNT_COLUMNS = "account_id, plan_id, allowance, topup, period_start, period_end"
_ENTRY_COLUMNS = (
    "seq, account_id, kind, amount, allowance_delta, topup_delta, credits, request_id, idempotency_key, note,"
    " created_ms"
)


class Ledger:
    """The ledger's rules over one store. Every public method is one transaction."""

    def __init__(self, store: Store, plans: Mapping[str, Plan], clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.plans = plans
        self.clock = clock
        self.owner = ""
        """This process's instance id, stored with every hold and slot it takes ("" for none)."""
        self.incarnation = 0

    def begin_incarnation(self, instance_id: str) -> tuple[int, int]:
        """Start a new incarnation of ``instance_id``: count it, then release every hold and slot
        an earlier incarnation of the same instance left (it crashed, or was killed), at once
        rather than at their expiry. Other instances' holds are not touched. Returns the
        incarnation number and how many holds were released."""
        with self.store.transaction() as tx:
            rows = tx.all(
                "INSERT INTO instances (instance_id, incarnation) VALUES (%s, 1) ON CONFLICT (instance_id)"
                " DO UPDATE SET incarnation = instances.incarnation + 1 RETURNING incarnation",
                (instance_id,),
            )
            incarnation = int(rows[0][0])
            tx.run("DELETE FROM slots WHERE owner = %s AND incarnation < %s", (instance_id, incarnation))
            left = tx.all(
                "SELECT account_id, request_id FROM holds WHERE owner = %s AND incarnation < %s AND state = %s",
                (instance_id, incarnation, HoldState.HELD),
            )
        self.owner, self.incarnation = instance_id, incarnation
        note = f"released: {instance_id} restarted (incarnation {incarnation})"
        released = sum(self.settle(account_id, request_id, 0, note=note).closed for account_id, request_id in left)
        return incarnation, released

    # ------------------------------------------------------------------ accounts

    def create_account(self, account_id: str, plan_id: str) -> AccountRecord:
        """Create an account on ``plan_id`` with this period's allowance granted."""
        plan = self._plan(plan_id)
        with self.store.transaction() as tx:
            if self._read(tx, account_id, lock=False) is not None:
                raise AlreadyExistsError("ACCOUNT_EXISTS", f"account {account_id!r} exists", {"account_id": account_id})
            return self._insert(tx, account_id, plan)

    def ensure_account(self, account_id: str, plan_id: str) -> AccountRecord:
        """The account, created on ``plan_id`` first if it does not exist."""
        found = self.get(account_id)
        if found is not None:
            return found
        plan = self._plan(plan_id)
        try:
            with self.store.transaction() as tx:
                existing = self._read(tx, account_id, lock=True)
                return existing if existing is not None else self._insert(tx, account_id, plan)
        except AlreadyExistsError:
            found = self.get(account_id)
            assert found is not None
            return found

    def ensure_accounts(self, calls: Sequence[tuple[str, str]]) -> list[AccountRecord | Exception]:
        """``ensure_account`` for each (account id, plan id), in order; the result for each is its
        record or the SwitchboardError it raised."""
        return [_outcome(self.ensure_account, *args) for args in calls]

    def get_many(self, calls: Sequence[tuple[str]]) -> list[AccountRecord | Exception | None]:
        """``get`` for each (account id,), in order."""
        return [_outcome(self.get, *args) for args in calls]

    def get(self, account_id: str) -> AccountRecord | None:
        """The account after any rollover due, or None. Reads without a write lock unless a
        rollover is due."""
        with self.store.reading() as tx:
            record = self._read(tx, account_id, lock=False)
            if record is None:
                return None
            if self.clock().timestamp() < record.period_end:
                return self._with_held(tx, record)
        with self.store.transaction() as tx:
            record = self._read(tx, account_id, lock=True)
            return None if record is None else self._with_held(tx, self._rollover(tx, record))

    def set_plan(self, account_id: str, plan_id: str) -> AccountRecord:
        """Move the account to ``plan_id``. A larger allowance is granted for the rest of the
        period at once (the difference); a smaller one takes effect next period."""
        plan = self._plan(plan_id)
        with self.store.transaction() as tx:
            record = self._rollover(tx, self._require(tx, account_id))
            old = self._plan(record.plan_id)
            tx.run("UPDATE accounts SET plan_id = %s WHERE account_id = %s", (plan.id, account_id))
            extra = plan.monthly_credits - old.monthly_credits
            key = f"upgrade:{account_id}:{record.period_start}:{plan.id}"
            if extra > 0 and not self._has_key(tx, key):
                self._journal(
                    tx, account_id, EntryKind.ALLOWANCE_GRANT, extra, 0, key=key, note=f"upgrade to {plan.id}"
                )
                tx.run("UPDATE accounts SET allowance = allowance + %s WHERE account_id = %s", (extra, account_id))
            return self._with_held(tx, self._require(tx, account_id))

    # ------------------------------------------------------------------- credits

    def top_up(self, account_id: str, credits: int, key: str, note: str = "") -> tuple[AccountRecord, bool]:
        """Add purchased credits once per ``key``; returns the account and whether it applied."""
        if not isinstance(credits, int) or not 0 < credits <= MAX_CREDITS:
            raise InvalidRequestError(
                "INVALID_FIELD", f"credits: must be between 1 and {MAX_CREDITS}", {"field": "credits"}
            )
        full_key = f"topup:{account_id}:{key}"
        with self.store.transaction() as tx:
            record = self._rollover(tx, self._require(tx, account_id))
            previous = tx.one("SELECT amount FROM ledger WHERE idempotency_key = %s", (full_key,))
            if previous is not None:
                if previous[0] != credits:
                    raise PreconditionError(
                        "IDEMPOTENCY_KEY_REUSED",
                        f"key {key!r} was used for {previous[0]} credits, not {credits}",
                        {"idempotency_key": key, "credits": str(previous[0])},
                    )
                return self._with_held(tx, record), False
            if record.topup + credits > MAX_TOPUP_BALANCE:
                raise PreconditionError(
                    "BALANCE_LIMIT_EXCEEDED",
                    f"the top-up balance would pass {MAX_TOPUP_BALANCE} credits",
                    {"topup_credits": str(record.topup), "limit": str(MAX_TOPUP_BALANCE)},
                )
            self._journal(tx, account_id, EntryKind.TOP_UP, 0, credits, key=full_key, note=note)
            tx.run("UPDATE accounts SET topup = topup + %s WHERE account_id = %s", (credits, account_id))
            return self._with_held(tx, self._require(tx, account_id)), True

    def hold(
        self,
        account_id: str,
        request_id: str,
        credits: int,
        expires_ms: int,
        slot: SlotClaim | None = None,
        usage: ChargeUsage | None = None,
    ) -> AccountRecord:
        """Reserve ``credits`` for a request, or raise INSUFFICIENT_CREDITS; a request id can
        hold once (DUPLICATE_REQUEST). With ``slot``, a concurrency slot is taken in the same
        transaction (CONCURRENCY_LIMIT), so one round trip checks the limit, the balance and holds.
        ``usage`` names the model the request starts on: a settlement that records none (a hold
        the sweeper releases) is reported under it."""
        with self.store.transaction() as tx:
            return self._hold(tx, account_id, request_id, credits, expires_ms, slot, usage)

    def hold_many(self, holds: Sequence[HoldArgs]) -> list[AccountRecord | Exception]:
        """``hold`` for each of ``holds``, in order, in one transaction: each in a savepoint, so a
        hold refused (insufficient credits, concurrency limit, duplicate) leaves no trace and the
        others stand. The result for each is its record or the error ``hold`` would have raised;
        if the transaction itself fails, the error is raised and nothing is held."""
        return self._each_in_savepoint(self._hold, holds)

    def _each_in_savepoint(self, op: Callable[..., R], calls: Sequence[tuple[Any, ...]]) -> list[R | Exception]:
        """``op(tx, *args)`` for each ``args`` in one transaction, each in a savepoint: a call that
        raises a SwitchboardError is rolled back alone and its error returned in its place."""
        results: list[R | Exception] = []
        with self.store.transaction() as tx:
            for args in calls:
                tx.run("SAVEPOINT op")
                try:
                    results.append(op(tx, *args))
                except SwitchboardError as exc:
                    tx.run("ROLLBACK TO SAVEPOINT op")
                    results.append(exc)
                tx.run("RELEASE SAVEPOINT op")
        return results

    def _hold(
        self,
        tx: Tx,
        account_id: str,
        request_id: str,
        credits: int,
        expires_ms: int,
        slot: SlotClaim | None,
        usage: ChargeUsage | None = None,
    ) -> AccountRecord:
        _check_amount(credits)
        record = self._rollover(tx, self._require(tx, account_id))
        if slot is not None:
            self._take_slot(tx, account_id, slot)
        if tx.one("SELECT state FROM holds WHERE account_id = %s AND request_id = %s", (account_id, request_id)):
            raise AlreadyExistsError(
                "DUPLICATE_REQUEST",
                f"request id {request_id!r} was already used for this account",
                {"request_id": request_id},
            )
        if credits > record.balance:
            raise _insufficient(record.balance, credits)
        from_allowance = min(record.allowance, credits)
        from_topup = credits - from_allowance
        tx.run(
            "INSERT INTO holds (account_id, request_id, allowance_part, topup_part, period_start, expires_ms,"
            " state, owner, incarnation) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                account_id,
                request_id,
                from_allowance,
                from_topup,
                record.period_start,
                expires_ms,
                HoldState.HELD,
                self.owner,
                self.incarnation,
            ),
        )
        self._move(
            tx,
            account_id,
            EntryKind.HOLD,
            -from_allowance,
            -from_topup,
            request_id,
            f"hold:{account_id}:{request_id}",
            usage=usage,
        )
        return self._with_held(tx, self._require(tx, account_id))

    def extend_hold(self, account_id: str, request_id: str, credits: int) -> None:
        """Grow an open hold by ``credits`` (a fallback model that costs more), or raise
        INSUFFICIENT_CREDITS."""
        _check_amount(credits)
        with self.store.transaction() as tx:
            record = self._rollover(tx, self._require(tx, account_id))
            hold = self._open_hold(tx, account_id, request_id)
            if hold is None:
                raise PreconditionError("HOLD_NOT_OPEN", f"request {request_id!r} holds nothing", {})
            if credits > record.balance:
                raise _insufficient(record.balance, credits)
            a = min(record.allowance, credits)
            t = credits - a
            if hold[2] != record.period_start:
                a, t = 0, credits  # allowance of a newer period is not mixed into an older hold
                if t > record.topup:
                    raise ExhaustedError("INSUFFICIENT_CREDITS", "the top-up balance does not cover the increase", {})
            tx.run(
                "UPDATE holds SET allowance_part = allowance_part + %s, topup_part = topup_part + %s"
                " WHERE account_id = %s AND request_id = %s",
                (a, t, account_id, request_id),
            )
            n = tx.one(
                "SELECT COUNT(*) FROM ledger WHERE account_id = %s AND request_id = %s", (account_id, request_id)
            )
            key = f"hold:{account_id}:{request_id}:+{n[0] if n else 0}"
            self._move(tx, account_id, EntryKind.HOLD, -a, -t, request_id, key)

    def refresh_hold(
        self, account_id: str, request_id: str, expires_ms: int, slot: SlotClaim | None = None
    ) -> tuple[bool, bool]:
        """Push back an open hold's expiry (and its slot's). Returns whether the hold is still
        open and whether the slot is still taken (True when no slot is named)."""
        with self.store.transaction() as tx:
            changed = tx.run(
                "UPDATE holds SET expires_ms = %s WHERE account_id = %s AND request_id = %s AND state = %s",
                (expires_ms, account_id, request_id, HoldState.HELD),
            )
            slot_alive = slot is None or self._refresh_slot(tx, account_id, slot)
            return changed > 0, slot_alive

    def refresh_slot(self, account_id: str, slot: SlotClaim) -> bool:
        """Push back a slot's expiry; False when it is no longer taken."""
        with self.store.transaction() as tx:
            return self._refresh_slot(tx, account_id, slot)

    def _refresh_slot(self, tx: Tx, account_id: str, slot: SlotClaim) -> bool:
        changed = tx.run(
            "UPDATE slots SET expires_ms = %s WHERE account_id = %s AND lease = %s",
            (slot.expires_ms, account_id, slot.lease),
        )
        return changed > 0

    # --------------------------------------------------------------------- slots

    def take_slot(self, account_id: str, slot: SlotClaim) -> None:
        """Take a concurrency slot alone (CONCURRENCY_LIMIT when the limit is reached)."""
        with self.store.transaction() as tx:
            self._take_slot(tx, account_id, slot)

    def release_slot(self, account_id: str, lease: str) -> None:
        """Return a slot (idempotent)."""
        with self.store.transaction() as tx:
            tx.run("DELETE FROM slots WHERE account_id = %s AND lease = %s", (account_id, lease))

    def slots_in_use(self, account_id: str) -> int:
        """Live slots of the account."""
        now_ms = int(self.clock().timestamp() * 1000)
        with self.store.reading() as tx:
            row = tx.one("SELECT COUNT(*) FROM slots WHERE account_id = %s AND expires_ms >= %s", (account_id, now_ms))
        return int(row[0]) if row else 0

    def _take_slot(self, tx: Tx, account_id: str, slot: SlotClaim) -> None:
        now_ms = int(self.clock().timestamp() * 1000)
        tx.run("DELETE FROM slots WHERE account_id = %s AND expires_ms < %s", (account_id, now_ms))
        if slot.limit:
            row = tx.one("SELECT COUNT(*) FROM slots WHERE account_id = %s", (account_id,))
            if row is not None and int(row[0]) >= slot.limit:
                raise ExhaustedError(
                    "CONCURRENCY_LIMIT",
                    f"{slot.limit} concurrent requests are allowed; wait for one to finish",
                    {"limit": str(slot.limit)},
                )
        tx.run(
            "INSERT INTO slots (account_id, lease, expires_ms, owner, incarnation) VALUES (%s, %s, %s, %s, %s)",
            (account_id, slot.lease, slot.expires_ms, self.owner, self.incarnation),
        )

    def settle(
        self,
        account_id: str,
        request_id: str,
        charge: int,
        note: str = "",
        lease: str = "",
        usage: ChargeUsage | None = None,
    ) -> Settlement:
        """Close a hold: spend ``min(charge, held)`` (allowance part first) and return the rest.
        ``charge`` 0 is a release. Settling twice changes nothing. ``lease`` names a slot to
        return in the same transaction; ``usage`` is recorded with the settlement's entry."""
        with self.store.transaction() as tx:
            return self._settle(tx, account_id, request_id, charge, note, lease, usage)

    def settle_many(self, settlements: Sequence[SettleArgs]) -> list[Settlement | Exception]:
        """``settle`` for each of ``settlements``, in order, in one transaction (a savepoint each,
        as ``hold_many``)."""
        return self._each_in_savepoint(self._settle, settlements)

    def _settle(
        self,
        tx: Tx,
        account_id: str,
        request_id: str,
        charge: int,
        note: str,
        lease: str,
        usage: ChargeUsage | None = None,
    ) -> Settlement:
        if lease:
            tx.run("DELETE FROM slots WHERE account_id = %s AND lease = %s", (account_id, lease))
        record = self._rollover(tx, self._require(tx, account_id))
        hold = self._open_hold(tx, account_id, request_id)
        if hold is None:
            row = tx.one(
                "SELECT credits FROM ledger WHERE idempotency_key = %s", (f"settle:{account_id}:{request_id}",)
            )
            return Settlement(self._with_held(tx, record), int(row[0]) if row else 0, closed=False)
        allowance_part, topup_part, period_start = hold
        if usage is None:  # e.g. the sweeper: report it under the model the hold was taken for
            row = tx.one(
                "SELECT model_id, modality, tier FROM ledger WHERE idempotency_key = %s",
                (f"hold:{account_id}:{request_id}",),
            )
            usage = ChargeUsage(str(row[0]), int(row[1]), int(row[2])) if row else None
        spent = max(0, min(charge, allowance_part + topup_part))
        spent_allowance = min(spent, allowance_part)
        back_allowance = allowance_part - spent_allowance
        back_topup = topup_part - (spent - spent_allowance)
        if period_start != record.period_start:
            back_allowance = 0  # that allowance expired with its period
            note = (note + "; " if note else "") + "allowance part expired with its period"
        kind = EntryKind.CHARGE if spent else EntryKind.RELEASE
        tx.run(
            "UPDATE holds SET state = %s WHERE account_id = %s AND request_id = %s",
            (HoldState.CHARGED if spent else HoldState.RELEASED, account_id, request_id),
        )
        self._move(
            tx,
            account_id,
            kind,
            back_allowance,
            back_topup,
            request_id,
            f"settle:{account_id}:{request_id}",
            credits=spent,
            note=note,
            usage=usage,
        )
        return Settlement(self._with_held(tx, self._require(tx, account_id)), spent, closed=True)

    def sweep(self, limit: int = 200) -> int:
        """Release holds past their expiry; returns how many."""
        now_ms = int(self.clock().timestamp() * 1000)
        with self.store.transaction() as tx:
            due = tx.all(
                "SELECT account_id, request_id FROM holds WHERE state = %s AND expires_ms < %s LIMIT %s",
                (HoldState.HELD, now_ms, limit),
            )
        return sum(self.settle(account_id, request_id, 0, note="expired").closed for account_id, request_id in due)

    # ------------------------------------------------------------------- reading

    def entries(self, account_id: str, after: int, limit: int) -> list[Entry]:
        """Journal entries of an account with a sequence number above ``after``, oldest first."""
        with self.store.transaction() as tx:
            self._require(tx, account_id, lock=False)
            rows = tx.all(
                f"SELECT {_ENTRY_COLUMNS} FROM ledger WHERE account_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (account_id, after, limit),
            )
        return [Entry(r[0], r[1], EntryKind(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows]

    def totals(self, account_id: str) -> tuple[int, int, int]:
        """The journal's sums of amount, allowance and top-up changes (for audits and tests)."""
        with self.store.transaction() as tx:
            row = tx.one(
                "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(allowance_delta), 0), COALESCE(SUM(topup_delta), 0)"
                " FROM ledger WHERE account_id = %s",
                (account_id,),
            )
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    # ------------------------------------------------------------------- helpers

    def _plan(self, plan_id: str) -> Plan:
        plan = self.plans.get(plan_id)
        if plan is None:
            raise NotFoundError("PLAN_NOT_FOUND", f"no plan has the id {plan_id!r}", {"plan_id": plan_id})
        return plan

    def _read(self, tx: Tx, account_id: str, *, lock: bool) -> AccountRecord | None:
        suffix = self.store.for_update if lock else ""
        row = tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = %s{suffix}", (account_id,))
        return None if row is None else AccountRecord(*row)

    def _require(self, tx: Tx, account_id: str, *, lock: bool = True) -> AccountRecord:
        record = self._read(tx, account_id, lock=lock)
        if record is None:
            raise NotFoundError(
                "ACCOUNT_NOT_FOUND", f"no account has the id {account_id!r}", {"account_id": account_id}
            )
        return record

    def _with_held(self, tx: Tx, record: AccountRecord) -> AccountRecord:
        row = tx.one(
            "SELECT COALESCE(SUM(allowance_part + topup_part), 0) FROM holds WHERE account_id = %s AND state = %s",
            (record.account_id, HoldState.HELD),
        )
        return AccountRecord(
            record.account_id,
            record.plan_id,
            record.allowance,
            record.topup,
            record.period_start,
            record.period_end,
            int(row[0]) if row else 0,
        )

    def _insert(self, tx: Tx, account_id: str, plan: Plan) -> AccountRecord:
        start, end = month_bounds(self.clock())
        inserted = tx.run(
            f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (account_id) DO NOTHING",
            (account_id, plan.id, plan.monthly_credits, 0, start, end),
        )
        if not inserted:  # another replica created it between our read and our insert
            raise AlreadyExistsError("ACCOUNT_EXISTS", f"account {account_id!r} exists", {"account_id": account_id})
        self._journal(
            tx, account_id, EntryKind.ALLOWANCE_GRANT, plan.monthly_credits, 0, key=f"grant:{account_id}:{start}"
        )
        return AccountRecord(account_id, plan.id, plan.monthly_credits, 0, start, end)

    def _rollover(self, tx: Tx, record: AccountRecord) -> AccountRecord:
        now = self.clock()
        if now.timestamp() < record.period_end:
            return record
        start, end = month_bounds(now)
        plan = self._plan(record.plan_id)
        if record.allowance:
            self._journal(
                tx,
                record.account_id,
                EntryKind.ALLOWANCE_EXPIRE,
                -record.allowance,
                0,
                key=f"expire:{record.account_id}:{record.period_start}",
            )
        self._journal(
            tx,
            record.account_id,
            EntryKind.ALLOWANCE_GRANT,
            plan.monthly_credits,
            0,
            key=f"grant:{record.account_id}:{start}",
        )
        tx.run(
            "UPDATE accounts SET allowance = %s, period_start = %s, period_end = %s WHERE account_id = %s",
            (plan.monthly_credits, start, end, record.account_id),
        )
        return AccountRecord(record.account_id, record.plan_id, plan.monthly_credits, record.topup, start, end)

    def _open_hold(self, tx: Tx, account_id: str, request_id: str) -> tuple[int, int, int] | None:
        row = tx.one(
            "SELECT allowance_part, topup_part, period_start FROM holds"
            " WHERE account_id = %s AND request_id = %s AND state = %s",
            (account_id, request_id, HoldState.HELD),
        )
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def _has_key(self, tx: Tx, key: str) -> bool:
        return tx.one("SELECT 1 FROM ledger WHERE idempotency_key = %s", (key,)) is not None

    def _move(
        self,
        tx: Tx,
        account_id: str,
        kind: EntryKind,
        allowance_delta: int,
        topup_delta: int,
        request_id: str,
        key: str,
        *,
        credits: int = 0,
        note: str = "",
        usage: ChargeUsage | None = None,
    ) -> None:
        self._journal(
            tx,
            account_id,
            kind,
            allowance_delta,
            topup_delta,
            key=key,
            request_id=request_id,
            credits=credits,
            note=note,
            usage=usage,
        )
        tx.run(
            "UPDATE accounts SET allowance = allowance + %s, topup = topup + %s WHERE account_id = %s",
            (allowance_delta, topup_delta, account_id),
        )

    def _journal(
        self,
        tx: Tx,
        account_id: str,
        kind: EntryKind,
        allowance_delta: int,
        topup_delta: int,
        *,
        key: str,
        request_id: str = "",
        credits: int = 0,
        note: str = "",
        usage: ChargeUsage | None = None,
    ) -> None:
        u = usage or _NO_USAGE
        now_ms = int(self.clock().timestamp() * 1000)
        tx.run(
            "INSERT INTO ledger (account_id, kind, amount, allowance_delta, topup_delta, credits, request_id,"
            " idempotency_key, note, created_ms, model_id, modality, tier, input_tokens, output_tokens)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                account_id,
                int(kind),
                allowance_delta + topup_delta,
                allowance_delta,
                topup_delta,
                credits,
                request_id,
                key,
                note,
                now_ms,
                u.model_id,
                u.modality,
                u.tier,
                u.input_tokens,
                u.output_tokens,
            ),
        )
        if kind in (EntryKind.CHARGE, EntryKind.RELEASE):
            # Kept with the entry, in its transaction: whole days of usage are read from here.
            day = now_ms // 86_400_000
            tx.run(
                "INSERT INTO usage_daily (account_id, day, model_id, modality, tier, requests, credits, input_tokens,"
                " output_tokens) VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s)"
                " ON CONFLICT (account_id, day, model_id, modality, tier) DO UPDATE SET"
                " requests = usage_daily.requests + 1, credits = usage_daily.credits + excluded.credits,"
                " input_tokens = usage_daily.input_tokens + excluded.input_tokens,"
                " output_tokens = usage_daily.output_tokens + excluded.output_tokens",
                (account_id, day, u.model_id, u.modality, u.tier, credits, u.input_tokens, u.output_tokens),
            )


_NO_USAGE = ChargeUsage("", 0, 0)


def _outcome(fn: Callable[..., R], *args: Any) -> R | Exception:
    """``fn(*args)``, or the SwitchboardError it raised."""
    try:
        return fn(*args)
    except SwitchboardError as exc:
        return exc


class _Group(Generic[R]):
    """Calls of one ledger operation that arrive while the ledger thread is busy, run together in
    one transaction (``run_many``) when it gets to them, in arrival order."""

    def __init__(self, pool: ThreadPoolExecutor, run_many: Callable[[Sequence[tuple[Any, ...]]], list[R | Exception]]):
        self.pool = pool
        self.run_many = run_many
        self.transactions = 0
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[R]]] = []
        self._scheduled = False
        self._lock = threading.Lock()

    async def submit(self, args: tuple[Any, ...]) -> R:
        """Queue one call and wait for its result (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._pending.append((args, future))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            try:
                loop.run_in_executor(self.pool, self._run, loop)
            except RuntimeError as exc:  # the ledger is closing: fail what waits, leave nothing stuck
                for waiting in self._take():
                    _resolve(waiting[1], exc)
        return await future

    def _take(self) -> list[tuple[tuple[Any, ...], asyncio.Future[R]]]:
        with self._lock:
            group, self._pending = self._pending, []
            self._scheduled = False
        return group

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the ledger thread: run every call waiting now in one transaction, then hand each
        result (or error) back to its caller on the event loop."""
        group = self._take()
        if not group:
            return
        self.transactions += 1
        try:
            results: list[R | Exception] = self.run_many([args for args, _ in group])
        except Exception as exc:  # the transaction failed: none of the calls took effect
            results = [exc] * len(group)
        for (_, future), result in zip(group, results, strict=True):
            try:
                loop.call_soon_threadsafe(_resolve, future, result)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


class AsyncLedger:
    """The ledger for asyncio code: each operation runs on one of the store's threads.

    With a single-writer store (SQLite: one connection, one thread), holds and settlements are
    grouped: those that arrive while the ledger thread is busy are taken together in one
    transaction (``Ledger.hold_many``, ``Ledger.settle_many``: a savepoint each, in arrival order,
    each with the outcome it would have alone), so a burst of stream starts or ends costs one write
    lock, one commit and one thread hop per group instead of per stream."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._pool = ThreadPoolExecutor(max_workers=ledger.store.workers, thread_name_prefix="ledger")
        self._grouped = ledger.store.workers == 1
        self._holds: _Group[AccountRecord] = _Group(self._pool, ledger.hold_many)
        self._settles: _Group[Settlement] = _Group(self._pool, ledger.settle_many)
        self.outage = Outage("ledger", "LEDGER_UNAVAILABLE")
        self._ensures: _Group[AccountRecord] = _Group(self._pool, ledger.ensure_accounts)
        self._gets: _Group[AccountRecord | None] = _Group(self._pool, ledger.get_many)

    @property
    def hold_transactions(self) -> int:
        """Transactions that took holds (fewer than the holds when they arrive together and are grouped)."""
        return self._holds.transactions

    @property
    def lookup_groups(self) -> int:
        """Thread hops that account lookups took (fewer than the lookups when they are grouped)."""
        return self._ensures.transactions + self._gets.transactions

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (a Ledger method) off the event loop; LEDGER_UNAVAILABLE when the
        database cannot be reached."""
        return await self._reach(asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args)))

    async def _reach(self, work: Awaitable[T]) -> T:
        """Await ``work`` and keep ``outage`` up to date: a domain error means the database answered."""
        try:
            result = await work
        except SwitchboardError:
            self.outage.succeeded()
            raise
        except Exception as exc:
            if self.ledger.store.unreachable(exc):
                raise self.outage.failed(exc) from None
            if self.ledger.store.busy(exc):
                log.warning("ledger_busy", error=f"{type(exc).__name__}: {exc}".strip()[:300])
                raise BackendUnavailableError(
                    "LEDGER_UNAVAILABLE", "the ledger did not answer in time; retry later", {"backend": "ledger"}
                ) from None
            raise
        self.outage.succeeded()
        return result

    # The typed face of every Ledger operation: one hop to a ledger thread each.

    async def create_account(self, account_id: str, plan_id: str) -> AccountRecord:
        """``Ledger.create_account``."""
        return await self.call(self.ledger.create_account, account_id, plan_id)

    async def set_plan(self, account_id: str, plan_id: str) -> AccountRecord:
        """``Ledger.set_plan``."""
        return await self.call(self.ledger.set_plan, account_id, plan_id)

    async def top_up(self, account_id: str, credits: int, key: str, note: str = "") -> tuple[AccountRecord, bool]:
        """``Ledger.top_up``."""
        return await self.call(self.ledger.top_up, account_id, credits, key, note)

    async def extend_hold(self, account_id: str, request_id: str, credits: int) -> None:
        """``Ledger.extend_hold``."""
        await self.call(self.ledger.extend_hold, account_id, request_id, credits)

    async def refresh_hold(
        self, account_id: str, request_id: str, expires_ms: int, slot: SlotClaim | None = None
    ) -> tuple[bool, bool]:
        """``Ledger.refresh_hold``."""
        return await self.call(self.ledger.refresh_hold, account_id, request_id, expires_ms, slot)

    async def refresh_slot(self, account_id: str, slot: SlotClaim) -> bool:
        """``Ledger.refresh_slot``."""
        return await self.call(self.ledger.refresh_slot, account_id, slot)

    async def sweep(self) -> int:
        """``Ledger.sweep``."""
        return await self.call(self.ledger.sweep)

    async def entries(self, account_id: str, after: int, limit: int) -> list[Entry]:
        """``Ledger.entries``."""
        return await self.call(self.ledger.entries, account_id, after, limit)

    async def totals(self, account_id: str) -> tuple[int, int, int]:
        """``Ledger.totals``."""
        return await self.call(self.ledger.totals, account_id)

    async def take_slot(self, account_id: str, slot: SlotClaim) -> None:
        """``Ledger.take_slot``."""
        await self.call(self.ledger.take_slot, account_id, slot)

    async def release_slot(self, account_id: str, lease: str) -> None:
        """``Ledger.release_slot``."""
        await self.call(self.ledger.release_slot, account_id, lease)

    async def slots_in_use(self, account_id: str) -> int:
        """``Ledger.slots_in_use``."""
        return await self.call(self.ledger.slots_in_use, account_id)

    async def begin_incarnation(self, instance_id: str) -> tuple[int, int]:
        """``Ledger.begin_incarnation``."""
        return await self.call(self.ledger.begin_incarnation, instance_id)

    def use_plans(self, plans: Mapping[str, Plan]) -> None:
        """Apply the plans of a reloaded config."""
        self.ledger.plans = plans

    async def hold(
        self,
        account_id: str,
        request_id: str,
        credits: int,
        expires_ms: int,
        slot: SlotClaim | None = None,
        usage: ChargeUsage | None = None,
    ) -> AccountRecord:
        """``Ledger.hold``, grouped with other holds waiting for the ledger thread."""
        if not self._grouped:
            self._holds.transactions += 1
            return await self.call(self.ledger.hold, account_id, request_id, credits, expires_ms, slot, usage)
        return await self._reach(self._holds.submit((account_id, request_id, credits, expires_ms, slot, usage)))

    async def ensure_account(self, account_id: str, plan_id: str) -> AccountRecord:
        """``Ledger.ensure_account``, one thread hop for all the lookups waiting for the ledger
        thread (a burst of stream starts reads its accounts together)."""
        if not self._grouped:
            return await self.call(self.ledger.ensure_account, account_id, plan_id)
        return await self._reach(self._ensures.submit((account_id, plan_id)))

    async def get(self, account_id: str) -> AccountRecord | None:
        """``Ledger.get``, grouped as ``ensure_account``."""
        if not self._grouped:
            return await self.call(self.ledger.get, account_id)
        return await self._reach(self._gets.submit((account_id,)))

    async def settle(
        self,
        account_id: str,
        request_id: str,
        charge: int,
        note: str = "",
        lease: str = "",
        usage: ChargeUsage | None = None,
    ) -> Settlement:
        """``Ledger.settle``, grouped with other settlements waiting for the ledger thread."""
        if not self._grouped:
            return await self.call(self.ledger.settle, account_id, request_id, charge, note, lease, usage)
        return await self._reach(self._settles.submit((account_id, request_id, charge, note, lease, usage)))

    def close(self) -> None:
        """Stop the threads and close the store."""
        self._pool.shutdown(wait=True)
        self.ledger.store.close()


def _resolve(future: asyncio.Future[R], result: R | Exception) -> None:
    if future.done():  # the caller was cancelled; a hold it took expires and is swept
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
