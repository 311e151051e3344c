-- name: upsert_system
INSERT INTO systems (system_id, hostname, cpu_model, cpu_cores, memory_bytes, disks, os,
                     kernel, architecture, labels)
VALUES (%(system_id)s, %(hostname)s, %(cpu_model)s, %(cpu_cores)s, %(memory_bytes)s,
        %(disks)s, %(os)s, %(kernel)s, %(architecture)s, %(labels)s)
ON CONFLICT (system_id) DO UPDATE SET
    hostname = EXCLUDED.hostname,
    cpu_model = EXCLUDED.cpu_model,
    cpu_cores = EXCLUDED.cpu_cores,
    memory_bytes = EXCLUDED.memory_bytes,
    disks = EXCLUDED.disks,
    os = EXCLUDED.os,
    kernel = EXCLUDED.kernel,
    architecture = EXCLUDED.architecture,
    -- A registration by the system's agent keeps the labels an operator set to
    -- steer the appliers; an operator's registration replaces every label.
    labels = CASE WHEN %(keep_steering)s
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
