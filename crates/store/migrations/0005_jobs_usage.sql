-- Pull jobs (a URL pictured on a template's schedule) and their usage.
-- `input_url` keeps the credentials the job was given (the API shows it with the password
-- hidden). `stopped` is 1 once the API stopped the job: it stays stopped across restarts; a job
-- not stopped and not failed is started again at the next start. `last_snapshot` is the JSON
-- of the job's newest picture (id, time_ms, storage, key).

CREATE TABLE jobs (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL,
    input_url     TEXT   NOT NULL,
    template      TEXT   NOT NULL REFERENCES templates (name),
    storage       TEXT,
    callback_url  TEXT,
    stopped       BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    error         TEXT,
    error_ms      BIGINT,
    created_ms    BIGINT NOT NULL,
    started_ms    BIGINT,
    frames        BIGINT NOT NULL,
    keyframes     BIGINT NOT NULL,
    pictures      BIGINT NOT NULL,
    reconnects    BIGINT NOT NULL,
    last_snapshot TEXT
);
CREATE INDEX jobs_by_created ON jobs (created_ms, id);
CREATE INDEX jobs_by_template ON jobs (template);

-- Running time of each job per UTC day (`day` is YYYY-MM-DD), added to as the job runs; kept
-- when the job is deleted (it is what was used), with the job's name as it was.
CREATE TABLE job_usage (
    day        TEXT   NOT NULL,
    job        TEXT   NOT NULL,
    job_name   TEXT   NOT NULL,
    running_ms BIGINT NOT NULL,
    PRIMARY KEY (day, job)
);
