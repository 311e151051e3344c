-- Fingerprints build themselves: what the last attempt for a system lacked, shown
-- by `cfgclone fingerprint show` until the system has enough samples.
CREATE TABLE IF NOT EXISTS fingerprint_progress (
    system_id             bigint PRIMARY KEY REFERENCES systems (id) ON DELETE CASCADE,
    configuration_version integer,
    message               text NOT NULL,
    attempted_at          timestamptz NOT NULL DEFAULT now()
);
