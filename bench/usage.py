"""How long GetUsage's core takes on an account with a million ledger entries (``make bench-usage``).

Fills a fresh ledger with ``--entries`` entries for one account (holds and their settlements over
a month, six models, plus other accounts' entries around it), then times ``usage()`` for each
grouping: the first page, and the median of ``--runs`` runs.

    python bench/usage.py                          # SQLite in a temporary folder, 1,000,000 entries
    python bench/usage.py --postgres postgresql://127.0.0.1:5432/db --entries 200000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "server"))

from switchboard.catalog import load_catalog  # noqa: E402 - after the path is set
from switchboard.ledger import EntryKind, Ledger  # noqa: E402
from switchboard.migrations import USAGE_BACKFILL  # noqa: E402
from switchboard.stores import PostgresStore, SqliteStore  # noqa: E402
from switchboard.usage import GroupBy, UsageQuery, usage  # noqa: E402

MODELS = [
    ("gemini-3.1-flash-lite", 1, 1),
    ("gpt-5.4-nano", 1, 1),
    ("gpt-5.4-mini", 1, 2),
    ("claude-sonnet-4-6", 1, 3),
    ("openai/gpt-image-2", 2, 3),
    ("tts-1-hd", 4, 3),
]
MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
COLUMNS = (
    "account_id, kind, amount, allowance_delta, topup_delta, credits, request_id, idempotency_key, note,"
    " created_ms, model_id, modality, tier, input_tokens, output_tokens"
)


def rows(account: str, entries: int, start_ms: int, span_ms: int) -> list[tuple[object, ...]]:
    """``entries`` journal rows: a hold and its settlement per request, spread over the span."""
    out: list[tuple[object, ...]] = []
    for i in range(entries // 2):
        at = start_ms + span_ms * i // max(1, entries // 2)
        model, modality, tier = MODELS[i % len(MODELS)]
        rid = f"r{i}"
        out.append((account, int(EntryKind.HOLD), -5, -5, 0, 0, rid, f"hold:{account}:{rid}", "", at, "", 0, 0, 0, 0))
        kind = int(EntryKind.CHARGE) if i % 10 else int(EntryKind.RELEASE)
        credits = 3 if kind == EntryKind.CHARGE else 0
        out.append(
            (account, kind, 5 - credits, 5 - credits, 0, credits, rid, f"settle:{account}:{rid}", "", at + 1,
             model, modality, tier, 40 + i % 7, 200 + i % 13)
        )  # fmt: skip
    return out


def fill(ledger: Ledger, entries: int, others: int) -> None:
    start = int(MONTH_START.timestamp() * 1000)
    span = 28 * 86_400_000
    ledger.create_account("big", "business")
    for n in range(others):
        ledger.create_account(f"other-{n}", "pro")
    sql = f"INSERT INTO ledger ({COLUMNS}) VALUES ({', '.join(['%s'] * 15)})"
    batches = [("big", entries)] + [(f"other-{n}", max(2, entries // 10 // max(1, others))) for n in range(others)]
    for account, count in batches:
        data = rows(account, count, start, span)
        for k in range(0, len(data), 50_000):
            with ledger.store.transaction() as tx:
                chunk = data[k : k + 50_000]
                if isinstance(ledger.store, SqliteStore):
                    tx.conn.executemany(sql.replace("%s", "?"), chunk)  # type: ignore[attr-defined]
                else:
                    tx.cur.executemany(sql, chunk)  # type: ignore[attr-defined]
    with ledger.store.transaction() as tx:  # the daily sums the settlements would have kept
        tx.run("DELETE FROM usage_daily")
        tx.run(USAGE_BACKFILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=20, help="other accounts, a tenth of the entries between them")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", help="a DSN of an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    plans = load_catalog(None).plans
    clock = lambda: datetime(2026, 11, 29, tzinfo=UTC)  # noqa: E731 - the current period is November
    with tempfile.TemporaryDirectory(prefix="sb-usage-") as tmp:
        store = PostgresStore(args.postgres) if args.postgres else SqliteStore(Path(tmp) / "ledger.db")
        ledger = Ledger(store, plans, clock)
        t0 = time.perf_counter()
        fill(ledger, args.entries, args.others)
        backend = "postgresql" if args.postgres else "sqlite"
        print(f"{backend}: {args.entries:,} entries for one account filled in {time.perf_counter() - t0:.1f} s")
        print("| range | grouping | groups | requests | first page ms (median) | min ms |\n|---|---|---|---|---|---|")
        part = (int(datetime(2026, 11, 3, 12, tzinfo=UTC).timestamp() * 1000),
                int(datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp() * 1000))  # fmt: skip
        cases = [("period", g, None) for g in GroupBy] + [("3rd 12:00 to 20th 12:00", g, part) for g in GroupBy]
        for label, group_by, span in cases:
            start, end = span or (None, None)
            query = UsageQuery(account_id="big", start_ms=start, end_ms=end, group_by=group_by, page_size=50)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                report = usage(ledger, query)
                times.append((time.perf_counter() - t) * 1000)
            print(
                f"| {label} | {group_by.name.lower()} | {len(report.groups)} | {report.total.requests:,} |"
                f" {statistics.median(times):.1f} | {min(times):.1f} |"
            )
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
