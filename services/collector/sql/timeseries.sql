-- Reads of stored samples: raw pages, downsampled buckets and the metrics of a system.

-- name: system_key
SELECT id FROM systems WHERE system_id = %(system_id)s;

-- name: metric_by_name
-- The unit and kind are the system's own, those of the dictionary for older rows.
SELECT m.id, coalesce(s.unit, m.unit), coalesce(s.kind, m.kind)
FROM metrics m
LEFT JOIN series s ON s.metric_id = m.id AND s.system_id = %(system)s
WHERE m.name = %(name)s;

-- name: sample_page
-- One page in (ts, value) order, as two packed big-endian columns: timestamps
-- as PostgreSQL sends them (microseconds since 2000) and values as float8.
-- The page starts at the key (from_ts, from_value); the caller skips the rows
-- equal to the key that the previous page already returned.
SELECT count(*)::bigint,
       coalesce(string_agg(timestamptz_send(p.ts), ''::bytea ORDER BY p.ts, p.value), ''::bytea),
       coalesce(string_agg(float8send(p.value), ''::bytea ORDER BY p.ts, p.value), ''::bytea)
FROM (
    SELECT ts, value
    FROM samples
    WHERE system_id = %(system)s AND metric_id = %(metric)s
      AND ts >= %(from_ts)s AND ts < %(end)s
      AND (ts, value) >= (%(from_ts)s, %(from_value)s::double precision)
    ORDER BY ts, value
    LIMIT %(limit)s
) AS p;

-- name: downsampled
-- Buckets are aligned on the Unix epoch, so the same bucket width gives the
-- same bucket edges whatever the range asked for.
SELECT ((extract(epoch FROM b.bucket) * 1000000)::bigint) AS bucket_us,
       b.avg, b.min, b.max, b.count
FROM (
    SELECT date_bin(%(bucket)s, ts, timestamptz 'epoch') AS bucket,
           avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count
    FROM samples
    WHERE system_id = %(system)s AND metric_id = %(metric)s
      AND ts >= %(start)s AND ts < %(end)s
    GROUP BY 1
) AS b
ORDER BY b.bucket;

-- name: list_metrics
SELECT m.name, coalesce(s.unit, m.unit), coalesce(s.kind, m.kind), s.last_ts
FROM series s
JOIN metrics m ON m.id = s.metric_id
WHERE s.system_id = %(system)s
ORDER BY m.name
LIMIT %(limit)s OFFSET %(offset)s;
