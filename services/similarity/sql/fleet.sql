-- name: newest_embeddings
-- The newest fingerprint embedding of each system changed after %(since)s, with its labels.
-- Only systems whose fingerprints (fingerprints_updated_idx) or row changed are looked at,
-- each newest fingerprint read through fingerprints_system_idx, so a poll every second
-- costs little on a large fleet.
WITH changed AS (
    SELECT system_id FROM published_fingerprints WHERE updated_at > %(since)s
    UNION
    SELECT id FROM published_systems WHERE updated_at > %(since)s
)
SELECT s.system_id, f.embedding, s.labels, greatest(f.updated_at, s.updated_at) AS changed_at
FROM changed c
JOIN published_systems s ON s.id = c.system_id
CROSS JOIN LATERAL (
    SELECT embedding, updated_at
    FROM published_fingerprints
    WHERE system_id = c.system_id
    ORDER BY window_end DESC, id DESC
    LIMIT 1
) f
ORDER BY changed_at;

-- name: system_exists
SELECT 1 FROM published_systems WHERE system_id = %(system_id)s;

-- name: newest_models
SELECT DISTINCT ON (f.system_id) s.system_id, f.model
FROM published_fingerprints f JOIN published_systems s ON s.id = f.system_id
WHERE s.system_id = ANY(%(system_ids)s)
ORDER BY f.system_id, f.window_end DESC, f.id DESC;
