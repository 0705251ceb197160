-- The deterministic holdout bucket in 0..9999 for a user in a campaign.
CREATE OR REPLACE FUNCTION assignment_bucket(salt text, user_id text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (('x' || substr(md5(salt || ':' || user_id), 1, 8))::bit(32)::bigint % 10000)::integer
$$;
