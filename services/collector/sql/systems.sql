-- name: upsert_system
INSERT INTO systems (system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os,
                     kernel, architecture, labels)
VALUES (%(system_id)s, %(hostname)s, %(cpu_model)s, %(cpu_cores)s, %(memory_bytes)s,
        %(disks)s, %(os)s, %(kernel)s, %(architecture)s, %(labels)s)
-- Registering again changes only what the request sets: a field at its protobuf
-- default (empty text, 0, no disks, no labels) keeps the stored value.
ON CONFLICT (system_id) DO UPDATE SET
    hostname = COALESCE(NULLIF(EXCLUDED.hostname, ''), systems.hostname),
    cpu_model = COALESCE(NULLIF(EXCLUDED.cpu_model, ''), systems.cpu_model),
    cpu_cores = COALESCE(NULLIF(EXCLUDED.cpu_cores, 0), systems.cpu_cores),
    memory_bytes = COALESCE(NULLIF(EXCLUDED.memory_bytes, 0), systems.memory_bytes),
    disks = COALESCE(NULLIF(EXCLUDED.disks, '[]'::jsonb), systems.disks),
    os = COALESCE(NULLIF(EXCLUDED.os, ''), systems.os),
    kernel = COALESCE(NULLIF(EXCLUDED.kernel, ''), systems.kernel),
    architecture = COALESCE(NULLIF(EXCLUDED.architecture, ''), systems.architecture),
    -- No labels keeps the stored ones. A registration by the system's agent keeps the
    -- labels an operator set to steer the appliers; an operator's replaces every label.
    labels = CASE WHEN EXCLUDED.labels = '{}'::jsonb THEN systems.labels
        WHEN %(keep_steering)s
        THEN EXCLUDED.labels || coalesce(
            (SELECT jsonb_object_agg(l.key, l.value)
             FROM jsonb_each(systems.labels) AS l
             WHERE starts_with(l.key, %(steering_prefix)s)),
            '{}'::jsonb)
        ELSE EXCLUDED.labels END,
    updated_at = now()
RETURNING system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
          architecture, labels, created_at, updated_at,
          (SELECT max(last_ts) FROM series WHERE series.system_id = systems.id);

-- name: lock_system
SELECT system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
       architecture, labels, created_at, updated_at,
       (SELECT max(last_ts) FROM series WHERE series.system_id = systems.id)
FROM systems
WHERE system_id = %(system_id)s
FOR UPDATE;

-- name: update_system
UPDATE systems SET
    hostname = %(hostname)s,
    cpu_model = %(cpu_model)s,
    cpu_cores = %(cpu_cores)s,
    memory_bytes = %(memory_bytes)s,
    disks = %(disks)s,
    os = %(os)s,
    kernel = %(kernel)s,
    architecture = %(architecture)s,
    labels = %(labels)s,
    updated_at = now()
WHERE system_id = %(system_id)s
RETURNING system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
          architecture, labels, created_at, updated_at,
          (SELECT max(last_ts) FROM series WHERE series.system_id = systems.id);

-- name: get_system
SELECT system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
       architecture, labels, created_at, updated_at,
       (SELECT max(last_ts) FROM series WHERE series.system_id = systems.id)
FROM systems
WHERE system_id = %(system_id)s;

-- name: list_systems
SELECT system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os, kernel,
       architecture, labels, created_at, updated_at,
       (SELECT max(last_ts) FROM series WHERE series.system_id = systems.id)
FROM systems
WHERE labels @> %(labels)s
ORDER BY system_id
LIMIT %(limit)s OFFSET %(offset)s;
