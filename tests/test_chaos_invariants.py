"""The chaos suite's invariant checks (ops/invariants.py) judge recorded calls and ledger journals:
each one passes on a consistent record and fails on the violation it exists to catch."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))

from invariants import (
    CHARGE,
    HOLD,
    RELEASE,
    AccountView,
    Entry,
    charged_within_hold,
    completed_streams_billed,
    concurrency_within_limit,
    journal_sums_to_balance,
    max_overlap,
    no_hung_call,
    zero_internal,
)
from load import Call, Poll

GRANT = 1  # LEDGER_ENTRY_KIND_ALLOWANCE_GRANT


def journal(charge: int = 4, extra: tuple[Entry, ...] = ()) -> tuple[Entry, ...]:
    """500 granted; r1 held 10 and charged ``charge`` (the rest returned); r2 held 6, still open."""
    return (
        Entry(GRANT, 500, 500, 0, 0, ""),
        Entry(HOLD, -10, -10, 0, 0, "r1"),
        Entry(CHARGE, 10 - charge, 10 - charge, 0, charge, "r1"),
        Entry(HOLD, -6, -6, 0, 0, "r2"),
        *extra,
    )


def view(entries: tuple[Entry, ...], balance: int = 490, held: int = 6) -> AccountView:
    return AccountView("acct", balance, balance, 0, held, entries)


def call(rid: str, start: float, end: float, *, charged: int = 4, outputs: int = 3) -> Call:
    return Call("acct", rid, "t", start, end, start + 0.01, start + 0.02, end, outputs, "m", True, charged, "OK", "")


def test_journal_check_passes_when_entries_sum_to_the_account_and_fails_when_not() -> None:
    assert journal_sums_to_balance([view(journal())]).ok
    assert not journal_sums_to_balance([view(journal(), balance=491)]).ok
    assert not journal_sums_to_balance([view(journal(), held=0)]).ok  # r2's open hold is unaccounted


def test_charge_above_the_hold_or_a_second_settlement_fails() -> None:
    assert charged_within_hold([view(journal())]).ok
    assert not charged_within_hold([view(journal(charge=11))]).ok
    twice = journal(extra=(Entry(RELEASE, 0, 0, 0, 0, "r1"),))
    assert "settled 2 times" in charged_within_hold([view(twice)]).detail


def test_a_completed_stream_with_output_must_match_a_charge_in_the_ledger() -> None:
    views = [view(journal())]
    assert completed_streams_billed([call("r1", 0, 1, charged=4)], views).ok
    assert not completed_streams_billed([call("r1", 0, 1, charged=0)], views).ok  # a free answer
    assert not completed_streams_billed([call("r9", 0, 1, charged=4)], views).ok  # no charge recorded
    assert completed_streams_billed([call("r9", 0, 1, charged=0, outputs=0)], views).ok  # nothing delivered


def test_overlapping_streams_over_the_limit_fail_and_back_to_back_streams_do_not() -> None:
    back_to_back = [call(f"r{i}", i * 1.0, i * 1.0 + 1.0) for i in range(5)]
    assert max_overlap(back_to_back) == 1
    three = [call(f"r{i}", 0.1 * i, 2.0) for i in range(3)]
    assert max_overlap(three) == 3
    assert concurrency_within_limit(back_to_back, [], limit=2).ok
    assert not concurrency_within_limit(three, [], limit=2).ok
    assert not concurrency_within_limit([], [Poll(0, "acct", "t", "OK", 3)], limit=2).ok


def test_internal_or_unknown_anywhere_fails() -> None:
    ok = call("r1", 0, 1)
    assert zero_internal([ok], [Poll(0, "acct", "t", "UNAVAILABLE")]).ok
    bad = call("r2", 0, 1)
    bad.code = "INTERNAL"
    assert not zero_internal([ok, bad], []).ok
    assert not zero_internal([ok], [Poll(0, "acct", "t", "UNKNOWN")]).ok


def test_a_call_that_ran_into_its_deadline_is_a_hang() -> None:
    ok = call("r1", 0, 1)
    assert no_hung_call([ok]).ok
    hung = call("r2", 0, 15)
    hung.code = "DEADLINE_EXCEEDED"
    assert "completion seen" in no_hung_call([ok, hung]).detail
    assert not no_hung_call([ok, hung]).ok
