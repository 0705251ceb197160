-- The campaigns running at a venue at a moment, in id order: concurrent check-ins then take their
-- counter rows and rule locks in one order. Inlined into the caller's query (STABLE, one SELECT).
CREATE OR REPLACE FUNCTION running_campaigns(p_venue uuid, p_at timestamptz)
RETURNS SETOF campaigns LANGUAGE sql STABLE AS $$
    SELECT cp.* FROM campaigns cp JOIN campaign_venues cv ON cv.campaign_id = cp.id
    WHERE cv.venue_id = p_venue AND cp.status = 'active' AND p_at >= cp.starts_at AND p_at < cp.ends_at
    ORDER BY cp.id
$$;
