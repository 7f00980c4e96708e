"""The chaos suite's invariants, checked on what the load recorded and on the ledger as the API
shows it (GetAccount and ListLedgerEntries). The checks are pure functions of that data."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from load import Call, Poll
from switchboard.v1 import accounts_pb2, accounts_pb2_grpc

HOLD = accounts_pb2.LEDGER_ENTRY_KIND_HOLD
CHARGE = accounts_pb2.LEDGER_ENTRY_KIND_CHARGE
RELEASE = accounts_pb2.LEDGER_ENTRY_KIND_RELEASE

OVERLAP_MARGIN_S = 0.05
"""A stream's observed interval ends this long before its last output arrived: a frame sent just
before the slot was returned may be read after the next stream's decision, and that is no overlap."""


@dataclass(frozen=True)
class Entry:
    """The fields of a ledger entry the checks use."""

    kind: int
    amount: int
    allowance_delta: int
    topup_delta: int
    credits: int
    request_id: str


@dataclass(frozen=True)
class AccountView:
    """An account's state and its whole journal, read consistently (no entry added in between)."""

    account: str
    balance: int
    allowance: int
    topup: int
    held: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Check:
    """One invariant's verdict with the evidence."""

    name: str
    ok: bool
    detail: str


async def _entries(stub: accounts_pb2_grpc.AccountServiceStub, account: str) -> list[Entry]:
    out: list[Entry] = []
    token = ""
    while True:
        page = await stub.ListLedgerEntries(
            accounts_pb2.ListLedgerEntriesRequest(account_id=account, page_size=500, page_token=token), timeout=10
        )
        out += [
            Entry(e.kind, e.amount, e.allowance_delta, e.topup_delta, e.credits, e.request_id) for e in page.entries
        ]
        token = page.next_page_token
        if not token:
            return out


async def read_ledger(targets: list[str], accounts: Iterable[str], within: float = 20.0) -> list[AccountView]:
    """Each account's balance and journal from the first target that answers; a backend that has
    just come back may fail the first calls, so failures are retried for ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        for target in targets:
            try:
                return await _read_ledger(target, accounts)
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
        await asyncio.sleep(0.5)


async def _read_ledger(target: str, accounts: Iterable[str]) -> list[AccountView]:
    """Each account's balance and journal; re-read while entries are being added (a sweep)."""
    views = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = accounts_pb2_grpc.AccountServiceStub(channel)
        for account in accounts:
            for _ in range(10):
                before = await _entries(stub, account)
                acc = (await stub.GetAccount(accounts_pb2.GetAccountRequest(account_id=account), timeout=10)).account
                after = await _entries(stub, account)
                if before == after:
                    break
            views.append(
                AccountView(
                    account, acc.balance, acc.allowance_credits, acc.topup_credits, acc.held_credits, tuple(after)
                )
            )
    return views


def open_hold_ids(view: AccountView) -> list[str]:
    """The request ids whose holds are not settled yet."""
    settled = {e.request_id for e in view.entries if e.kind in (CHARGE, RELEASE)}
    return sorted({e.request_id for e in view.entries if e.kind == HOLD} - settled)


def journal_sums_to_balance(views: list[AccountView]) -> Check:
    """Entries sum to the balance (and to its allowance and top-up parts); open holds to held credits."""
    bad = []
    for v in views:
        held: dict[str, int] = defaultdict(int)
        for e in v.entries:
            if e.kind == HOLD:
                held[e.request_id] -= e.amount
        open_holds = sum(held[rid] for rid in open_hold_ids(v))
        sums = (
            sum(e.amount for e in v.entries),
            sum(e.allowance_delta for e in v.entries),
            sum(e.topup_delta for e in v.entries),
            open_holds,
        )
        if sums != (v.balance, v.allowance, v.topup, v.held):
            bad.append(f"{v.account}: journal {sums} != account {(v.balance, v.allowance, v.topup, v.held)}")
    n = sum(len(v.entries) for v in views)
    return Check("journal = balance", not bad, "; ".join(bad) or f"{len(views)} accounts, {n} entries")


