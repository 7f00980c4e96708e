"""Usage reports from the ledger: what an account (or, for one model, every account) spent in a
time range, grouped by model, modality, tier, day or account.

Each settled Generate request has one settlement entry (CHARGE, or RELEASE when nothing was
charged) that records the serving model, its modality and tier, and the tokens used
(``ledger.ChargeUsage``), and the same transaction adds it to the account's daily sums
(``usage_daily``). A report totals the daily sums of the whole UTC days in its range and the
entries of the hours at its edges, so its cost grows with the days and models in the range, not
with the entries; top-ups and allowance changes of the range are read beside them. Groups come
in order of their key and are paged by key, so a page token is the last key of the page before;
the same SQL runs on SQLite and PostgreSQL (text keys ordered by their bytes on both).
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from switchboard.errors import InvalidRequestError, NotFoundError
from switchboard.ledger import EntryKind, Ledger, month_bounds

DAY_MS = 86_400_000
MAX_PAGE = 500
DEFAULT_PAGE = 50


class GroupBy(enum.IntEnum):
    """How settled requests are grouped; numbers match ``UsageGroupBy`` in accounts.proto."""

    MODEL = 1
    MODALITY = 2
    TIER = 3
    DAY = 4
    ACCOUNT = 5


# The SQL expression of each grouping's key, and whether the key is a number.
_KEYS: dict[GroupBy, tuple[str, bool]] = {
    GroupBy.MODEL: ("model_id", False),
    GroupBy.MODALITY: ("modality", True),
    GroupBy.TIER: ("tier", True),
    GroupBy.DAY: (f"created_ms / {DAY_MS}", True),
    GroupBy.ACCOUNT: ("account_id", False),
}
_SETTLEMENTS = (int(EntryKind.CHARGE), int(EntryKind.RELEASE))


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What to total: one account (``model_id`` optionally narrowing it) or, with an empty
    ``account_id``, one model across accounts. Times are milliseconds since the epoch, the end
    exclusive; None means the current period."""

    account_id: str = ""
    model_id: str = ""
    start_ms: int | None = None
    end_ms: int | None = None
    group_by: GroupBy = GroupBy.MODEL
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """The totals of one group (``key`` is the group's key: a model or account id, a modality or
    tier number, or a day as days since the epoch), or of the whole range (``key`` None)."""

    key: str | int | None
    requests: int = 0
    credits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One page of a usage report, with the range's totals and credits added."""

    start_ms: int
    end_ms: int
    group_by: GroupBy
    groups: list[UsageTotals]
    next_page_token: str
    total: UsageTotals
    top_ups: int = 0
    allowance_granted: int = 0
    allowance_expired: int = 0


def day_text(day: int) -> str:
    """A day number (days since the epoch, UTC) as YYYY-MM-DD."""
    return datetime.fromtimestamp(day * DAY_MS / 1000, UTC).strftime("%Y-%m-%d")


def _token(group_by: GroupBy, key: str | int) -> str:
    return base64.urlsafe_b64encode(f"{int(group_by)}:{key}".encode()).decode().rstrip("=")


def _after(query: UsageQuery) -> str | int | None:
    """The last key of the page before, from the page token (INVALID_PAGE_TOKEN when it is not one
    this grouping made)."""
    if not query.page_token:
        return None
    bad = InvalidRequestError("INVALID_PAGE_TOKEN", "page_token: not a token of this report", {"field": "page_token"})
    try:
        text = base64.urlsafe_b64decode(query.page_token + "=" * (-len(query.page_token) % 4)).decode()
        group, _, key = text.partition(":")
        if int(group) != query.group_by:
            raise bad
        return int(key) if _KEYS[query.group_by][1] else key
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad from exc


def _range(ledger: Ledger, query: UsageQuery) -> tuple[int, int]:
    """The query's range, its gaps filled with the account's current period (across accounts:
    the current calendar month)."""
    if query.start_ms is not None and query.end_ms is not None:
        start, end = query.start_ms, query.end_ms
    else:
        if query.account_id:
            record = ledger.get(query.account_id)
            if record is None:
                raise NotFoundError(
                    "ACCOUNT_NOT_FOUND",
                    f"no account has the id {query.account_id!r}",
                    {"account_id": query.account_id},
                )
            period = (record.period_start, record.period_end)
        else:
            period = month_bounds(ledger.clock())
        period = (period[0] * 1000, period[1] * 1000)  # periods are in seconds, entries in milliseconds
        start = query.start_ms if query.start_ms is not None else period[0]
        end = query.end_ms if query.end_ms is not None else period[1]
    if end <= start:
        raise InvalidRequestError("INVALID_FIELD", "end_time: must be after start_time", {"field": "end_time"})
    return start, end


