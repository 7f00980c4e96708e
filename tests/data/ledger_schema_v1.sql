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
