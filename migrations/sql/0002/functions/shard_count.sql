-- How many rows a hot counter is split over: an offer's budget (offer_budget_shards) and the stats
-- aggregates (one shard per user, user_shard). Python has the same number: offers/rules.py SHARDS.
-- A power of two, so that user_shard can mask a hash.
CREATE OR REPLACE FUNCTION shard_count() RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 8
$$;
