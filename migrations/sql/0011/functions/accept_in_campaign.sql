-- An accepted check-in in one running campaign: the user's arm (exposing them at their first
-- accepted check-in there), the check-in's event and counter, then every offer whose schedule and
-- rule the check-in meets is unlocked. Returns what the user sees of their own unlocks (an array).
-- A control user is judged by the same schedules, rules, per-user limits and remaining budgets, and
-- where a treatment user would unlock gets a ghost unlock instead (unlock_earned, ghost_unlock):
-- recorded for the triggered analysis, never shown, so their array stays empty.
CREATE OR REPLACE FUNCTION accept_in_campaign(camp campaigns, p_venue uuid, p_merchant uuid, p_tz text,
                                              p_user text, p_checkin uuid, p_observed_at timestamptz, p_shard smallint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    user_arm text;
    offer offers;
    u unlocks;
    unlocked jsonb := '[]';
BEGIN
    user_arm := exposure_arm(camp, p_user, p_venue, p_checkin, p_observed_at, p_shard);
    WITH logged AS (
        INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, arm)
        VALUES ('checkin_accepted', camp.id, p_venue, p_user, p_checkin, user_arm)
    )
    INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
    VALUES (camp.id, utc_day(p_observed_at), p_venue, 'checkin_accepted', p_shard, 1)
    ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + 1;

    -- Only active offers: a paused or retired one unlocks nothing (filtered here, in the one query).
    FOR offer IN SELECT * FROM offers o WHERE o.campaign_id = camp.id AND o.status = 'active'
                 ORDER BY o.created_at, o.id LOOP
        CONTINUE WHEN NOT schedule_allows(offer.schedule, p_observed_at, p_tz);
        -- Rules that weigh this user against the others here run one transaction at a time per
        -- offer and venue (the lock is held until commit): of users checking in at once, the
        -- later ones see the earlier ones, so a group completes and a tie stays a tie. Taken in a
        -- statement of its own, before rule_met, which reads with its calling statement's snapshot.
        IF offer.rule ->> 'type' IN ('group', 'top_visitor') THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('rule:' || offer.id || ':' || p_venue, 0));
        END IF;
        CONTINUE WHEN NOT rule_met(offer, camp, p_user, p_venue, p_tz, p_observed_at);
        u := unlock_earned(offer, user_arm, p_merchant, p_venue, p_user, p_checkin, p_observed_at, p_shard);
        IF u.id IS NOT NULL THEN
            unlocked := unlocked || unlock_json(offer, u);
        END IF;
    END LOOP;
    RETURN unlocked;
END $$;
