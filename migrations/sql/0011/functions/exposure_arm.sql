-- The user's arm in a campaign. The first accepted check-in in the campaign exposes the user: the
-- arm is drawn from the user's bucket (assignment_bucket) and recorded with its event, its counter
-- and the campaign's effect sums; later check-ins read it back. The exposure also keeps the user's
-- accepted visits to the campaign's venues in the 28 days before it (the covariate CUPED adjusts
-- the return visits by; the exposing visit is not one of them).
CREATE OR REPLACE FUNCTION exposure_arm(camp campaigns, p_user text, p_venue uuid, p_checkin uuid,
                                        p_observed_at timestamptz, p_shard smallint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    user_arm text;
    bucket integer;
BEGIN
    SELECT e.arm INTO user_arm FROM exposures e WHERE e.campaign_id = camp.id AND e.user_id = p_user;
    IF FOUND THEN
        RETURN user_arm;
    END IF;

    bucket := assignment_bucket(camp.assignment_salt, p_user);
    user_arm := CASE WHEN bucket < camp.holdout_percent * 100 THEN 'control' ELSE 'treatment' END;
    -- The exposure, its event, its counter and the effect sums: one statement.
    WITH pre AS (
        SELECT count(*)::integer AS visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = camp.id AND c.user_id = p_user AND c.status = 'accepted'
          AND c.observed_at >= p_observed_at - interval '28 days' AND c.observed_at < p_observed_at
    ), exposed AS (
        INSERT INTO exposures (campaign_id, user_id, arm, bucket, exposed_at, venue_id, checkin_id, pre_period_visits)
        SELECT camp.id, p_user, user_arm, bucket, p_observed_at, p_venue, p_checkin, pre.visits FROM pre
    ), logged AS (
        INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, arm, data)
        VALUES ('exposure', camp.id, p_venue, p_user, p_checkin, user_arm, jsonb_build_object('bucket', bucket))
    ), counted AS (
        INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
        VALUES (camp.id, utc_day(p_observed_at), p_venue, 'exposure:' || user_arm, p_shard, 1)
        ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + 1
    )
    INSERT INTO campaign_effect AS e (campaign_id, arm, exposure_day, shard, users, pre, pre_sq)
    SELECT camp.id, user_arm, utc_day(p_observed_at), p_shard, 1, pre.visits, pre.visits * pre.visits FROM pre
    ON CONFLICT (campaign_id, arm, exposure_day, shard)
    DO UPDATE SET users = e.users + 1, pre = e.pre + excluded.pre, pre_sq = e.pre_sq + excluded.pre_sq;
    RETURN user_arm;
END $$;
