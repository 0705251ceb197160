-- A return visit: an accepted check-in at a venue of a campaign that exposed this user, inside the
-- attribution window (the exposing visit itself is not one), counted on the exposure and in the
-- campaign's effect sums. It counts whatever the campaign's status is now: pausing or ending a
-- campaign does not cut windows short, because the analysis closes windows by date alone.
CREATE OR REPLACE FUNCTION count_return_visits(p_user text, p_venue uuid, p_observed_at timestamptz, p_shard smallint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ex exposures;
BEGIN
    FOR ex IN
        UPDATE exposures e SET return_visits = e.return_visits + 1
        FROM campaigns cp, campaign_venues cv
        WHERE e.user_id = p_user AND cv.venue_id = p_venue AND cv.campaign_id = e.campaign_id
          AND cp.id = e.campaign_id AND p_observed_at > e.exposed_at
          AND p_observed_at <= e.exposed_at + make_interval(days => cp.attribution_days)
        RETURNING e.*
    LOOP
        UPDATE campaign_effect SET
            returned_users = returned_users + (ex.return_visits = 1)::int,
            visits = visits + 1,
            visits_sq = visits_sq + 2 * ex.return_visits - 1   -- v^2 - (v-1)^2
        WHERE campaign_id = ex.campaign_id AND arm = ex.arm AND exposure_day = utc_day(ex.exposed_at)
          AND shard = p_shard;
    END LOOP;
END $$;
