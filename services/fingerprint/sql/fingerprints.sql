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
ORDER BY f.updated_at DESC, f.id DESC
LIMIT 1;

-- name: list_fingerprints
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN systems s ON s.id = f.system_id
WHERE %(system_id)s::text IS NULL OR s.system_id = %(system_id)s
ORDER BY s.system_id, f.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: stale_fingerprints
-- The newest fingerprint of each system, where the system has samples past its window.
SELECT newest.system_id, newest.id
FROM (
    SELECT DISTINCT ON (f.system_id) s.system_id, f.id, f.system_id AS key, f.window_end
    FROM fingerprints f JOIN systems s ON s.id = f.system_id
    ORDER BY f.system_id, f.updated_at DESC, f.id DESC
) newest
WHERE EXISTS (
    SELECT 1 FROM series x WHERE x.system_id = newest.key AND x.last_ts >= newest.window_end
);
