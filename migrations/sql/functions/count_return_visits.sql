-- A return visit: an accepted check-in at a venue of a campaign that exposed this user, inside the
-- attribution window (the exposing visit itself is not one), counted on the exposure and in the
-- campaign's effect sums. The same visit inside the window from the user's trigger (their first
-- unlock, real or ghost; the triggering visit is not one either) counts in the triggered sums.
-- Both carry the CUPED cross term: x·y grows by the user's pre-exposure visits x with each visit.
-- It counts whatever the campaign's status is now: pausing or ending a campaign does not cut
-- windows short, because the analysis closes windows by date alone.
CREATE OR REPLACE FUNCTION count_return_visits(p_user text, p_venue uuid, p_observed_at timestamptz, p_shard smallint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH counted AS (
            SELECT e.campaign_id, e.user_id,
                   p_observed_at <= e.exposed_at + make_interval(days => cp.attribution_days) AS itt,
                   coalesce(p_observed_at > e.triggered_at
                            AND p_observed_at <= e.triggered_at + make_interval(days => cp.attribution_days),
                            false) AS triggered
            FROM exposures e
            JOIN campaign_venues cv ON cv.campaign_id = e.campaign_id AND cv.venue_id = p_venue
            JOIN campaigns cp ON cp.id = e.campaign_id
            WHERE e.user_id = p_user AND p_observed_at > e.exposed_at)
        UPDATE exposures e SET return_visits = e.return_visits + n.itt::int,
                               triggered_visits = e.triggered_visits + n.triggered::int
        FROM counted n
        WHERE e.campaign_id = n.campaign_id AND e.user_id = n.user_id AND (n.itt OR n.triggered)
        RETURNING e.*, n.itt, n.triggered
    LOOP
        IF r.itt THEN
            UPDATE campaign_effect SET
                returned_users = returned_users + (r.return_visits = 1)::int,
                visits = visits + 1,
                visits_sq = visits_sq + 2 * r.return_visits - 1,   -- v^2 - (v-1)^2
                pre_visits = pre_visits + r.pre_period_visits
            WHERE campaign_id = r.campaign_id AND arm = r.arm AND exposure_day = utc_day(r.exposed_at)
              AND shard = p_shard;
        END IF;
        IF r.triggered THEN
            UPDATE campaign_triggered SET
                returned_users = returned_users + (r.triggered_visits = 1)::int,
                visits = visits + 1,
                visits_sq = visits_sq + 2 * r.triggered_visits - 1,
                pre_visits = pre_visits + r.pre_period_visits
            WHERE campaign_id = r.campaign_id AND arm = r.arm AND trigger_day = utc_day(r.triggered_at)
              AND shard = p_shard;
        END IF;
    END LOOP;
END $$;
