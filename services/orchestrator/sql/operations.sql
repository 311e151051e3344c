-- name: insert_operation
-- A new operation; nothing when its request id was used before (the caller then
-- reads the first operation by request id).
INSERT INTO operations (id, kind, state, request_id, body, requested_by, request, runner,
                        heartbeat_at, traceparent)
VALUES (%(id)s, %(kind)s, %(state)s, %(request_id)s, %(body)s, %(requested_by)s,
        %(request)s, %(runner)s, now(), %(traceparent)s)
ON CONFLICT (request_id) DO NOTHING
RETURNING created_at, updated_at;

-- name: operation_by_request
SELECT id, body, created_at, updated_at FROM operations WHERE request_id = %(request_id)s;

-- name: get_operation
SELECT id, body, created_at, updated_at FROM operations WHERE id = %(id)s;

-- name: list_operations
SELECT id, body, created_at, updated_at FROM operations
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: save_operation
-- Only the process that holds the operation may write it: a runner that lost its
-- lease to another process finds nothing to update and stops.
UPDATE operations
SET state = %(state)s, body = %(body)s, updated_at = now(), heartbeat_at = now()
WHERE id = %(id)s AND runner = %(runner)s
RETURNING updated_at, cancel_requested_at IS NOT NULL;

-- name: heartbeat
UPDATE operations SET heartbeat_at = now()
WHERE id = %(id)s AND runner = %(runner)s AND state = 1
RETURNING cancel_requested_at IS NOT NULL;

-- name: request_cancel
UPDATE operations SET cancel_requested_at = coalesce(cancel_requested_at, now())
WHERE id = %(id)s AND state = 1
RETURNING runner;

-- name: release_operation
-- A runner shutting down gracefully lets the next process take over at once.
UPDATE operations SET runner = NULL, heartbeat_at = NULL
WHERE id = %(id)s AND runner = %(runner)s AND state = 1;

-- name: claim_interrupted
-- Running operations whose runner stopped reporting, taken over by this process.
UPDATE operations
SET runner = %(runner)s, heartbeat_at = now()
WHERE id IN (
    SELECT id FROM operations
    WHERE state = 1
      AND (runner IS NULL OR heartbeat_at IS NULL OR heartbeat_at < now() - %(lease)s)
    ORDER BY created_at
    FOR UPDATE SKIP LOCKED
)
RETURNING id, body, request, traceparent, cancel_requested_at IS NOT NULL, created_at, updated_at;
