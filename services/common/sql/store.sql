-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner       text NOT NULL,
    version     integer NOT NULL,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, version)
);

-- name: migrations_have_owners
SELECT EXISTS (
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'schema_migrations'
      AND column_name = 'owner'
);

-- name: add_migration_owners
-- A table from before the split: one row per version of the shared folder.
ALTER TABLE schema_migrations ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE schema_migrations DROP CONSTRAINT schema_migrations_pkey;
ALTER TABLE schema_migrations ADD PRIMARY KEY (owner, version);
ALTER TABLE schema_migrations ALTER COLUMN owner DROP DEFAULT;

-- name: unowned_migrations
SELECT version FROM schema_migrations WHERE owner = '';

-- name: drop_unowned_migrations
DELETE FROM schema_migrations WHERE owner = '';

-- name: lock_migrations
SELECT pg_advisory_lock(hashtext('cfgclone.schema_migrations'));

-- name: unlock_migrations
SELECT pg_advisory_unlock(hashtext('cfgclone.schema_migrations'));

-- name: applied_migrations
SELECT owner, version FROM schema_migrations ORDER BY version, owner;

-- name: record_migration
INSERT INTO schema_migrations (owner, version, name) VALUES (%(owner)s, %(version)s, %(name)s)
ON CONFLICT (owner, version) DO NOTHING;

-- name: timescaledb_installed
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');

-- name: timescaledb_state
-- Whether the extension is installed here, can be installed, and is preloaded (it
-- refuses to be created otherwise, with a FATAL error that closes the session).
SELECT
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
    EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
    'timescaledb' = ANY (
        string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
    );

-- name: use_timescaledb
-- Read by the samples migration: create the extension and a hypertable, or not.
SELECT set_config('cfgclone.use_timescaledb', %(use)s, false);

-- name: ping
SELECT 1;

-- name: deployment_key
SELECT key FROM deployment_keys WHERE name = %(name)s;
