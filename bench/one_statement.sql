-- pgbench: the "one-statement transaction of the same shape" that issue 15 compares checkin() with, as
-- a ceiling (bench/checkin_bounds.py). Match the venue (checkin()'s own match_venue), insert the accepted
-- check-in, take one unit of budget from a random shard of an active offer running there, insert the
-- unlock, and the two events. What checkin() also does is left out on purpose: the user's lock, the
-- idempotency key and its stored answer, the speed and cool-down checks, exposure and holdout arm,
-- schedules and rules, the per-user limit, return visits, counters and effect sums.
-- A new user at every call, at a random one of the bench points; variables (-D) as bench/checkin.sql's.
\set p random(1, :points)
WITH point AS (
    SELECT ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326)::geography AS pt, b.lon, b.lat, b.accuracy_m
    FROM bench_points b WHERE b.id = :p
), venue AS (
    SELECT m.id, m.merchant_id FROM point,
         match_venue(point.pt, point.accuracy_m, NULL, ROW(:match_accuracy_cap_m, :nearest_venue_radius_m)) m
    WHERE m.reason IS NULL
), checkin AS (
    INSERT INTO checkins (user_id, venue_id, status, lon, lat, accuracy_m, observed_at)
    SELECT 'bench-new-' || gen_random_uuid(), venue.id, 'accepted', point.lon, point.lat, point.accuracy_m, now()
    FROM venue, point
    RETURNING id, venue_id, user_id
), offer AS (
    SELECT o.id, o.campaign_id, o.redeem_within_minutes FROM offers o
    JOIN campaign_venues cv ON cv.campaign_id = o.campaign_id
    JOIN checkin ON checkin.venue_id = cv.venue_id
    WHERE o.status = 'active' LIMIT 1
), shard AS (
    SELECT floor(random() * shard_count())::smallint AS n
), budget AS (
    UPDATE offer_budget_shards s SET remaining = s.remaining - 1 FROM offer, shard
    WHERE s.offer_id = offer.id AND s.shard = shard.n AND s.remaining > 0
    RETURNING s.offer_id
), unlock AS (
    INSERT INTO unlocks (offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, expires_at)
    SELECT offer.id, offer.campaign_id, venue.merchant_id, checkin.venue_id, checkin.user_id, checkin.id,
           new_offer_code(), now() + make_interval(mins => offer.redeem_within_minutes)
    FROM budget JOIN offer ON offer.id = budget.offer_id, checkin, venue
    RETURNING id, offer_id, campaign_id, venue_id, user_id, checkin_id
)
INSERT INTO events (type, campaign_id, offer_id, venue_id, user_id, checkin_id, unlock_id)
SELECT 'checkin_accepted', NULL, NULL, checkin.venue_id, checkin.user_id, checkin.id, NULL FROM checkin
UNION ALL
SELECT 'offer_unlocked', unlock.campaign_id, unlock.offer_id, unlock.venue_id, unlock.user_id, unlock.checkin_id, unlock.id
FROM unlock;
