-- A system's flag (a change that could not be applied or rolled back) is the
-- predictor's, in its flagged_systems table since its migration 0070.
ALTER TABLE systems DROP COLUMN flagged_reason;
