-- The predictor's durable state beyond the first schema: when a change was
-- applied (so verification resumes after a restart at the right window), which
-- model version predicted it, and the training examples of the learned
-- predictor, from verified outcomes and from imported history.

ALTER TABLE changes ADD COLUMN applied_at timestamptz;
ALTER TABLE changes ADD COLUMN kind text NOT NULL DEFAULT '';
CREATE INDEX changes_created_idx ON changes (created_at DESC);

CREATE TABLE training_examples (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id     integer NOT NULL REFERENCES systems (id),
    from_version  integer NOT NULL,
    to_version    integer NOT NULL,
    change_id     bigint REFERENCES changes (id),
    embedding     real[] NOT NULL,
    before        jsonb NOT NULL,
    after         jsonb NOT NULL,
    observed      jsonb NOT NULL,
    origin        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (system_id, from_version, to_version)
);
