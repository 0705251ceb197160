-- The speed check: the detail of a too_fast rejection, or no row. This fix against the user's
-- accepted fixes just before and just after it (a fix sent late from an offline queue has a
-- successor), the one before first. Inlined into the caller's query (STABLE, set-returning SQL).
CREATE OR REPLACE FUNCTION too_fast(p_user text, pt geography, p_accuracy_m double precision,
                                    p_observed_at timestamptz, p_max_speed_kmh double precision)
RETURNS SETOF jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'speed_kmh', CASE WHEN s.seconds > 0 THEN round(s.speed_kmh::numeric, 1) END,
        'max_speed_kmh', p_max_speed_kmh, 'distance_m', round(s.distance_m::numeric, 1), 'seconds', s.seconds)
    FROM (
        (SELECT 1 AS nth, c.lon, c.lat, c.accuracy_m, c.observed_at FROM checkins c
         WHERE c.user_id = p_user AND c.status = 'accepted' AND c.observed_at <= p_observed_at
         ORDER BY c.observed_at DESC LIMIT 1)
        UNION ALL
        (SELECT 2 AS nth, c.lon, c.lat, c.accuracy_m, c.observed_at FROM checkins c
         WHERE c.user_id = p_user AND c.status = 'accepted' AND c.observed_at > p_observed_at
         ORDER BY c.observed_at LIMIT 1)
    ) fix
    CROSS JOIN LATERAL implied_speed(ST_SetSRID(ST_MakePoint(fix.lon, fix.lat), 4326)::geography, fix.accuracy_m,
                                     fix.observed_at, pt, p_accuracy_m, p_observed_at) s
    WHERE s.speed_kmh > p_max_speed_kmh
    ORDER BY fix.nth
    LIMIT 1
$$;
