-- Each system's load scale per load metric: fixed by its first fingerprint, so every
-- later fingerprint of the system (each configuration version, each refinement) has
-- the same regime edges, even when several are built at once.
CREATE TABLE IF NOT EXISTS load_scales (
    system_id          bigint NOT NULL REFERENCES systems (id) ON DELETE CASCADE,
    load_metric        text NOT NULL,
    base               double precision NOT NULL,
    regimes_per_octave double precision NOT NULL,
    regime_count       integer NOT NULL,
    PRIMARY KEY (system_id, load_metric)
);
