-- The cool-down check: the detail of a too_frequent rejection, or no row. Another accepted
-- check-in of the user at this venue less than the cool-down before or after this one.
-- Inlined into the caller's query (STABLE, set-returning SQL).
CREATE OR REPLACE FUNCTION too_frequent(p_user text, p_venue uuid, p_observed_at timestamptz, p_cooldown interval)
RETURNS SETOF jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('seconds_since_last', abs(extract(epoch FROM p_observed_at - previous.observed_at)),
                              'cooldown_s', extract(epoch FROM p_cooldown))
    FROM (SELECT max(c.observed_at) AS observed_at FROM checkins c
          WHERE c.user_id = p_user AND c.status = 'accepted' AND c.venue_id = p_venue
            AND c.observed_at > p_observed_at - p_cooldown AND c.observed_at < p_observed_at + p_cooldown) previous
    WHERE previous.observed_at IS NOT NULL
$$;
