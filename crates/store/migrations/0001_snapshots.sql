-- The index of stored pictures and the persisted sequence counters.
-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only, ids made by livesnap
-- (time-ordered strings), no AUTOINCREMENT/SERIAL.

CREATE TABLE snapshots (
    id         TEXT   NOT NULL PRIMARY KEY,
    domain     TEXT   NOT NULL,
    app        TEXT   NOT NULL,
    stream     TEXT   NOT NULL,
    job        TEXT   NOT NULL,
    time_ms    BIGINT NOT NULL,
    sequence   BIGINT,
    mode       TEXT   NOT NULL CHECK (mode IN ('overwrite', 'sequence')),
    storage    TEXT   NOT NULL,
    object_key TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    width      BIGINT NOT NULL,
    height     BIGINT NOT NULL,
    format     TEXT   NOT NULL
);

-- Listing newest first, unfiltered or by stream.
CREATE INDEX snapshots_by_time ON snapshots (time_ms, id);
CREATE INDEX snapshots_by_stream ON snapshots (domain, app, stream, time_ms, id);
-- Retention per (job, stream) over sequence rows, and the sweeper's stream list.
CREATE INDEX snapshots_by_job ON snapshots (job, mode, domain, app, stream, time_ms, id);
-- Overwrite mode keeps one row per object, updated in place.
CREATE UNIQUE INDEX snapshots_overwrite_object ON snapshots (storage, object_key) WHERE mode = 'overwrite';

CREATE TABLE sequence_counters (
    domain TEXT   NOT NULL,
    app    TEXT   NOT NULL,
    stream TEXT   NOT NULL,
    job    TEXT   NOT NULL,
    value  BIGINT NOT NULL,
    PRIMARY KEY (domain, app, stream, job)
);
