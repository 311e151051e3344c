-- Ingest of sample batches: the system and metric dictionaries, the batch-id
-- claim that makes resends idempotent, the binary COPY and the series summary.

-- name: system_key
SELECT id FROM systems WHERE system_id = %(system_id)s;

-- name: add_metrics
INSERT INTO metrics (name, unit, kind)
SELECT name, unit, kind
FROM unnest(%(names)s::text[], %(units)s::text[], %(kinds)s::smallint[]) AS m(name, unit, kind)
ON CONFLICT (name) DO NOTHING;

-- name: metric_ids
SELECT name, id FROM metrics WHERE name = ANY(%(names)s::text[]);

-- name: system_metrics
-- The metrics a system has stored samples of: the names it has defined.
SELECT m.name FROM series s JOIN metrics m ON m.id = s.metric_id WHERE s.system_id = %(system)s;

-- name: claim_batch
INSERT INTO ingested_batches (batch_id, system_id, samples)
VALUES (%(batch_id)s, %(system)s, %(samples)s)
ON CONFLICT (system_id, batch_id) DO NOTHING
RETURNING batch_id;

-- name: copy_samples
COPY samples (ts, system_id, metric_id, value) FROM STDIN (FORMAT BINARY);

-- name: extend_series
-- Rows are locked in metric order so that concurrent batches of one system
-- cannot deadlock on each other. The unit and kind are the system's own: the
-- newest batch of the system says them.
INSERT INTO series (system_id, metric_id, first_ts, last_ts, unit, kind)
SELECT %(system)s, s.metric_id,
       timestamptz '2000-01-01 00:00:00+00' + s.first_us * interval '1 microsecond',
       timestamptz '2000-01-01 00:00:00+00' + s.last_us * interval '1 microsecond',
       s.unit, s.kind
FROM unnest(%(metric_ids)s::integer[], %(first_us)s::bigint[], %(last_us)s::bigint[],
            %(units)s::text[], %(kinds)s::smallint[])
    AS s(metric_id, first_us, last_us, unit, kind)
ORDER BY s.metric_id
ON CONFLICT (system_id, metric_id) DO UPDATE SET
    first_ts = least(series.first_ts, EXCLUDED.first_ts),
    last_ts = greatest(series.last_ts, EXCLUDED.last_ts),
    unit = EXCLUDED.unit,
    kind = EXCLUDED.kind;
