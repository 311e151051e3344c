-- Imported history that stays right in any import order.
--
-- An imported example remembers the windows it was measured over and how many samples
-- each held, so a later version (which ends the "after" window) or samples arriving late
-- are noticed and the example is measured again.
ALTER TABLE training_examples
    ADD COLUMN window_start    timestamptz,
    ADD COLUMN applied_at      timestamptz,
    ADD COLUMN window_end      timestamptz,
    ADD COLUMN before_samples  bigint,
    ADD COLUMN after_samples   bigint,
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Features that carry over between machines (hardware, load level, parameters per
    -- core and per GiB), as of the change: see cfgclone.predictor.features.
    ADD COLUMN features        jsonb NOT NULL DEFAULT '{}';

-- One row per system whose history was asked to be imported: pending while requested_at
-- is after finished_at.
CREATE TABLE history_imports (
    system_id     integer PRIMARY KEY REFERENCES systems (id),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    examples      integer NOT NULL DEFAULT 0
);
