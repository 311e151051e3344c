-- name: newest_embeddings
-- The newest fingerprint embedding of each system changed after %(since)s, with its labels.
SELECT newest.system_id, newest.embedding, newest.labels, newest.changed_at
FROM (
    SELECT DISTINCT ON (f.system_id)
           s.system_id, f.embedding, s.labels,
           greatest(f.updated_at, s.updated_at) AS changed_at
    FROM fingerprints f JOIN systems s ON s.id = f.system_id
    ORDER BY f.system_id, f.window_end DESC, f.id DESC
) newest
WHERE newest.changed_at > %(since)s
ORDER BY newest.changed_at;

-- name: system_exists
SELECT 1 FROM systems WHERE system_id = %(system_id)s;

-- name: newest_models
SELECT DISTINCT ON (f.system_id) s.system_id, f.model
FROM fingerprints f JOIN systems s ON s.id = f.system_id
WHERE s.system_id = ANY(%(system_ids)s)
ORDER BY f.system_id, f.window_end DESC, f.id DESC;
