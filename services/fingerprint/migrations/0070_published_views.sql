-- The fingerprint service's read interface in SQL: its fingerprints, read-only, for the
-- similarity index (rebuilt from them) and the predictor (the embedding of a system's
-- newest fingerprint). The table stays the fingerprint service's to write and change.

CREATE VIEW published_fingerprints AS
SELECT id, system_id, configuration_version, load_metric, window_start, window_end, model,
       embedding, created_at, updated_at
FROM fingerprints;
