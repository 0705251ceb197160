-- Undoes schema_retention.sql. A purged position cannot come back, so the columns cannot be NOT
-- NULL again while a purged check-in exists: the downgrade refuses then instead of inventing one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM checkins WHERE lon IS NULL) THEN
        RAISE EXCEPTION 'check-ins whose position was purged or erased exist: revision 0007 cannot hold them'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;
DROP INDEX checkins_position_held;
ALTER TABLE checkins DROP CONSTRAINT checkins_position_whole;
ALTER TABLE checkins
    DROP COLUMN distance_to_fence_m,
    DROP COLUMN accuracy_bucket,
    ALTER COLUMN accuracy_m SET NOT NULL,
    ALTER COLUMN lat SET NOT NULL,
    ALTER COLUMN lon SET NOT NULL;
