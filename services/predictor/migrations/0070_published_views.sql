-- The predictor's read interface in SQL: when each configuration version was applied,
-- read-only, for the fingerprint service (a fingerprint describes one version's run).
-- The predictor's flags on systems move out of the collector's table into its own.

CREATE VIEW published_configurations AS
SELECT system_id, version, applied_at
FROM configurations;

CREATE TABLE flagged_systems (
    system_id   integer PRIMARY KEY REFERENCES systems (id),
    reason      text NOT NULL,
    flagged_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO flagged_systems (system_id, reason)
SELECT id, flagged_reason FROM systems WHERE flagged_reason IS NOT NULL;
