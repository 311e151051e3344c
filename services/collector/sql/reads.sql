-- name: system_row
SELECT id, system_id, hostname, cpu_model, cpu_cores, memory_bytes, os, kernel, architecture,
       labels
FROM systems WHERE system_id = %(system_id)s;

-- name: system_key
SELECT id FROM systems WHERE system_id = %(system_id)s;

-- name: metric_known
SELECT EXISTS (SELECT 1 FROM metrics WHERE name = %(name)s);

-- name: copy_samples_out
-- One row per metric: its name, and the times and values of its samples as two
-- arrays. Both arrays are filled by the same aggregation, row after row, so they
-- are in the same order (not necessarily time order). A row per metric rather
-- than per sample because a COPY costs the client a message per row.
COPY (
    SELECT m.name, per_metric.ts, per_metric.value
    FROM (
        SELECT metric_id, array_agg(ts) AS ts, array_agg(value) AS value
        FROM samples
        WHERE system_id = %(system)s AND ts >= %(start)s AND ts < %(end)s
        GROUP BY metric_id
    ) per_metric
    JOIN metrics m ON m.id = per_metric.metric_id
) TO STDOUT (FORMAT binary);

-- name: window_counts
-- Samples per window between consecutive times: window i holds [bounds[i], bounds[i+1]).
SELECT width_bucket(ts, %(bounds)s::timestamptz[]) AS window, count(*)
FROM samples WHERE system_id = %(system)s AND ts >= %(first)s
GROUP BY 1;
