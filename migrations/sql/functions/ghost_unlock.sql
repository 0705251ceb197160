-- What a control user gets where a treatment user would unlock: the same per-user limit (ghost
-- unlocks count in user_offer_unlocks as real ones do) and the same remaining budget, read but not
-- taken, so the holdout neither spends the budget nor makes it run out sooner. Recorded as a
-- ghost_unlock event only: no code, no unlock row, nothing the user, the wallet or a webhook sees.
-- True when the ghost unlock was recorded.
CREATE OR REPLACE FUNCTION ghost_unlock(p_offer offers, p_venue uuid, p_user text, p_checkin uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    -- Judged against the budget as it stands: once treatment has spent it, control stops triggering too.
    PERFORM 1 FROM offer_budget_shards WHERE offer_id = p_offer.id AND remaining > 0 LIMIT 1;
    IF NOT FOUND THEN RETURN false; END IF;

    INSERT INTO user_offer_unlocks AS c (offer_id, user_id, unlocks, last_unlock_at)
    VALUES (p_offer.id, p_user, 1, now())
    ON CONFLICT (offer_id, user_id) DO UPDATE SET unlocks = c.unlocks + 1, last_unlock_at = now()
        WHERE c.unlocks < p_offer.per_user_limit;
    IF NOT FOUND THEN RETURN false; END IF;

    INSERT INTO events (type, campaign_id, offer_id, venue_id, user_id, checkin_id, arm)
    VALUES ('ghost_unlock', p_offer.campaign_id, p_offer.id, p_venue, p_user, p_checkin, 'control');
    RETURN true;
END $$;
