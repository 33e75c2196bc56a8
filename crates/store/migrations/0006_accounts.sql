-- Accounts and their API keys. An account owns its domains (a domain belongs to at most one
-- account; `_default` is the administrator's). `spec` is the account's JSON as livesnap wrote
-- it (limits, publish secret). A key is kept only as the hex SHA-256 of its text: the key
-- itself is shown once, when it is made.

CREATE TABLE accounts (
    name       TEXT   NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE account_domains (
    domain  TEXT NOT NULL PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE
);
CREATE INDEX account_domains_by_account ON account_domains (account);

CREATE TABLE api_keys (
    id           TEXT   NOT NULL PRIMARY KEY,
    account      TEXT   NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    role         TEXT   NOT NULL CHECK (role IN ('admin', 'read')),
    label        TEXT,
    key_hash     TEXT   NOT NULL UNIQUE,
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account);
