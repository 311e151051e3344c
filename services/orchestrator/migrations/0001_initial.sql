-- The orchestrator's table: long-running operations.

CREATE TABLE operations (
    id            text PRIMARY KEY,
    kind          smallint NOT NULL,
    state         smallint NOT NULL,
    request_id    text UNIQUE,
    body          bytea NOT NULL,
    requested_by  text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operations_created_idx ON operations (created_at DESC);
