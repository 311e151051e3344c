-- name: system_key
SELECT id FROM systems WHERE system_id = %(system_id)s;

-- name: metric_names
SELECT id, name FROM metrics WHERE id = ANY(%(ids)s);

-- name: copy_samples_out
COPY (
    SELECT ts, metric_id, value FROM samples
    WHERE system_id = %(system)s AND ts >= %(start)s AND ts < %(end)s
) TO STDOUT (FORMAT binary);
