-- Add to a stats counter (one row per campaign, day, venue, metric and shard).
-- PL/pgSQL rather than SQL: it keeps its plan for the session, where a SQL function that cannot be
-- inlined (this one writes) is planned again on every call; it runs several times per check-in.
CREATE OR REPLACE FUNCTION bump_counter(p_campaign uuid, p_day date, p_venue uuid, p_metric text, p_shard smallint, p_n bigint DEFAULT 1)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
    VALUES (p_campaign, p_day, p_venue, p_metric, p_shard, p_n)
    ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
END $$;
