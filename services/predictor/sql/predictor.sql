-- name: system_row
SELECT s.id, s.system_id, s.hostname, s.labels, f.reason, s.cpu_cores, s.memory_bytes
FROM published_systems s LEFT JOIN flagged_systems f ON f.system_id = s.id
WHERE s.system_id = %(system_id)s;

-- name: flag_system
INSERT INTO flagged_systems (system_id, reason) VALUES (%(system)s, %(reason)s)
ON CONFLICT (system_id) DO UPDATE SET reason = excluded.reason, flagged_at = now();

-- name: lock_system
SELECT pg_advisory_xact_lock(hashtext('cfgclone.configurations'), %(system)s);

-- name: insert_configuration
INSERT INTO configurations
    (system_id, version, kind, content, param_schema, content_hash, author, source,
     parent_version, request_id, applied_at)
SELECT %(system)s, coalesce(max(version), 0) + 1, %(kind)s, %(content)s, %(schema)s,
       %(hash)s, %(author)s, %(source)s, %(parent)s, %(request_id)s, %(applied_at)s
FROM configurations WHERE system_id = %(system)s
RETURNING version;

-- name: configuration_by_request
SELECT c.version, s.system_id
FROM configurations c JOIN published_systems s ON s.id = c.system_id
WHERE c.request_id = %(request_id)s;

-- name: configuration
SELECT version, kind, content, param_schema, content_hash, author, source, parent_version,
       created_at, applied_at
FROM configurations WHERE system_id = %(system)s AND version = %(version)s;

-- name: current_configuration
SELECT version, kind, content, param_schema, content_hash, author, source, parent_version,
       created_at, applied_at
FROM configurations WHERE system_id = %(system)s AND applied_at IS NOT NULL
ORDER BY applied_at DESC, version DESC LIMIT 1;

-- name: list_configurations
SELECT version, kind, content, param_schema, content_hash, author, source, parent_version,
       created_at, applied_at
FROM configurations WHERE system_id = %(system)s
ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: mark_applied
UPDATE configurations SET applied_at = %(applied_at)s
WHERE system_id = %(system)s AND version = %(version)s;

-- name: insert_policy
INSERT INTO policies (policy_id, revision, body)
SELECT %(policy_id)s, coalesce(max(revision), 0) + 1, %(body)s
FROM policies WHERE policy_id = %(policy_id)s
RETURNING revision, created_at;

-- name: latest_policy
SELECT revision, body, created_at FROM policies WHERE policy_id = %(policy_id)s
ORDER BY revision DESC LIMIT 1;

-- name: list_policies
SELECT DISTINCT ON (policy_id) policy_id, revision, body, created_at FROM policies
ORDER BY policy_id, revision DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: insert_change
INSERT INTO changes
    (system_id, request_id, state, from_version, to_version, dry_run, mode, policy,
     requested_by, state_reason, kind)
VALUES (%(system)s, %(request_id)s, %(state)s, %(from_version)s, %(to_version)s, %(dry_run)s,
        %(mode)s, %(policy)s, %(requested_by)s, %(reason)s, %(kind)s)
RETURNING id;

-- name: in_flight_change
SELECT id FROM changes WHERE system_id = %(system)s AND state IN (1, 2, 3, 4, 5)
    AND NOT dry_run;

-- name: change_by_request
SELECT c.id, s.system_id FROM changes c JOIN published_systems s ON s.id = c.system_id
WHERE c.request_id = %(request_id)s;

-- name: change
SELECT c.id, s.system_id, c.state, c.from_version, c.to_version, c.dry_run, c.mode, c.policy,
       c.prediction, c.verification, c.requested_by, c.state_reason, c.override,
       c.created_at, c.updated_at, c.request_id, c.applied_at, c.kind, c.system_id
FROM changes c JOIN published_systems s ON s.id = c.system_id
WHERE c.id = %(id)s;

-- name: change_for_update
SELECT state FROM changes WHERE id = %(id)s FOR UPDATE;

-- name: update_change
UPDATE changes SET state = %(state)s, state_reason = %(reason)s,
    prediction = coalesce(%(prediction)s, prediction),
    verification = coalesce(%(verification)s, verification),
    override = coalesce(%(override)s, override),
    applied_at = coalesce(%(applied_at)s, applied_at),
    updated_at = now()
WHERE id = %(id)s;

-- name: list_changes
SELECT c.id FROM changes c JOIN published_systems s ON s.id = c.system_id
WHERE (%(system_id)s::text IS NULL OR s.system_id = %(system_id)s)
  AND (%(start)s::timestamptz IS NULL OR c.created_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR c.created_at < %(end)s)
ORDER BY c.created_at DESC, c.id DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: unfinished_changes
SELECT id FROM changes WHERE state IN (1, 2, 4, 5) ORDER BY id;

