-- The collector's tables: the system registry, the metric dictionary, ingest
-- bookkeeping and the samples. Samples are narrow (ts, system_id, metric_id, value)
-- with a metric dictionary: the layout that ingests fastest.

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
