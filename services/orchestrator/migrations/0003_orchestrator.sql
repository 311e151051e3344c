-- What the orchestrator needs beyond the operations table of the first schema:
-- the request (targets resolved), so an operation can be resumed after a restart;
-- which process runs it and when that process last reported (a lease), so a
-- replica takes over only what is truly abandoned; a cancel request any replica
-- can leave for the runner; and the trace the operation belongs to, so a resumed
-- operation stays in its workflow's trace.

ALTER TABLE operations ADD COLUMN request bytea;
ALTER TABLE operations ADD COLUMN runner text;
ALTER TABLE operations ADD COLUMN heartbeat_at timestamptz;
ALTER TABLE operations ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE operations ADD COLUMN traceparent text NOT NULL DEFAULT '';
CREATE INDEX operations_running_idx ON operations (heartbeat_at) WHERE state = 1;
