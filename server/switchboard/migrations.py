"""Versioned schema migrations of the ledger's database (SQLite and PostgreSQL).

The database records the migrations applied to it in ``schema_version`` (one row per version).
``migrate`` brings a database up to ``LATEST``, forward only, in one transaction that holds a
lock for its whole length: SQLite's write lock (``BEGIN IMMEDIATE``), PostgreSQL's transaction
advisory lock. Several workers or replicas starting together therefore apply each migration
once: the first takes the lock and migrates, the others wait, then find nothing left to do.

Version 1 is the schema the ledger had before versions were recorded: a database with the
ledger's tables and no ``schema_version`` is adopted as version 1, then upgraded. A database
newer than this build (a later build migrated it) is refused with ``SchemaTooNewError``: old
code must not write to tables it does not understand.

To change the schema, append a ``Migration`` to ``MIGRATIONS`` with the next version. A
migration never changes once released; it may be written per dialect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import structlog

from switchboard.errors import ConfigError
from switchboard.ledger import Tx

log = structlog.get_logger("switchboard")

Dialect = Literal["sqlite", "postgresql"]

ADVISORY_LOCK = 727274
"""PostgreSQL advisory lock key held while migrating (the same key the schema set-up always used)."""

_SERIAL: dict[Dialect, str] = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema. ``sql`` holds ``;``-separated statements; ``{serial}``
    becomes the dialect's auto-incrementing primary key. ``postgresql``, when given, replaces
    ``sql`` on PostgreSQL."""

    version: int
    description: str
    sql: str
    postgresql: str | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        """The statements to run on ``dialect``, in order."""
        text = self.postgresql if dialect == "postgresql" and self.postgresql is not None else self.sql
        return [s.strip() for s in text.format(serial=_SERIAL[dialect]).split(";") if s.strip()]


USAGE_BACKFILL = (
    "INSERT INTO usage_daily (account_id, day, model_id, modality, tier, requests, credits, input_tokens,"
    " output_tokens) SELECT account_id, created_ms / 86400000, model_id, modality, tier, COUNT(*), SUM(credits),"
    " SUM(input_tokens), SUM(output_tokens) FROM ledger WHERE kind IN (5, 6)"
    " GROUP BY account_id, created_ms / 86400000, model_id, modality, tier"
)
"""Fills ``usage_daily`` from the journal's settlements (charges and releases)."""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "accounts, credit holds, the journal and concurrency slots",
        """
CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  plan_id TEXT NOT NULL,
  allowance BIGINT NOT NULL,
  topup BIGINT NOT NULL,
  period_start BIGINT NOT NULL,
  period_end BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
  account_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  allowance_part BIGINT NOT NULL,
  topup_part BIGINT NOT NULL,
  period_start BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (account_id, request_id)
);
CREATE INDEX IF NOT EXISTS holds_open ON holds (state, expires_ms);
CREATE INDEX IF NOT EXISTS holds_account_state ON holds (account_id, state);
CREATE TABLE IF NOT EXISTS ledger (
  seq {serial},
  account_id TEXT NOT NULL,
  kind INTEGER NOT NULL,
  amount BIGINT NOT NULL,
  allowance_delta BIGINT NOT NULL,
  topup_delta BIGINT NOT NULL,
  credits BIGINT NOT NULL,
  request_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL UNIQUE,
  note TEXT NOT NULL,
  created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger (account_id, seq);
CREATE TABLE IF NOT EXISTS slots (
  account_id TEXT NOT NULL,
  lease TEXT NOT NULL,
  expires_ms BIGINT NOT NULL,
  PRIMARY KEY (account_id, lease)
);
""",
    ),
    Migration(
        2,
        "index journal entries by account and time, for usage over a time range",
        "CREATE INDEX ledger_account_time ON ledger (account_id, created_ms)",
    ),
    Migration(
        3,
        "model health shared by every process: consecutive failures and the end of a cool-down",
        """
CREATE TABLE model_health (
  model_id TEXT PRIMARY KEY,
  failures BIGINT NOT NULL,
  open_until_ms BIGINT NOT NULL
)
""",
    ),
    Migration(
        4,
        "which process incarnation took each hold and slot, and a counter of incarnations per instance",
        """
CREATE TABLE instances (
  instance_id TEXT PRIMARY KEY,
  incarnation BIGINT NOT NULL
);
ALTER TABLE holds ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE holds ADD COLUMN incarnation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE slots ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE slots ADD COLUMN incarnation BIGINT NOT NULL DEFAULT 0;
CREATE INDEX holds_owner ON holds (owner, state)
""",
    ),
    Migration(
        5,
        "what each settlement records for usage reports (model, modality, tier, tokens), and settlements"
        " summed per account, UTC day and model, filled from the journal's settlements",
        """
ALTER TABLE ledger ADD COLUMN model_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ledger ADD COLUMN modality INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN tier INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0;
CREATE INDEX ledger_account_kind_time ON ledger (account_id, kind, created_ms);
CREATE INDEX ledger_model_time ON ledger (model_id, created_ms);
CREATE TABLE usage_daily (
  account_id TEXT NOT NULL,
  day BIGINT NOT NULL,
  model_id TEXT NOT NULL,
  modality INTEGER NOT NULL,
  tier INTEGER NOT NULL,
  requests BIGINT NOT NULL,
  credits BIGINT NOT NULL,
  input_tokens BIGINT NOT NULL,
  output_tokens BIGINT NOT NULL,
  PRIMARY KEY (account_id, day, model_id, modality, tier)
);
CREATE INDEX usage_daily_model ON usage_daily (model_id, day);
"""
        + USAGE_BACKFILL,
    ),
    # The next migration is version 6: append it here.
)

LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_ms BIGINT NOT NULL
)
"""
_TABLE_EXISTS: dict[Dialect, str] = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s",
    "postgresql": "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = %s",
}


class SchemaTooNewError(ConfigError):
    """Raised when the ledger's database has a schema version newer than this build knows."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the ledger's schema is at version {found}, newer than version {known}, the latest this build "
            "knows: run a build that knows it (downgrading the schema is not supported)"
        )
        self.found = found
        self.known = known


@dataclass(frozen=True, slots=True)
class Migrated:
    """What ``migrate`` did: the schema version found and the version left."""

    before: int
    after: int


def current_version(tx: Tx, dialect: Dialect) -> int:
    """The database's schema version: the highest recorded one; 1 for a ledger that predates
    version records; 0 for an empty database."""
    if tx.one(_TABLE_EXISTS[dialect], ("schema_version",)) is not None:
        row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row is not None and row[0] is not None else 0
    return 1 if tx.one(_TABLE_EXISTS[dialect], ("accounts",)) is not None else 0


def migrate(tx: Tx, dialect: Dialect, target: int = LATEST) -> Migrated:
    """Bring the schema to version ``target``, inside ``tx``, which must already hold the
    migration lock (see the module's docstring). Raises SchemaTooNewError when the database is
    newer than this build."""
    before = current_version(tx, dialect)
    if before > LATEST:
        raise SchemaTooNewError(before, LATEST)
    tx.run(_VERSION_TABLE)
    now_ms = int(time.time() * 1000)
    if before >= 1 and tx.one("SELECT 1 FROM schema_version WHERE version = 1") is None:
        tx.run(
            "INSERT INTO schema_version (version, description, applied_ms) VALUES (%s, %s, %s)",
            (1, MIGRATIONS[0].description + " (adopted)", now_ms),
        )
    for migration in MIGRATIONS:
        if before < migration.version <= target:
            for statement in migration.statements(dialect):
                tx.run(statement)
            tx.run(
                "INSERT INTO schema_version (version, description, applied_ms) VALUES (%s, %s, %s)",
                (migration.version, migration.description, now_ms),
            )
    after = max(before, min(target, LATEST))
    if after != before:
        log.info("ledger_migrated", from_version=before, to_version=after)
    return Migrated(before, after)
