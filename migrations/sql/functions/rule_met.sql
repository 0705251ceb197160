-- Does this accepted check-in meet an offer's rule (schedule aside)? Counts include the check-in
-- itself, which is already inserted. Rule types and their parameter names are declared in the
-- rule_types table; an undeclared type is an error, never a silent "no".
-- Runs with the snapshot of the statement calling it (STABLE): a rule lock the caller needs must
-- be taken in an earlier statement (accept_in_campaign).
CREATE OR REPLACE FUNCTION rule_met(p_offer offers, p_campaign campaigns, p_user text, p_venue uuid, p_tz text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    rule jsonb := p_offer.rule;
    visits bigint;
BEGIN
    CASE rule ->> 'type'
    WHEN 'every_checkin' THEN
        RETURN true;
    WHEN 'first_checkin' THEN   -- first ever at any of the campaign's venues: a new customer
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted';
        RETURN visits = 1;
    WHEN 'nth_checkin' THEN     -- every n-th at the campaign's venues since the campaign started
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted'
          AND c.observed_at >= p_campaign.starts_at;
        RETURN visits % (rule ->> 'n')::int = 0;
    WHEN 'loyalty' THEN         -- the visit that reaches `visits` within the last `within_days`
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted'
          AND c.observed_at > p_at - make_interval(days => (rule ->> 'within_days')::int)
          AND c.observed_at <= p_at;
        RETURN visits = (rule ->> 'visits')::int;
    WHEN 'flash' THEN           -- the first N distinct users: the budget holds N, each user once
        RETURN NOT EXISTS (SELECT 1 FROM user_offer_unlocks WHERE offer_id = p_offer.id AND user_id = p_user);
    WHEN 'group' THEN           -- min_people distinct users here within_minutes either side of this check-in
        -- (phones' clocks differ: the last to arrive need not be the last observed); who unlocks
        -- then is unlock_earned's business.
        SELECT count(DISTINCT c.user_id) INTO visits FROM checkins c
        WHERE c.venue_id = p_venue AND c.status = 'accepted'
          AND c.observed_at > p_at - make_interval(mins => (rule ->> 'within_minutes')::int)
          AND c.observed_at < p_at + make_interval(mins => (rule ->> 'within_minutes')::int);
        RETURN visits >= (rule ->> 'min_people')::int;
    WHEN 'top_visitor' THEN     -- strictly most distinct local days at this venue in the window; a tie crowns nobody new
        -- No upper bound: another user's visit observed a moment after this one (clocks differ)
        -- but recorded before it still counts against this user.
        RETURN (
            WITH days AS (
                SELECT c.user_id, count(DISTINCT (c.observed_at AT TIME ZONE p_tz)::date) AS n
                FROM checkins c
                WHERE c.venue_id = p_venue AND c.status = 'accepted'
                  AND c.observed_at > p_at - make_interval(days => (rule ->> 'within_days')::int)
                GROUP BY c.user_id)
            SELECT coalesce((SELECT n FROM days WHERE user_id = p_user), 0)
                 > coalesce((SELECT max(n) FROM days WHERE user_id <> p_user), 0));
    ELSE
        RAISE EXCEPTION 'offer % has a rule of unknown type %', p_offer.id, rule ->> 'type'
            USING ERRCODE = 'data_exception';
    END CASE;
END $$;
