-- The fingerprint service's table: one row per fingerprint of a system.

CREATE TABLE fingerprints (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id              integer NOT NULL REFERENCES systems (id),
    configuration_version  integer,
    model_version          integer NOT NULL,
    load_metric            text NOT NULL,
    window_start           timestamptz NOT NULL,
    window_end             timestamptz NOT NULL,
    model                  bytea NOT NULL,
    embedding              real[] NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fingerprints_system_idx ON fingerprints (system_id, updated_at DESC);
CREATE INDEX fingerprints_updated_idx ON fingerprints (updated_at);
