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

-- name: ping
SELECT 1;

-- name: deployment_key
SELECT key FROM deployment_keys WHERE name = %(name)s;