def charged_within_hold(views: list[AccountView]) -> Check:
    """Every charge spends at most what its request held, and each request settles at most once."""
    bad = []
    charges = 0
    for v in views:
        held: dict[str, int] = defaultdict(int)
        settlements: dict[str, int] = defaultdict(int)
        for e in v.entries:
            if e.kind == HOLD:
                held[e.request_id] -= e.amount
            elif e.kind in (CHARGE, RELEASE):
                settlements[e.request_id] += 1
        for e in v.entries:
            if e.kind == CHARGE:
                charges += 1
                if e.credits > held[e.request_id]:
                    bad.append(f"{e.request_id}: charged {e.credits} > held {held[e.request_id]}")
        bad += [f"{rid}: settled {n} times" for rid, n in settlements.items() if n > 1]
    return Check("charge <= hold", not bad, "; ".join(bad[:3]) or f"{charges} charges")


def completed_streams_billed(calls: list[Call], views: list[AccountView]) -> Check:
    """A stream that delivered output and completed was charged, and the ledger shows that charge."""
    charged = {e.request_id: e.credits for v in views for e in v.entries if e.kind == CHARGE}
    done = [c for c in calls if c.completed and c.outputs > 0]
    bad = [
        f"{c.request_id}@{c.target}: completion {c.credits_charged}, ledger {charged.get(c.request_id, 'none')}"
        for c in done
        if c.credits_charged <= 0 or charged.get(c.request_id) != c.credits_charged
    ]
    detail = f"{len(bad)} of {len(done)} unbilled: " + "; ".join(bad[:2]) if bad else f"{len(done)} billed"
    return Check("completed streams billed", not bad, detail)


def max_overlap(calls: list[Call]) -> int:
    """The most successful streams of one account whose observed output intervals overlap."""
    events: list[tuple[float, int]] = []
    for c in calls:
        if c.completed and c.decision_at is not None and c.last_output_at is not None:
            end = c.last_output_at - OVERLAP_MARGIN_S
            if end > c.decision_at:
                events += [(c.decision_at, 1), (end, -1)]
    peak = running = 0
    for _, step in sorted(events):
        running += step
        peak = max(peak, running)
    return peak


def concurrency_within_limit(calls: list[Call], polls: list[Poll], limit: int) -> Check:
    """No account ran more streams at once than its plan allows, seen by the clients and by the server."""
    by_account: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_account[c.account].append(c)
    seen = max((max_overlap(cs) for cs in by_account.values()), default=0)
    polled = max((p.in_flight for p in polls if p.code == "OK"), default=0)
    ok = seen <= limit and polled <= limit
    return Check("concurrency <= limit", ok, f"streams at once {seen}, in flight {polled}, limit {limit}")


def zero_internal(calls: list[Call], polls: list[Poll]) -> Check:
    """No call answered INTERNAL (or UNKNOWN, what gRPC says for an unhandled exception)."""
    internal = [c for c in calls if c.code in ("INTERNAL", "UNKNOWN")]
    internal_polls = [p for p in polls if p.code in ("INTERNAL", "UNKNOWN")]
    n = len(internal) + len(internal_polls)
    detail = f"Generate {len(internal)}, GetAccount {len(internal_polls)}"
    return Check("zero INTERNAL", n == 0, detail)


def no_hung_call(calls: list[Call]) -> Check:
    """Every call ended before its deadline: a stream lasts about a second and a paused replica
    less than the deadline, so DEADLINE_EXCEEDED means the server hung a call."""
    hung = [c for c in calls if c.code == "DEADLINE_EXCEEDED"]
    detail = ", ".join(
        f"{c.request_id}@{c.target} (completion {'seen' if c.completed else 'not seen'})" for c in hung[:3]
    )
    return Check(
        "no hung call", not hung, f"{len(hung)} hung: {detail}" if hung else f"{len(calls)} calls ended in time"
    )
