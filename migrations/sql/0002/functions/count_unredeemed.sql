-- Add to the count of unredeemed unlocks with a given redemption window.
-- PL/pgSQL rather than SQL so that its plan is kept for the session (see bump_counter).
CREATE OR REPLACE FUNCTION count_unredeemed(p_campaign uuid, p_window_minutes integer, p_shard smallint, p_n bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_unredeemed AS c (campaign_id, window_minutes, shard, n)
    VALUES (p_campaign, p_window_minutes, p_shard, p_n)
    ON CONFLICT (campaign_id, window_minutes, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
END $$;