-- name: insert_rollback
INSERT INTO rollbacks
    (change_id, system_id, reason, explanation, predicted, observed, from_version,
     to_version, requested_by)
VALUES (%(change)s, %(system)s, %(reason)s, %(explanation)s, %(predicted)s, %(observed)s,
        %(from_version)s, %(to_version)s, %(requested_by)s)
RETURNING id;

-- name: list_rollbacks
SELECT r.id, s.system_id, r.change_id, r.reason, r.explanation, r.predicted, r.observed,
       r.from_version, r.to_version, r.requested_by, r.created_at
FROM rollbacks r JOIN published_systems s ON s.id = r.system_id
WHERE (%(system_id)s::text IS NULL OR s.system_id = %(system_id)s)
  AND (%(start)s::timestamptz IS NULL OR r.created_at >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR r.created_at < %(end)s)
ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: latest_embedding
SELECT embedding, model FROM published_fingerprints WHERE system_id = %(system)s
ORDER BY window_end DESC, id DESC LIMIT 1;

-- name: insert_example
-- An outcome is observed once; an imported example is measured again when its windows
-- change, and never replaces an outcome of the same versions.
INSERT INTO training_examples
    (system_id, from_version, to_version, change_id, embedding, before, after, observed, origin,
     window_start, applied_at, window_end, before_samples, after_samples, features)
VALUES (%(system)s, %(from_version)s, %(to_version)s, %(change)s, %(embedding)s, %(before)s,
        %(after)s, %(observed)s, %(origin)s, %(window_start)s, %(applied_at)s, %(window_end)s,
        %(before_samples)s, %(after_samples)s, %(features)s)
ON CONFLICT (system_id, from_version, to_version) DO UPDATE
SET embedding = excluded.embedding, before = excluded.before, after = excluded.after,
    observed = excluded.observed, window_start = excluded.window_start,
    applied_at = excluded.applied_at, window_end = excluded.window_end,
    before_samples = excluded.before_samples, after_samples = excluded.after_samples,
    features = excluded.features, updated_at = now()
WHERE training_examples.origin = 'import' AND excluded.origin = 'import';

-- name: imported_examples
SELECT from_version, to_version, window_start, applied_at, window_end, before_samples,
       after_samples
FROM training_examples WHERE system_id = %(system)s AND origin = 'import';

-- name: delete_imported_example
DELETE FROM training_examples
WHERE system_id = %(system)s AND from_version = %(from_version)s
  AND to_version = %(to_version)s AND origin = 'import';

-- name: request_import
INSERT INTO history_imports (system_id) VALUES (%(system)s)
ON CONFLICT (system_id) DO UPDATE SET requested_at = now();

-- name: finish_import
UPDATE history_imports SET finished_at = %(started)s, examples = %(examples)s
WHERE system_id = %(system)s AND (finished_at IS NULL OR finished_at < %(started)s);

-- name: systems_with_history
SELECT s.system_id FROM published_systems s
WHERE (SELECT count(*) FROM configurations c
       WHERE c.system_id = s.id AND c.applied_at IS NOT NULL) >= 2
ORDER BY s.system_id;

-- name: examples
SELECT s.system_id, e.embedding, e.before, e.after, e.observed, e.features
FROM training_examples e JOIN published_systems s ON s.id = e.system_id ORDER BY e.id;

-- name: examples_versions
-- Per system with examples: how many, and when the last was added or measured again.
SELECT s.system_id, count(*), extract(epoch FROM max(e.updated_at))::double precision
FROM training_examples e JOIN published_systems s ON s.id = e.system_id
GROUP BY s.system_id;

-- name: applied_versions
SELECT version, content, applied_at FROM configurations
WHERE system_id = %(system)s AND applied_at IS NOT NULL ORDER BY applied_at;

-- name: fingerprinted_versions
SELECT DISTINCT configuration_version FROM published_fingerprints
WHERE system_id = %(system)s AND configuration_version IS NOT NULL;

-- name: training_status
SELECT s.system_id, coalesce(e.examples, 0),
       h.system_id IS NOT NULL AND (h.finished_at IS NULL OR h.requested_at > h.finished_at),
       h.finished_at
FROM published_systems s
LEFT JOIN (SELECT system_id, count(*) AS examples FROM training_examples GROUP BY system_id) e
    ON e.system_id = s.id
LEFT JOIN history_imports h ON h.system_id = s.id
WHERE (%(system_id)s::text IS NULL OR s.system_id = %(system_id)s)
  AND (e.system_id IS NOT NULL OR h.system_id IS NOT NULL)
ORDER BY s.system_id;

-- name: system_hardware
-- What the collector recorded of a system's machine; 0 where it is unknown.
SELECT cpu_cores, memory_bytes FROM published_systems WHERE id = %(system)s;
