-- name: system_row
SELECT id, system_id, hostname, cpu_model, cpu_cores, memory_bytes, os, kernel, architecture
FROM systems WHERE system_id = %(system_id)s;

-- name: configuration_version
SELECT version, applied_at FROM configurations
WHERE system_id = %(system)s AND version = %(version)s;

-- name: current_configuration
SELECT version, applied_at FROM configurations
WHERE system_id = %(system)s
ORDER BY applied_at DESC NULLS LAST, version DESC
LIMIT 1;

-- name: insert_fingerprint
INSERT INTO fingerprints (system_id, configuration_version, model_version, load_metric,
                          window_start, window_end, model, embedding)
VALUES (%(system)s, %(version)s, %(model_version)s, %(load_metric)s,
        %(window_start)s, %(window_end)s, %(model)s, %(embedding)s)
RETURNING id, created_at, updated_at;

-- name: update_fingerprint
UPDATE fingerprints
SET window_end = %(window_end)s, model = %(model)s, embedding = %(embedding)s,
    updated_at = now()
WHERE id = %(id)s AND window_end = %(previous_end)s
RETURNING created_at, updated_at;

-- name: get_fingerprint
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN systems s ON s.id = f.system_id
WHERE s.system_id = %(system_id)s AND f.id = %(id)s;

-- name: newest_fingerprint
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN systems s ON s.id = f.system_id
WHERE s.system_id = %(system_id)s
ORDER BY f.window_end DESC, f.id DESC
LIMIT 1;

-- name: list_fingerprints
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN systems s ON s.id = f.system_id
WHERE %(system_id)s::text IS NULL OR s.system_id = %(system_id)s
ORDER BY s.system_id, f.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: closing_time
-- When a configuration version stopped running: the next applied version's apply time.
SELECT min(n.applied_at)
FROM configurations c JOIN configurations n ON n.system_id = c.system_id
WHERE c.system_id = %(system)s AND c.version = %(version)s AND n.applied_at > c.applied_at;

-- name: stale_fingerprints
-- The newest open fingerprint of each system, where the system has samples past its window.
-- A fingerprint of a version that a later applied version replaced is closed: its window
-- ends where that version stopped running, so it is never refined and never the newest.
SELECT newest.system_id, newest.id
FROM (
    SELECT DISTINCT ON (f.system_id) s.system_id, f.id, f.system_id AS key, f.window_end
    FROM fingerprints f JOIN systems s ON s.id = f.system_id
    WHERE f.configuration_version IS NULL OR NOT EXISTS (
        SELECT 1 FROM configurations c JOIN configurations n ON n.system_id = c.system_id
        WHERE c.system_id = f.system_id AND c.version = f.configuration_version
          AND n.applied_at > c.applied_at
    )
    ORDER BY f.system_id, f.window_end DESC, f.id DESC
) newest
WHERE EXISTS (
    SELECT 1 FROM series x WHERE x.system_id = newest.key AND x.last_ts >= newest.window_end
);
