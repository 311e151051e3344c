-- The predictor's tables: configuration versions, policies, changes and rollbacks.

CREATE TABLE configurations (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id       integer NOT NULL REFERENCES systems (id),
    version         integer NOT NULL,
    kind            text NOT NULL,
    content         jsonb NOT NULL,
    param_schema    jsonb NOT NULL DEFAULT '[]',
    content_hash    text NOT NULL,
    author          text NOT NULL DEFAULT '',
    source          smallint NOT NULL DEFAULT 0,
    parent_version  integer,
    request_id      text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    applied_at      timestamptz,
    UNIQUE (system_id, version)
);

CREATE TABLE policies (
    policy_id   text NOT NULL,
    revision    integer NOT NULL,
    body        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (policy_id, revision)
);

CREATE TABLE changes (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    system_id        integer NOT NULL REFERENCES systems (id),
    request_id       text UNIQUE,
    state            smallint NOT NULL,
    from_version     integer,
    to_version       integer NOT NULL,
    dry_run          boolean NOT NULL DEFAULT false,
    mode             smallint NOT NULL DEFAULT 0,
    policy           text NOT NULL DEFAULT '',
    prediction       bytea,
    verification     bytea,
    requested_by     text NOT NULL DEFAULT '',
    state_reason     text NOT NULL DEFAULT '',
    override         jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_system_idx ON changes (system_id, created_at DESC);
-- One change in flight per system.
CREATE UNIQUE INDEX changes_one_in_flight_idx ON changes (system_id)
    WHERE state IN (1, 2, 3, 4, 5);

CREATE TABLE rollbacks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id         bigint NOT NULL REFERENCES changes (id),
    system_id         integer NOT NULL REFERENCES systems (id),
    reason            smallint NOT NULL,
    explanation       text NOT NULL,
    predicted         bytea,
    observed          bytea,
    from_version      integer,
    to_version        integer,
    requested_by      text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollbacks_system_idx ON rollbacks (system_id, created_at DESC);
