"""Schema version 1 of a SQLite intake store: the hot table, idempotency keys, dead letters.

``jobs`` holds only live work (ready, delayed, running): a job that is done leaves it, so the
table and its indexes stay small however many jobs went through. ``state``: 0 ready (or delayed:
``run_at`` in the future), 1 running (claimed by ``owner`` under ``token`` until ``lease_until``).
Times are wall-clock seconds. ``payload`` is TEXT (a JSON value) or BLOB (bytes).
"""

VERSION = 1
DESCRIPTION = "jobs (hot table), idempotency, dead"

SQL = """
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a done job's id stays its own
    state         INTEGER NOT NULL DEFAULT 0,         -- 0 ready, 1 running
    priority      INTEGER NOT NULL DEFAULT 0,         -- higher first
    run_at        REAL    NOT NULL,                   -- not claimed before
    key           TEXT,                               -- one running at a time per key, FIFO
    attempts      INTEGER NOT NULL DEFAULT 0,         -- counted at claim
    started       INTEGER NOT NULL DEFAULT 0,         -- 1 once its handler may run (start): a lapse
                                                      -- before it gives the claim's attempt back
    max_attempts  INTEGER NOT NULL,
    owner         TEXT,                               -- the node that claimed it
    token         INTEGER,                            -- this claim's fence
    lease_until   REAL,
    submitted_at  REAL    NOT NULL,
    idem_key      TEXT,
    errors        TEXT,                               -- JSON [[at, attempt, error], ...], the last few
    payload       BLOB                                -- BLOB: no affinity, TEXT stays TEXT
);
CREATE INDEX jobs_ready ON jobs (priority DESC, run_at, id) WHERE state = 0;
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 1;  -- small: the running jobs; reaping, renewal
CREATE INDEX jobs_key ON jobs (key, id) WHERE key IS NOT NULL;

-- An idempotency key outlives its job (done or dead) for the store's retention.
CREATE TABLE idempotency (
    key     TEXT PRIMARY KEY,
    job_id  INTEGER NOT NULL,
    at      REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_at ON idempotency (at);

CREATE TABLE dead (
    id            INTEGER PRIMARY KEY,                -- the job's id
    priority      INTEGER NOT NULL,
    key           TEXT,
    attempts      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    submitted_at  REAL    NOT NULL,
    died_at       REAL    NOT NULL,
    idem_key      TEXT,
    errors        TEXT,
    payload       BLOB
);
"""
