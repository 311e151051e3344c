-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
SELECT pg_advisory_lock(hashtext('cfgclone.schema_migrations'));

-- name: unlock_migrations
SELECT pg_advisory_unlock(hashtext('cfgclone.schema_migrations'));

-- name: applied_migrations
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
INSERT INTO schema_migrations (version, name) VALUES (%(version)s, %(name)s);

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
