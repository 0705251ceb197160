-- A user's first unlock in a campaign, real or ghost, triggers them: the time is kept on their
-- exposure (never before it) and they join the campaign's triggered sums, with their pre-exposure
-- visits (the CUPED covariate). Later unlocks change nothing.
CREATE OR REPLACE FUNCTION mark_triggered(p_campaign uuid, p_user text, p_at timestamptz, p_shard smallint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH triggered AS (
        UPDATE exposures e SET triggered_at = greatest(p_at, e.exposed_at)
        WHERE e.campaign_id = p_campaign AND e.user_id = p_user AND e.triggered_at IS NULL
        RETURNING e.arm, e.triggered_at, e.pre_period_visits AS pre
    )
    INSERT INTO campaign_triggered AS t (campaign_id, arm, trigger_day, shard, users, pre, pre_sq)
    SELECT p_campaign, arm, utc_day(triggered_at), p_shard, 1, pre, pre * pre FROM triggered
    ON CONFLICT (campaign_id, arm, trigger_day, shard)
    DO UPDATE SET users = t.users + 1, pre = t.pre + excluded.pre, pre_sq = t.pre_sq + excluded.pre_sq;
END $$;
