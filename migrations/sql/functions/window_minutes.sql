-- An unlock's redemption window in minutes (its offer's redeem_within_minutes at unlock time).
CREATE OR REPLACE FUNCTION window_minutes(u unlocks) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT round(extract(epoch FROM u.expires_at - u.unlocked_at) / 60)::integer
$$;
