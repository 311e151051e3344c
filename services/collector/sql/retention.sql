-- Daily partitions of samples and retention. Names in braces are filled in
-- with psycopg.sql (an Identifier or a Literal); the rest are parameters.

-- name: try_maintenance_lock
SELECT pg_try_advisory_lock(hashtext('cfgclone.samples_maintenance'));

-- name: maintenance_unlock
SELECT pg_advisory_unlock(hashtext('cfgclone.samples_maintenance'));

-- name: samples_layout
-- 'p' for a partitioned table, another kind for a hypertable; no row before
-- the migrations have run.
SELECT relkind::text FROM pg_class WHERE oid = to_regclass('samples');

-- name: sample_partitions
SELECT c.relname::text
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'samples'::regclass
ORDER BY 1;

-- name: default_partition_days
SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date AS day
FROM samples_default
WHERE ts >= %(cutoff)s
ORDER BY day;

-- name: lock_for_attach
-- Taken before anything else. Writers of samples wait until the new partition
-- is attached: a COPY that had already routed rows to the default partition
-- would otherwise fail its partition check, and rows cannot arrive in the
-- default partition between moving them out and attaching the new partition.
LOCK TABLE samples, samples_default IN SHARE ROW EXCLUSIVE MODE;

-- name: create_partition_table
CREATE TABLE {partition} (LIKE samples INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

-- name: move_default_rows
WITH moved AS (
    DELETE FROM samples_default
    WHERE ts >= %(start)s AND ts < %(end)s
    RETURNING ts, system_id, metric_id, value
)
INSERT INTO {partition} (ts, system_id, metric_id, value)
SELECT ts, system_id, metric_id, value FROM moved;

-- name: attach_partition
ALTER TABLE samples ATTACH PARTITION {partition} FOR VALUES FROM ({start}) TO ({end});

-- name: drop_partition
DROP TABLE IF EXISTS {partition};

-- name: delete_expired_default_rows
DELETE FROM samples_default WHERE ts < %(cutoff)s;

-- name: delete_expired_batches
DELETE FROM ingested_batches WHERE received_at < %(cutoff)s;

-- name: delete_expired_series
DELETE FROM series WHERE last_ts < %(cutoff)s;

-- name: remove_timescale_retention
SELECT remove_retention_policy('samples', if_exists => true);

-- name: add_timescale_retention
SELECT add_retention_policy('samples', drop_after => %(retention)s::interval);
