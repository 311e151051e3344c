-- The whole schema of cfgclone v1. Samples are narrow (ts, system_id, metric_id,
-- value) with a metric dictionary: the layout that ingests fastest.

CREATE TABLE systems (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id       text NOT NULL UNIQUE,
    hostname        text NOT NULL DEFAULT '',
    cpu_model       text NOT NULL DEFAULT '',
    cpu_cores       integer NOT NULL DEFAULT 0,
    memory_bytes    bigint NOT NULL DEFAULT 0,
    disks           jsonb NOT NULL DEFAULT '[]',
    os              text NOT NULL DEFAULT '',
    kernel          text NOT NULL DEFAULT '',
    architecture    text NOT NULL DEFAULT '',
    labels          jsonb NOT NULL DEFAULT '{}',
    flagged_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX systems_labels_idx ON systems USING gin (labels);

CREATE TABLE metrics (
    id      integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL UNIQUE,
    unit    text NOT NULL DEFAULT '',
    kind    smallint NOT NULL DEFAULT 0
);

-- Batch ids already stored: a resend of one of them stores nothing.
CREATE TABLE ingested_batches (
    batch_id     text PRIMARY KEY,
    system_id    integer NOT NULL REFERENCES systems (id),
    samples      integer NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingested_batches_received_idx ON ingested_batches (received_at);

-- Newest sample per (system, metric), kept by ingest for listings and refinement.
CREATE TABLE series (
    system_id     integer NOT NULL REFERENCES systems (id),
    metric_id     integer NOT NULL REFERENCES metrics (id),
    first_ts      timestamptz NOT NULL,
    last_ts       timestamptz NOT NULL,
    PRIMARY KEY (system_id, metric_id)
);

CREATE TABLE scrape_targets (
    id                integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id         integer NOT NULL REFERENCES systems (id),
    url               text NOT NULL,
    interval_seconds  double precision NOT NULL DEFAULT 15,
    metric_prefixes   text[] NOT NULL DEFAULT '{}',
    last_error        text NOT NULL DEFAULT '',
    last_scrape_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (system_id, url)
);

CREATE TABLE configurations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id       integer NOT NULL REFERENCES systems (id),
    version         integer NOT NULL,
    kind            text NOT NULL,
    content         jsonb NOT NULL,
    param_schema    jsonb NOT NULL DEFAULT '[]',
    content_hash    text NOT NULL,
    author          text NOT NULL DEFAULT '',
    source          smallint NOT NULL DEFAULT 0,
    parent_version  integer,
    request_id      text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz,
    UNIQUE (system_id, version)
);

CREATE TABLE fingerprints (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id              integer NOT NULL REFERENCES systems (id),
    configuration_version  integer,
    model_version          integer NOT NULL,
    load_metric            text NOT NULL,
    window_start           timestamptz NOT NULL,
    window_end             timestamptz NOT NULL,
    model                  bytea NOT NULL,
    embedding              real[] NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fingerprints_system_idx ON fingerprints (system_id, updated_at DESC);
CREATE INDEX fingerprints_updated_idx ON fingerprints (updated_at);

CREATE TABLE policies (
    policy_id   text NOT NULL,
    revision    integer NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policy_id, revision)
);

CREATE TABLE changes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id        integer NOT NULL REFERENCES systems (id),
    request_id       text UNIQUE,
    state            smallint NOT NULL,
    from_version     integer,
    to_version       integer NOT NULL,
    dry_run          boolean NOT NULL DEFAULT false,
    mode             smallint NOT NULL DEFAULT 0,
    policy           text NOT NULL DEFAULT '',
    prediction       bytea,
    verification     bytea,
    requested_by     text NOT NULL DEFAULT '',
    state_reason     text NOT NULL DEFAULT '',
    override         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_system_idx ON changes (system_id, created_at DESC);
-- One change in flight per system.
CREATE UNIQUE INDEX changes_one_in_flight_idx ON changes (system_id)
    WHERE state IN (1, 2, 3, 4, 5);

CREATE TABLE rollbacks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id         bigint NOT NULL REFERENCES changes (id),
    system_id         integer NOT NULL REFERENCES systems (id),
    reason            smallint NOT NULL,
    explanation       text NOT NULL,
    predicted         bytea,
    observed          bytea,
    from_version      integer,
    to_version        integer,
    requested_by      text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollbacks_system_idx ON rollbacks (system_id, created_at DESC);

CREATE TABLE operations (
    id            text PRIMARY KEY,
    kind          smallint NOT NULL,
    state         smallint NOT NULL,
    request_id    text UNIQUE,
    body          bytea NOT NULL,
    requested_by  text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_created_idx ON operations (created_at DESC);

-- Samples: a TimescaleDB hypertable with compression when the extension can be
-- created (the migration runner sets cfgclone.use_timescaledb when it is installed
-- and preloaded); otherwise a table partitioned by day, whose partitions the
-- collector creates ahead and drops past retention, with a default partition so
-- that no sample is ever refused for want of a partition.
DO $samples$
DECLARE
    has_timescale boolean := false;
BEGIN
    IF current_setting('cfgclone.use_timescaledb', true) = 'on' THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
            has_timescale := true;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'timescaledb is available but could not be created (%); using native partitions', SQLERRM;
        END;
    END IF;

    IF has_timescale THEN
        CREATE TABLE samples (
            ts         timestamptz NOT NULL,
            system_id  integer NOT NULL,
            metric_id  integer NOT NULL,
            value      double precision NOT NULL
        );
        PERFORM create_hypertable('samples', 'ts', chunk_time_interval => interval '1 day');
        EXECUTE 'ALTER TABLE samples SET (timescaledb.compress, '
             || 'timescaledb.compress_segmentby = ''system_id, metric_id'', '
             || 'timescaledb.compress_orderby = ''ts'')';
        PERFORM add_compression_policy('samples', interval '2 days');
    ELSE
        CREATE TABLE samples (
            ts         timestamptz NOT NULL,
            system_id  integer NOT NULL,
            metric_id  integer NOT NULL,
            value      double precision NOT NULL
        ) PARTITION BY RANGE (ts);
        CREATE TABLE samples_default PARTITION OF samples DEFAULT;
    END IF;
    CREATE INDEX samples_series_idx ON samples (system_id, metric_id, ts);
END
$samples$;
