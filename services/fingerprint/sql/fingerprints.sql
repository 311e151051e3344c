-- name: configuration_version
SELECT version, applied_at FROM published_configurations
WHERE system_id = %(system)s AND version = %(version)s;

-- name: current_configuration
-- The version applied last (a version proposed but never applied, such as a dry
-- run's, describes nothing the system ran).
SELECT version, applied_at FROM published_configurations
WHERE system_id = %(system)s AND applied_at IS NOT NULL
ORDER BY applied_at DESC, version DESC
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
FROM fingerprints f JOIN published_systems s ON s.id = f.system_id
WHERE s.system_id = %(system_id)s AND f.id = %(id)s;

-- name: newest_fingerprint
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN published_systems s ON s.id = f.system_id
WHERE s.system_id = %(system_id)s
ORDER BY f.window_end DESC, f.id DESC
LIMIT 1;

-- name: list_fingerprints
SELECT f.id, s.system_id, f.configuration_version, f.window_start, f.window_end, f.model,
       f.created_at, f.updated_at
FROM fingerprints f JOIN published_systems s ON s.id = f.system_id
WHERE %(system_id)s::text IS NULL OR s.system_id = %(system_id)s
ORDER BY s.system_id, f.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: closing_time
-- When a configuration version stopped running: the next applied version's apply time.
SELECT min(n.applied_at)
FROM published_configurations c JOIN published_configurations n ON n.system_id = c.system_id
WHERE c.system_id = %(system)s AND c.version = %(version)s AND n.applied_at > c.applied_at;

-- name: stale_fingerprints
-- The newest open fingerprint of each system, where the system has samples past its window.
-- A fingerprint of a version that a later applied version replaced is closed: its window
-- ends where that version stopped running, so it is never refined and never the newest.
SELECT newest.system_id, newest.id
FROM (
    SELECT DISTINCT ON (f.system_id) s.system_id, f.id, f.system_id AS key, f.window_end
    FROM fingerprints f JOIN published_systems s ON s.id = f.system_id
    WHERE f.configuration_version IS NULL OR NOT EXISTS (
        SELECT 1 FROM published_configurations c JOIN published_configurations n ON n.system_id = c.system_id
        WHERE c.system_id = f.system_id AND c.version = f.configuration_version
          AND n.applied_at > c.applied_at
    )
    ORDER BY f.system_id, f.window_end DESC, f.id DESC
) newest
WHERE EXISTS (
    SELECT 1 FROM published_series x WHERE x.system_id = newest.key AND x.last_ts >= newest.window_end
);

-- name: systems_without_fingerprint
-- Systems with samples and no fingerprint of their current configuration (as
-- current_configuration picks it, or none), to be built by the background loop.
SELECT current.system_id
FROM (
    SELECT s.id, s.system_id, (
        SELECT c.version FROM published_configurations c
        WHERE c.system_id = s.id AND c.applied_at IS NOT NULL
        ORDER BY c.applied_at DESC, c.version DESC
        LIMIT 1
    ) AS version
    FROM published_systems s
    WHERE EXISTS (SELECT 1 FROM published_series x WHERE x.system_id = s.id)
) current
WHERE NOT EXISTS (
    SELECT 1 FROM fingerprints f
    WHERE f.system_id = current.id AND f.configuration_version IS NOT DISTINCT FROM current.version
)
ORDER BY current.system_id;

-- name: record_progress
INSERT INTO fingerprint_progress (system_id, configuration_version, message)
VALUES (%(system)s, %(version)s, %(message)s)
ON CONFLICT (system_id) DO UPDATE
SET configuration_version = EXCLUDED.configuration_version, message = EXCLUDED.message,
    attempted_at = now();

-- name: clear_progress
DELETE FROM fingerprint_progress WHERE system_id = %(system)s;

-- name: progress
SELECT p.message, p.attempted_at
FROM fingerprint_progress p JOIN published_systems s ON s.id = p.system_id
WHERE s.system_id = %(system_id)s;

-- name: newest_on_load_metric
SELECT model FROM fingerprints
WHERE system_id = %(system)s AND load_metric = %(load_metric)s
ORDER BY created_at DESC, id DESC
LIMIT 1;

-- name: keep_load_scale
-- The first scale proposed for a system and load metric is kept; later ones read it.
INSERT INTO load_scales (system_id, load_metric, base, regimes_per_octave, regime_count)
VALUES (%(system)s, %(load_metric)s, %(base)s, %(regimes_per_octave)s, %(regime_count)s)
ON CONFLICT (system_id, load_metric) DO NOTHING;

-- name: load_scale
SELECT base, regimes_per_octave, regime_count FROM load_scales
WHERE system_id = %(system)s AND load_metric = %(load_metric)s;
