"""Schema version 1 of a PostgreSQL intake store: the hot table, idempotency keys, dead letters.

Everything lives in one PostgreSQL schema (``?schema=servicehost`` by default; ``{schema}`` below
is its quoted name), so several services can share one database. ``jobs`` holds only live work
(ready, delayed, running): a done job is deleted, so the table stays small and its dead rows are
few; the per-table autovacuum settings below vacuum it after a thousand dead rows however large it
once grew, at full speed (it is small), and ``fillfactor = 50`` leaves room in each page for the
updates a claim, a renewal and a retry make. ``state``: 0 ready (or delayed: ``run_at`` in the
future), 1 running (claimed by ``owner`` under ``token`` until ``lease_until``; ``started`` once its
handler began). Times are
wall-clock seconds since the epoch (the database server's clock for leases). A payload is JSON
text in ``payload`` or bytes in ``payload_bytes``.
"""

VERSION = 1
DESCRIPTION = "jobs (hot table), idempotency, dead, schema_version"

SQL = """
CREATE TABLE {schema}.schema_version (
    version      integer PRIMARY KEY,
    description  text NOT NULL,
    migrated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.jobs (
    id             bigserial PRIMARY KEY,          -- never reused: a done job's id stays its own
    state          smallint NOT NULL DEFAULT 0,    -- 0 ready, 1 running
    priority       integer NOT NULL DEFAULT 0,     -- higher first
    run_at         double precision NOT NULL,      -- not claimed before
    key            text,                           -- one running at a time per key, FIFO
    attempts       integer NOT NULL DEFAULT 0,     -- counted at claim
    max_attempts   integer NOT NULL,
    owner          text,                           -- the node that claimed it
    token          bigint,                         -- this claim's fence
    started        boolean NOT NULL DEFAULT false, -- its handler began (start): a lapse then costs the attempt
    lease_until    double precision,
    submitted_at   double precision NOT NULL,
    idem_key       text,
    errors         jsonb,                          -- [[at, attempt, error], ...], the last few
    payload        text,                           -- a JSON value, or NULL when payload_bytes holds bytes
    payload_bytes  bytea
) WITH (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX jobs_ready ON {schema}.jobs (priority DESC, run_at, id) WHERE state = 0;
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until) WHERE state = 1;
CREATE INDEX jobs_key ON {schema}.jobs (key, id) WHERE key IS NOT NULL;

-- An idempotency key outlives its job (done or dead) for the store's retention.
CREATE TABLE {schema}.idempotency (
    key     text PRIMARY KEY,
    job_id  bigint NOT NULL,
    at      double precision NOT NULL
);
CREATE INDEX idempotency_at ON {schema}.idempotency (at);

CREATE TABLE {schema}.dead (
    id             bigint PRIMARY KEY,             -- the job's id
    priority       integer NOT NULL,
    key            text,
    attempts       integer NOT NULL,
    max_attempts   integer NOT NULL,
    submitted_at   double precision NOT NULL,
    died_at        double precision NOT NULL,
    idem_key       text,
    errors         jsonb,
    payload        text,
    payload_bytes  bytea
);
CREATE INDEX dead_died ON {schema}.dead (died_at, id);
"""