def _settlements(query: UsageQuery, start: int, end: int) -> tuple[str, list[str | int]]:
    """SQL for the settlements of the range, one row per group of requests: the whole UTC days in
    it from the daily sums, the hours at either edge from the ledger's entries."""
    who, who_params = [], []
    if query.account_id:
        who.append("account_id = %s")
        who_params.append(query.account_id)
    if query.model_id:
        who.append("model_id = %s")
        who_params.append(query.model_id)
    first_day, end_day = -(-start // DAY_MS), end // DAY_MS  # whole days: [first_day, end_day)
    columns = "account_id, model_id, modality, tier"
    entries = (
        f"SELECT {columns}, created_ms, 1 AS requests, credits, input_tokens, output_tokens FROM ledger"
        f" WHERE {' AND '.join([*who, 'kind IN (%s, %s)', 'created_ms >= %s', 'created_ms < %s'])}"
    )
    if first_day >= end_day:  # less than one whole day: the entries alone
        return entries, [*who_params, *_SETTLEMENTS, start, end]
    daily = (
        f"SELECT {columns}, day * {DAY_MS} AS created_ms, requests, credits, input_tokens, output_tokens"
        f" FROM usage_daily WHERE {' AND '.join([*who, 'day >= %s', 'day < %s'])}"
    )
    sql = f"{daily} UNION ALL {entries} UNION ALL {entries}"
    params: list[str | int] = [*who_params, first_day, end_day]
    params += [*who_params, *_SETTLEMENTS, start, first_day * DAY_MS]
    params += [*who_params, *_SETTLEMENTS, end_day * DAY_MS, end]
    return sql, params


def usage(ledger: Ledger, query: UsageQuery) -> UsageReport:
    """The usage report ``query`` asks for, read in one snapshot of the ledger."""
    if not query.account_id and not query.model_id:
        problem = "account_id: required (or model_id, for one model across accounts)"
        raise InvalidRequestError("FIELD_REQUIRED", problem, {"field": "account_id"})
    if query.page_size < 0:
        raise InvalidRequestError("INVALID_FIELD", "page_size: must not be negative", {"field": "page_size"})
    size = min(query.page_size or DEFAULT_PAGE, MAX_PAGE)
    after = _after(query)
    start, end = _range(ledger, query)
    key_sql, numeric = _KEYS[query.group_by]
    if not numeric:
        key_sql += ledger.store.binary_collation
    source, params = _settlements(query, start, end)
    sums = (
        "COALESCE(SUM(requests), 0), COALESCE(SUM(credits), 0), COALESCE(SUM(input_tokens), 0),"
        " COALESCE(SUM(output_tokens), 0)"
    )
    having = f" HAVING {key_sql} > %s" if after is not None else ""
    with ledger.store.reading() as tx:
        rows = tx.all(
            f"SELECT {key_sql}, {sums} FROM ({source}) u GROUP BY {key_sql}{having} ORDER BY {key_sql} LIMIT %s",
            (*params, *([after] if after is not None else []), size + 1),
        )
        total_row = tx.one(f"SELECT {sums} FROM ({source}) u", params)
        added = (0, 0, 0)
        if query.account_id:
            kinds = (int(EntryKind.TOP_UP), int(EntryKind.ALLOWANCE_GRANT), int(EntryKind.ALLOWANCE_EXPIRE))
            by_kind = dict(
                tx.all(
                    "SELECT kind, COALESCE(SUM(amount), 0) FROM ledger WHERE account_id = %s AND kind IN (%s, %s, %s)"
                    " AND created_ms >= %s AND created_ms < %s GROUP BY kind",
                    (query.account_id, *kinds, start, end),
                )
            )
            added = tuple(int(by_kind.get(k, 0)) for k in kinds)  # type: ignore[assignment]
    groups = [UsageTotals(r[0] if isinstance(r[0], str) else int(r[0]), *(int(v) for v in r[1:])) for r in rows]
    more = len(groups) > size
    groups = groups[:size]
    assert total_row is not None
    return UsageReport(
        start_ms=start,
        end_ms=end,
        group_by=query.group_by,
        groups=groups,
        next_page_token=_token(query.group_by, groups[-1].key) if more and groups[-1].key is not None else "",
        total=UsageTotals(None, *(int(v) for v in total_row)),
        top_ups=added[0],
        allowance_granted=added[1],
        allowance_expired=-added[2],
    )
