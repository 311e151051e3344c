-- Queries of the PostgreSQL applier (and of the shadow cluster, which uses it).

-- name: settings_by_name
SELECT name, setting, context, pending_restart
FROM pg_settings
WHERE name = ANY(%(names)s);

-- name: auto_conf_settings
SELECT name, setting
FROM pg_file_settings
WHERE sourcefile = current_setting('data_directory') || '/postgresql.auto.conf'
ORDER BY seqno;

-- name: conf_load_time
SELECT pg_conf_load_time();

-- name: reload_conf
SELECT pg_reload_conf();
