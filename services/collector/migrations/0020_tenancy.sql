-- Tenancy: what one system writes cannot silence or redefine another's.

-- Batch ids are the sender's own: scoped by system, so a batch id used by one
-- system never makes another system's batch a duplicate.
ALTER TABLE ingested_batches DROP CONSTRAINT ingested_batches_pkey;
ALTER TABLE ingested_batches ADD PRIMARY KEY (system_id, batch_id);

-- The unit and kind of a metric as each system reports it: metric names stay one
-- dictionary of ids, but a system's unit and kind are its own.
ALTER TABLE series ADD COLUMN unit text, ADD COLUMN kind smallint;

-- Per-deployment secret that makes the scraper's batch ids unguessable, shared by
-- every collector replica so that they still agree on the id of a slot.
CREATE TABLE collector_secrets (
    name    text PRIMARY KEY,
    secret  bytea NOT NULL
);
INSERT INTO collector_secrets (name, secret)
VALUES ('scrape_batch_ids',
        decode(replace(gen_random_uuid()::text, '-', '')
               || replace(gen_random_uuid()::text, '-', ''), 'hex'));
