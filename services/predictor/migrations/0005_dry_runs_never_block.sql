-- A dry run predicts and explains, and blocks nothing: it is never the one change
-- in flight of its system, whatever its state.
DROP INDEX IF EXISTS changes_one_in_flight_idx;
CREATE UNIQUE INDEX changes_one_in_flight_idx ON changes (system_id)
    WHERE state IN (1, 2, 3, 4, 5) AND NOT dry_run;
