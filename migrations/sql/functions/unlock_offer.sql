-- Unlock one offer for one user, within the per-user limit and the budget; NULL when either is spent.
-- p_visit_day is the UTC day of the check-in that earned it (the phone's observed_at): the unlock,
-- and later its redemption and any void, count on that day, so a day's figures belong together.
CREATE OR REPLACE FUNCTION unlock_offer(p_offer offers, p_merchant uuid, p_venue uuid, p_user text, p_checkin uuid,
                                        p_visit_day date, p_shard smallint)
RETURNS unlocks LANGUAGE plpgsql AS $$
DECLARE
    u unlocks;
BEGIN
    -- Conditional upsert: exact under concurrency, whoever's transaction writes it.
    INSERT INTO user_offer_unlocks AS c (offer_id, user_id, unlocks, last_unlock_at)
    VALUES (p_offer.id, p_user, 1, now())
    ON CONFLICT (offer_id, user_id) DO UPDATE SET unlocks = c.unlocks + 1, last_unlock_at = now()
        WHERE c.unlocks < p_offer.per_user_limit;
    IF NOT FOUND THEN RETURN NULL; END IF;

    -- Take one unit from the first non-empty shard after a random start; the row lock
    -- re-checks remaining > 0, so the budget is never overspent.
    UPDATE offer_budget_shards SET remaining = remaining - 1
    WHERE (offer_id, shard) = (
        SELECT offer_id, shard FROM offer_budget_shards
        WHERE offer_id = p_offer.id AND remaining > 0
        ORDER BY (shard + p_shard) % shard_count()
        LIMIT 1 FOR UPDATE);
    IF NOT FOUND THEN
        UPDATE user_offer_unlocks SET unlocks = unlocks - 1 WHERE offer_id = p_offer.id AND user_id = p_user;
        RETURN NULL;
    END IF;

    -- The unlock, its event and its counters: one statement.
    WITH unlocked AS (
        INSERT INTO unlocks (offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, expires_at, visit_day)
        VALUES (p_offer.id, p_offer.campaign_id, p_merchant, p_venue, p_user, p_checkin, new_offer_code(),
                now() + make_interval(mins => p_offer.redeem_within_minutes), p_visit_day)
        RETURNING *
    ), logged AS (
        INSERT INTO events (type, campaign_id, offer_id, venue_id, user_id, checkin_id, unlock_id, arm)
        SELECT 'offer_unlocked', p_offer.campaign_id, p_offer.id, p_venue, p_user, p_checkin, unlocked.id, 'treatment'
        FROM unlocked
    ), counted AS (
        INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
        VALUES (p_offer.campaign_id, p_visit_day, p_venue, 'unlock', p_shard, 1)
        ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + 1
    ), unredeemed AS (
        INSERT INTO campaign_unredeemed AS c (campaign_id, window_minutes, shard, n)
        VALUES (p_offer.campaign_id, p_offer.redeem_within_minutes, p_shard, 1)
        ON CONFLICT (campaign_id, window_minutes, shard) DO UPDATE SET n = c.n + 1
    )
    SELECT * INTO u FROM unlocked;
    RETURN u;
END $$;
