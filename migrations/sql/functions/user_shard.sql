-- The shard of a user's stats counter updates, 0 .. shard_count() - 1: one user's updates go to
-- one row, different users' to different rows.
CREATE OR REPLACE FUNCTION user_shard(user_id text) RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (hashtext(user_id) & (shard_count() - 1))::smallint
$$;
