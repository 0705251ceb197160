-- Location retention (offers/privacy/retention.py): a check-in's position, accuracy and device id
-- are kept CHECKIN_RAW_LOCATION_DAYS (accepted) or CHECKIN_FRAUD_REVIEW_DAYS (rejected, with the
-- figures of their detail), then removed. What stays: venue, status, reason, time, the accuracy
-- as a bucket (accuracy_bucket()) and the distance to the venue's fence when it was purged,
-- rounded to 10 m, so fraud review still reads purged rows. Dropping NOT NULL and adding
-- nullable columns change only the catalog: no rewrite of the table.
ALTER TABLE checkins
    ALTER COLUMN lon DROP NOT NULL,
    ALTER COLUMN lat DROP NOT NULL,
    ALTER COLUMN accuracy_m DROP NOT NULL,
    ADD COLUMN accuracy_bucket text,
    ADD COLUMN distance_to_fence_m double precision;
-- A position is kept whole or not at all; a purged one has its bucket instead of its accuracy.
ALTER TABLE checkins ADD CONSTRAINT checkins_position_whole
    CHECK ((lon IS NULL) = (lat IS NULL) AND (lon IS NULL) = (accuracy_m IS NULL)) NOT VALID;
ALTER TABLE checkins VALIDATE CONSTRAINT checkins_position_whole;
-- The rows still holding a position, oldest first: the purge's batches read this and nothing else.
-- On a large table, build it CONCURRENTLY under this name before migrating (IF NOT EXISTS).
CREATE INDEX IF NOT EXISTS checkins_position_held ON checkins (observed_at) WHERE lon IS NOT NULL;
