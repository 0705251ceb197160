-- The check-in and its unlocks as one database call: a check-in costs one round trip,
-- rule evaluation included, and is atomic. Readable, runnable in psql and pgbench:
--   SELECT checkin('user-1', 'key-1', 'hash', 10.75, 59.91, 12, now(), NULL, NULL, false,
--                  NULL, NULL, 250, interval '15 minutes');

-- 60 random bits in Crockford base32: 12 characters read aloud as XXXX-XXXX-XXXX.
CREATE FUNCTION new_offer_code() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    hex text := replace(gen_random_uuid()::text, '-', '');
    -- a v4 uuid's 13th hex digit is the version; the first 12 and the 3 after it are random
    bits bigint := ('x' || substr(hex, 1, 12) || substr(hex, 14, 3))::bit(60)::bigint;
    code text := '';
BEGIN
    FOR i IN 1..12 LOOP
        code := code || substr(alphabet, (bits & 31)::int + 1, 1);
        bits := bits >> 5;
        IF i IN (4, 8) THEN code := code || '-'; END IF;
    END LOOP;
    RETURN code;
END $$;

-- Metres from a point to a venue's geofence, 0 inside or on the boundary (circles exactly, by their centre).
CREATE FUNCTION venue_distance_m(v venues, pt geography) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v.circle_radius_m IS NULL THEN ST_Distance(v.fence, pt)
                ELSE greatest(0, ST_Distance(v.circle_center, pt) - v.circle_radius_m) END
$$;

-- The deterministic holdout bucket in 0..9999 for a user in a campaign.
CREATE FUNCTION assignment_bucket(salt text, user_id text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (('x' || substr(md5(salt || ':' || user_id), 1, 8))::bit(32)::bigint % 10000)::integer
$$;

-- Is a local time inside an offer's schedule? {"weekdays": [1..7 ISO], "windows": [{"start": "17:00", "end": "19:00"}]}
-- A window whose end is before its start runs past midnight and belongs to the day it starts:
-- Friday 22:00-02:00 covers Saturday 01:00, not Friday 01:00.
CREATE FUNCTION schedule_allows(schedule jsonb, p_at timestamptz, p_tz text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_ts timestamp := p_at AT TIME ZONE p_tz;
    local_time time := local_ts::time;
    today jsonb := to_jsonb(extract(isodow FROM local_ts)::int);
    yesterday jsonb := to_jsonb(extract(isodow FROM local_ts - interval '1 day')::int);
    days jsonb := coalesce(schedule -> 'weekdays', '[1, 2, 3, 4, 5, 6, 7]');
    starts time;
    ends time;
    w jsonb;
BEGIN
    IF schedule IS NULL THEN RETURN true; END IF;
    IF coalesce(jsonb_array_length(schedule -> 'windows'), 0) = 0 THEN RETURN days @> today; END IF;
    FOR w IN SELECT * FROM jsonb_array_elements(schedule -> 'windows') LOOP
        starts := (w ->> 'start')::time;
        ends := (w ->> 'end')::time;
        IF starts < ends THEN
            IF local_time >= starts AND local_time < ends AND days @> today THEN RETURN true; END IF;
        ELSIF local_time >= starts THEN
            IF days @> today THEN RETURN true; END IF;
        ELSIF local_time < ends THEN
            IF days @> yesterday THEN RETURN true; END IF;
        END IF;
    END LOOP;
    RETURN false;
END $$;

-- Stats days are UTC days.
CREATE FUNCTION utc_day(p_at timestamptz) RETURNS date LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (p_at AT TIME ZONE 'UTC')::date
$$;

-- Add to a stats counter (one row per campaign, day, venue, metric and shard).
CREATE FUNCTION bump_counter(p_campaign uuid, p_day date, p_venue uuid, p_metric text, p_shard smallint, p_n bigint DEFAULT 1)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
    VALUES (p_campaign, p_day, p_venue, p_metric, p_shard, p_n)
    ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + EXCLUDED.n
$$;

-- An unlock's redemption window in minutes (its offer's redeem_within_minutes at unlock time).
CREATE FUNCTION window_minutes(u unlocks) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT round(extract(epoch FROM u.expires_at - u.unlocked_at) / 60)::integer
$$;

-- Add to the count of unredeemed unlocks with a given redemption window.
CREATE FUNCTION count_unredeemed(p_campaign uuid, p_window_minutes integer, p_shard smallint, p_n bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO campaign_unredeemed AS c (campaign_id, window_minutes, shard, n)
    VALUES (p_campaign, p_window_minutes, p_shard, p_n)
    ON CONFLICT (campaign_id, window_minutes, shard) DO UPDATE SET n = c.n + EXCLUDED.n
$$;

-- Unlock one offer for one user, within the per-user limit and the budget; NULL when either is spent.
CREATE FUNCTION unlock_offer(p_offer offers, p_merchant uuid, p_venue uuid, p_user text, p_checkin uuid, p_shard smallint)
RETURNS unlocks LANGUAGE plpgsql AS $$
DECLARE
    u unlocks;
BEGIN
    -- Conditional upsert: exact under concurrency, whoever's transaction writes it.
    INSERT INTO user_offer_unlocks AS c (offer_id, user_id, unlocks, last_unlock_at)
    VALUES (p_offer.id, p_user, 1, now())
    ON CONFLICT (offer_id, user_id) DO UPDATE SET unlocks = c.unlocks + 1, last_unlock_at = now()
        WHERE c.unlocks < p_offer.per_user_limit;
    IF NOT FOUND THEN RETURN NULL; END IF;

    -- Take one unit from the first non-empty shard after a random start; the row lock
    -- re-checks remaining > 0, so the budget is never overspent.
    UPDATE offer_budget_shards SET remaining = remaining - 1
    WHERE (offer_id, shard) = (
        SELECT offer_id, shard FROM offer_budget_shards
        WHERE offer_id = p_offer.id AND remaining > 0
        ORDER BY (shard + p_shard) % 8
        LIMIT 1 FOR UPDATE);
    IF NOT FOUND THEN
        UPDATE user_offer_unlocks SET unlocks = unlocks - 1 WHERE offer_id = p_offer.id AND user_id = p_user;
        RETURN NULL;
    END IF;

    INSERT INTO unlocks (offer_id, campaign_id, merchant_id, venue_id, user_id, checkin_id, code, expires_at)
    VALUES (p_offer.id, p_offer.campaign_id, p_merchant, p_venue, p_user, p_checkin, new_offer_code(),
            now() + make_interval(mins => p_offer.redeem_within_minutes))
    RETURNING * INTO u;

    INSERT INTO events (type, campaign_id, offer_id, venue_id, user_id, checkin_id, unlock_id, arm)
    VALUES ('offer_unlocked', p_offer.campaign_id, p_offer.id, p_venue, p_user, p_checkin, u.id, 'treatment');
    PERFORM bump_counter(p_offer.campaign_id, utc_day(now()), p_venue, 'unlock', p_shard);
    PERFORM count_unredeemed(p_offer.campaign_id, p_offer.redeem_within_minutes, p_shard, 1);
    RETURN u;
END $$;

-- Does this accepted check-in meet an offer's rule (schedule aside)? Counts include the
-- check-in itself, which is already inserted. Group rules are handled by the caller.
CREATE FUNCTION rule_met(p_offer offers, p_campaign campaigns, p_user text, p_venue uuid, p_tz text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    rule jsonb := p_offer.rule;
    visits bigint;
BEGIN
    CASE rule ->> 'type'
    WHEN 'every_checkin' THEN
        RETURN true;
    WHEN 'first_checkin' THEN   -- first ever at any of the campaign's venues: a new customer
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted';
        RETURN visits = 1;
    WHEN 'nth_checkin' THEN     -- every n-th at the campaign's venues since the campaign started
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted'
          AND c.observed_at >= p_campaign.starts_at;
        RETURN visits % (rule ->> 'n')::int = 0;
    WHEN 'loyalty' THEN         -- the visit that reaches `visits` within the last `within_days`
        SELECT count(*) INTO visits FROM checkins c JOIN campaign_venues cv ON cv.venue_id = c.venue_id
        WHERE cv.campaign_id = p_campaign.id AND c.user_id = p_user AND c.status = 'accepted'
          AND c.observed_at > p_at - make_interval(days => (rule ->> 'within_days')::int)
          AND c.observed_at <= p_at;
        RETURN visits = (rule ->> 'visits')::int;
    WHEN 'flash' THEN           -- the first N distinct users: the budget holds N, each user once
        RETURN NOT EXISTS (SELECT 1 FROM user_offer_unlocks WHERE offer_id = p_offer.id AND user_id = p_user);
    WHEN 'top_visitor' THEN     -- strictly most distinct local days at this venue in the window; a tie crowns nobody new
        -- No upper bound: another user's visit observed a moment after this one (clocks differ)
        -- but recorded before it still counts against this user.
        RETURN (
            WITH days AS (
                SELECT c.user_id, count(DISTINCT (c.observed_at AT TIME ZONE p_tz)::date) AS n
                FROM checkins c
                WHERE c.venue_id = p_venue AND c.status = 'accepted'
                  AND c.observed_at > p_at - make_interval(days => (rule ->> 'within_days')::int)
                GROUP BY c.user_id)
            SELECT coalesce((SELECT n FROM days WHERE user_id = p_user), 0)
                 > coalesce((SELECT max(n) FROM days WHERE user_id <> p_user), 0));
    ELSE
        RETURN false;
    END CASE;
END $$;

-- What the person who checked in sees of an unlocked offer: shown only here and in their wallet.
CREATE FUNCTION unlock_json(o offers, u unlocks) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('unlock_id', u.id, 'offer_id', o.id, 'title', o.title, 'description', o.description,
                              'terms', o.terms, 'code', u.code, 'expires_at', u.expires_at)
$$;

CREATE FUNCTION checkin(
    p_user text, p_idempotency_key text, p_request_hash text,
    p_lon double precision, p_lat double precision, p_accuracy_m double precision, p_observed_at timestamptz,
    p_venue_id uuid, p_device_id text, p_mocked boolean,
    p_reason text, p_detail jsonb,                     -- a rejection already decided by the pure checks, or NULL
    p_max_speed_kmh double precision, p_cooldown interval
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    pt geography := ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326)::geography;
    user_shard smallint := (hashtext(p_user) & 7)::smallint;  -- spreads this user's counter updates
    stored idempotency_keys;
    v record;                 -- the matched (or nearest, or named) venue
    matched boolean := false;
    reason text := p_reason;
    detail jsonb := p_detail;
    checkin_id uuid;
    fix record;               -- a neighbouring accepted fix, for the speed check
    meters double precision;
    seconds double precision;
    last_visit timestamptz;
    camp campaigns;
    offer offers;
    ex exposures;
    u unlocks;
    member text;
    member_checkin uuid;
    unlocked jsonb := '[]'::jsonb;
    response jsonb;
    any_campaign boolean := false;
BEGIN
    -- One user's check-ins run one at a time: cool-down, velocity and visit counts read a settled history.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));

    SELECT * INTO stored FROM idempotency_keys WHERE scope = p_user AND key = p_idempotency_key;
    IF FOUND THEN
        IF stored.request_hash <> p_request_hash THEN
            RETURN jsonb_build_object('outcome', 'key_reused');
        END IF;
        RETURN jsonb_build_object('outcome', 'replay', 'response', stored.response);
    END IF;

    -- Matching on the spatial index: the accuracy circle must meet the geofence. Preference:
    -- the venue the app named, then a fence containing the point itself (smallest first), then the nearest.
    SELECT vn.id, vn.name, vn.timezone, vn.merchant_id, vn.distance_m
    INTO v
    FROM (
        SELECT x.*, venue_distance_m(x, pt) AS distance_m
        FROM venues x
        WHERE x.deleted_at IS NULL
          AND ST_DWithin(x.fence, pt, least(p_accuracy_m, 1000))
    ) vn
    WHERE vn.distance_m <= least(p_accuracy_m, 1000)
    ORDER BY vn.id = p_venue_id DESC NULLS LAST, vn.distance_m = 0 DESC, vn.distance_m, vn.area_m2
    LIMIT 1;
    matched := FOUND AND (p_venue_id IS NULL OR v.id = p_venue_id);

    IF NOT matched THEN
        IF p_venue_id IS NOT NULL THEN
            SELECT x.id, x.name, x.timezone, x.merchant_id, venue_distance_m(x, pt) AS distance_m
            INTO v FROM venues x WHERE x.id = p_venue_id AND x.deleted_at IS NULL;
            reason := coalesce(reason, 'venue_mismatch');
            detail := coalesce(detail, jsonb_build_object('venue_id', p_venue_id,
                'distance_m', round(v.distance_m::numeric, 1), 'accuracy_m', p_accuracy_m));
        ELSE
            -- the nearest venue within 2 km says how far outside the check-in was
            SELECT x.id, x.name, x.timezone, x.merchant_id, venue_distance_m(x, pt) AS distance_m
            INTO v FROM venues x
            WHERE x.deleted_at IS NULL AND ST_DWithin(x.fence, pt, 2000)
            ORDER BY x.fence <-> pt LIMIT 1;
            reason := coalesce(reason, 'outside_geofence');
            detail := coalesce(detail, jsonb_build_object('nearest_venue_id', v.id,
                'distance_m', round(v.distance_m::numeric, 1), 'accuracy_m', p_accuracy_m));
        END IF;
    END IF;

    IF reason IS NULL THEN
        -- Speed against the user's accepted fixes just before and just after this one (a fix sent
        -- late from an offline queue has a successor), read here under the user's lock: a
        -- concurrent check-in elsewhere is settled history by now.
        FOR fix IN
            (SELECT c.lon, c.lat, c.accuracy_m, c.observed_at FROM checkins c
             WHERE c.user_id = p_user AND c.status = 'accepted' AND c.observed_at <= p_observed_at
             ORDER BY c.observed_at DESC LIMIT 1)
            UNION ALL
            (SELECT c.lon, c.lat, c.accuracy_m, c.observed_at FROM checkins c
             WHERE c.user_id = p_user AND c.status = 'accepted' AND c.observed_at > p_observed_at
             ORDER BY c.observed_at LIMIT 1)
        LOOP
            -- distance beyond both accuracy circles, so GPS noise alone is never "too fast"
            meters := greatest(0, ST_Distance(ST_SetSRID(ST_MakePoint(fix.lon, fix.lat), 4326)::geography, pt)
                                  - p_accuracy_m - fix.accuracy_m);
            seconds := abs(extract(epoch FROM p_observed_at - fix.observed_at));
            IF meters > 0 AND (seconds = 0 OR meters / seconds * 3.6 > p_max_speed_kmh) THEN
                reason := 'too_fast';
                detail := jsonb_build_object(
                    'speed_kmh', CASE WHEN seconds > 0 THEN round((meters / seconds * 3.6)::numeric, 1) END,
                    'max_speed_kmh', p_max_speed_kmh, 'distance_m', round(meters::numeric, 1),
                    'seconds', seconds);
                EXIT;
            END IF;
        END LOOP;
    END IF;

    IF reason IS NULL THEN
        SELECT max(c.observed_at) INTO last_visit FROM checkins c
        WHERE c.user_id = p_user AND c.status = 'accepted' AND c.venue_id = v.id
          AND c.observed_at > p_observed_at - p_cooldown AND c.observed_at < p_observed_at + p_cooldown;
        IF last_visit IS NOT NULL THEN
            reason := 'too_frequent';
            detail := jsonb_build_object('seconds_since_last', abs(extract(epoch FROM p_observed_at - last_visit)),
                                         'cooldown_s', extract(epoch FROM p_cooldown));
        END IF;
    END IF;

    INSERT INTO checkins AS c (user_id, venue_id, status, reason, detail, lon, lat, accuracy_m, observed_at, device_id, mocked)
    VALUES (p_user, v.id, CASE WHEN reason IS NULL THEN 'accepted' ELSE 'rejected' END, reason, detail,
            p_lon, p_lat, p_accuracy_m, p_observed_at, p_device_id, p_mocked)
    RETURNING c.id INTO checkin_id;

    -- A return visit: an accepted check-in at a venue of a campaign that exposed this user,
    -- inside the attribution window (the exposing visit itself is not one). It counts whatever
    -- the campaign's status is now: pausing or ending a campaign does not cut windows short,
    -- because the analysis closes windows by date alone.
    IF reason IS NULL THEN
        FOR ex IN
            UPDATE exposures e SET return_visits = e.return_visits + 1
            FROM campaigns cp, campaign_venues cv
            WHERE e.user_id = p_user AND cv.venue_id = v.id AND cv.campaign_id = e.campaign_id
              AND cp.id = e.campaign_id AND p_observed_at > e.exposed_at
              AND p_observed_at <= e.exposed_at + make_interval(days => cp.attribution_days)
            RETURNING e.*
        LOOP
            UPDATE campaign_effect SET
                returned_users = returned_users + (ex.return_visits = 1)::int,
                visits = visits + 1,
                visits_sq = visits_sq + 2 * ex.return_visits - 1   -- v^2 - (v-1)^2
            WHERE campaign_id = ex.campaign_id AND arm = ex.arm AND exposure_day = utc_day(ex.exposed_at)
              AND shard = user_shard;
        END LOOP;
    END IF;

    -- Campaigns running at this venue at the time of the check-in, in a fixed order so that
    -- concurrent check-ins take the rule locks below in the same order.
    FOR camp IN
        SELECT cp.* FROM campaigns cp JOIN campaign_venues cv ON cv.campaign_id = cp.id
        WHERE cv.venue_id = v.id AND cp.status = 'active'
          AND p_observed_at >= cp.starts_at AND p_observed_at < cp.ends_at
        ORDER BY cp.id
    LOOP
        any_campaign := true;
        IF reason IS NOT NULL THEN
            INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, reason)
            VALUES ('checkin_rejected', camp.id, v.id, p_user, checkin_id, reason);
            PERFORM bump_counter(camp.id, utc_day(p_observed_at), v.id, 'checkin_rejected:' || reason, user_shard);
            CONTINUE;
        END IF;

        SELECT * INTO ex FROM exposures e WHERE e.campaign_id = camp.id AND e.user_id = p_user;
        IF NOT FOUND THEN
            ex.bucket := assignment_bucket(camp.assignment_salt, p_user);
            ex.arm := CASE WHEN ex.bucket < camp.holdout_percent * 100 THEN 'control' ELSE 'treatment' END;
            INSERT INTO exposures (campaign_id, user_id, arm, bucket, exposed_at, venue_id, checkin_id)
            VALUES (camp.id, p_user, ex.arm, ex.bucket, p_observed_at, v.id, checkin_id)
            RETURNING * INTO ex;
            INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, arm, data)
            VALUES ('exposure', camp.id, v.id, p_user, checkin_id, ex.arm, jsonb_build_object('bucket', ex.bucket));
            PERFORM bump_counter(camp.id, utc_day(p_observed_at), v.id, 'exposure:' || ex.arm, user_shard);
            INSERT INTO campaign_effect AS e (campaign_id, arm, exposure_day, shard, users)
            VALUES (camp.id, ex.arm, utc_day(p_observed_at), user_shard, 1)
            ON CONFLICT (campaign_id, arm, exposure_day, shard) DO UPDATE SET users = e.users + 1;
        END IF;

        INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, arm)
        VALUES ('checkin_accepted', camp.id, v.id, p_user, checkin_id, ex.arm);
        PERFORM bump_counter(camp.id, utc_day(p_observed_at), v.id, 'checkin_accepted', user_shard);

        -- The holdout: control users are recorded like everyone else but never unlock.
        CONTINUE WHEN ex.arm = 'control';

        FOR offer IN SELECT * FROM offers o WHERE o.campaign_id = camp.id ORDER BY o.created_at, o.id LOOP
            CONTINUE WHEN NOT schedule_allows(offer.schedule, p_observed_at, v.timezone);
            -- Rules that weigh this user against the others here run one transaction at a time per
            -- offer and venue (the lock is held until commit): of users checking in at once, the
            -- later ones see the earlier ones, so a group completes and a tie stays a tie.
            IF offer.rule ->> 'type' IN ('group', 'top_visitor') THEN
                PERFORM pg_advisory_xact_lock(hashtextextended('rule:' || offer.id || ':' || v.id, 0));
            END IF;
            IF offer.rule ->> 'type' = 'group' THEN
                -- Once min_people distinct users have checked in here within_minutes either side of this
                -- check-in (phones' clocks differ: the last to arrive need not be the last observed), each
                -- of them (treatment arm, not unlocked in that window) unlocks: this user in the response,
                -- the others in their wallets.
                CONTINUE WHEN (SELECT count(DISTINCT c.user_id) FROM checkins c
                               WHERE c.venue_id = v.id AND c.status = 'accepted'
                                 AND c.observed_at > p_observed_at - make_interval(mins => (offer.rule ->> 'within_minutes')::int)
                                 AND c.observed_at < p_observed_at + make_interval(mins => (offer.rule ->> 'within_minutes')::int)
                              ) < (offer.rule ->> 'min_people')::int;
                -- Each member's unlock points at their own latest check-in in the group. Members go
                -- in user order, so concurrent completions of one group lock their rows in one order.
                FOR member, member_checkin IN
                    SELECT DISTINCT ON (c.user_id) c.user_id, c.id FROM checkins c
                    JOIN exposures e ON e.campaign_id = camp.id AND e.user_id = c.user_id AND e.arm = 'treatment'
                    WHERE c.venue_id = v.id AND c.status = 'accepted'
                      AND c.observed_at > p_observed_at - make_interval(mins => (offer.rule ->> 'within_minutes')::int)
                      AND c.observed_at < p_observed_at + make_interval(mins => (offer.rule ->> 'within_minutes')::int)
                      AND NOT EXISTS (SELECT 1 FROM user_offer_unlocks uo
                                      WHERE uo.offer_id = offer.id AND uo.user_id = c.user_id
                                        AND uo.last_unlock_at > now() - make_interval(mins => (offer.rule ->> 'within_minutes')::int))
                    ORDER BY c.user_id, c.observed_at DESC
                LOOP
                    u := unlock_offer(offer, v.merchant_id, v.id, member,
                                      CASE WHEN member = p_user THEN checkin_id ELSE member_checkin END, user_shard);
                    IF u.id IS NOT NULL AND member = p_user THEN
                        unlocked := unlocked || unlock_json(offer, u);
                    END IF;
                END LOOP;
            ELSIF rule_met(offer, camp, p_user, v.id, v.timezone, p_observed_at) THEN
                u := unlock_offer(offer, v.merchant_id, v.id, p_user, checkin_id, user_shard);
                IF u.id IS NOT NULL THEN
                    unlocked := unlocked || unlock_json(offer, u);
                END IF;
            END IF;
        END LOOP;
    END LOOP;

    IF NOT any_campaign THEN
        INSERT INTO events (type, venue_id, user_id, checkin_id, reason)
        VALUES (CASE WHEN reason IS NULL THEN 'checkin_accepted' ELSE 'checkin_rejected' END, v.id, p_user, checkin_id, reason);
    END IF;

    response := jsonb_build_object(
        'id', checkin_id,
        'status', CASE WHEN reason IS NULL THEN 'accepted' ELSE 'rejected' END,
        'reason', reason,
        'detail', detail,
        'venue', CASE WHEN v.id IS NULL THEN NULL ELSE jsonb_build_object('id', v.id, 'name', v.name) END,
        'unlocked', unlocked);
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
    VALUES (p_user, p_idempotency_key, p_request_hash, 201, response);
    RETURN jsonb_build_object('outcome', 'done', 'response', response);
END $$;

-- Redeem a code at the till, exactly once: the unlock's row lock serialises concurrent
-- attempts, so one wins and the others see it redeemed. Another merchant's code is
-- indistinguishable from an unknown one.
CREATE FUNCTION redeem(p_merchant uuid, p_code text, p_venue uuid, p_staff text,
                       p_idempotency_key text, p_request_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    scope_key constant text := 'redeem:' || p_merchant || ':' || p_staff;
    stored idempotency_keys;
    u unlocks;
    r redemptions;
    response jsonb;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(scope_key || ':' || p_idempotency_key, 0));
        SELECT * INTO stored FROM idempotency_keys WHERE scope = scope_key AND key = p_idempotency_key;
        IF FOUND THEN
            IF stored.request_hash <> p_request_hash THEN RETURN jsonb_build_object('outcome', 'key_reused'); END IF;
            RETURN jsonb_build_object('outcome', 'replay', 'response', stored.response);
        END IF;
    END IF;

    SELECT * INTO u FROM unlocks WHERE code = p_code AND merchant_id = p_merchant FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'not_found'); END IF;
    IF NOT EXISTS (SELECT 1 FROM campaign_venues cv JOIN venues x ON x.id = cv.venue_id
                   WHERE cv.campaign_id = u.campaign_id AND cv.venue_id = p_venue AND x.deleted_at IS NULL) THEN
        RETURN jsonb_build_object('outcome', 'wrong_venue');
    END IF;
    IF u.redeemed_at IS NOT NULL THEN
        RETURN jsonb_build_object('outcome', 'already_redeemed', 'redeemed_at', u.redeemed_at);
    END IF;
    IF u.expires_at <= now() THEN
        RETURN jsonb_build_object('outcome', 'expired', 'expires_at', u.expires_at);
    END IF;

    INSERT INTO redemptions (unlock_id, offer_id, campaign_id, merchant_id, venue_id, staff_sub)
    VALUES (u.id, u.offer_id, u.campaign_id, p_merchant, p_venue, p_staff)
    RETURNING * INTO r;
    UPDATE unlocks SET redeemed_at = r.redeemed_at WHERE id = u.id;
    INSERT INTO events (type, occurred_at, campaign_id, offer_id, venue_id, user_id, unlock_id, redemption_id, arm)
    VALUES ('offer_redeemed', r.redeemed_at, u.campaign_id, u.offer_id, p_venue, u.user_id, u.id, r.id, 'treatment');
    PERFORM bump_counter(u.campaign_id, utc_day(r.redeemed_at), p_venue, 'redemption', (hashtext(u.user_id) & 7)::smallint);
    PERFORM count_unredeemed(u.campaign_id, window_minutes(u), (hashtext(u.user_id) & 7)::smallint, -1);
    INSERT INTO campaign_redeem_minutes AS m (campaign_id, minutes, shard, n)
    VALUES (u.campaign_id, floor(extract(epoch FROM r.redeemed_at - u.unlocked_at) / 60)::int, (hashtext(u.user_id) & 7)::smallint, 1)
    ON CONFLICT (campaign_id, minutes, shard) DO UPDATE SET n = m.n + 1;

    response := jsonb_build_object('id', r.id, 'unlock_id', u.id, 'offer_id', u.offer_id,
                                   'venue_id', p_venue, 'redeemed_at', r.redeemed_at);
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
        VALUES (scope_key, p_idempotency_key, p_request_hash, 201, response);
    END IF;
    RETURN jsonb_build_object('outcome', 'done', 'response', response);
END $$;

-- Undo a mistaken redemption within the window: recorded, never erased; the code is live again.
CREATE FUNCTION void_redemption(p_merchant uuid, p_redemption uuid, p_admin text, p_reason text, p_window interval)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r redemptions;
    u unlocks;
BEGIN
    SELECT * INTO r FROM redemptions WHERE id = p_redemption AND merchant_id = p_merchant FOR UPDATE;
    IF NOT FOUND THEN RETURN jsonb_build_object('outcome', 'not_found'); END IF;
    IF r.voided_at IS NOT NULL THEN RETURN jsonb_build_object('outcome', 'already_voided', 'voided_at', r.voided_at); END IF;
    IF r.redeemed_at + p_window < now() THEN
        RETURN jsonb_build_object('outcome', 'window_passed', 'void_deadline', r.redeemed_at + p_window);
    END IF;

    UPDATE redemptions SET voided_at = now(), voided_by = p_admin, void_reason = p_reason
    WHERE id = r.id RETURNING * INTO r;
    UPDATE unlocks SET redeemed_at = NULL WHERE id = r.unlock_id RETURNING * INTO u;
    INSERT INTO events (type, occurred_at, campaign_id, offer_id, venue_id, user_id, unlock_id, redemption_id, reason)
    VALUES ('redemption_voided', r.voided_at, r.campaign_id, r.offer_id, r.venue_id, u.user_id, u.id, r.id, p_reason);
    -- Counted on the redemption's day: a void just after midnight must not leave that day at -1.
    PERFORM bump_counter(r.campaign_id, utc_day(r.redeemed_at), r.venue_id, 'void', (hashtext(u.user_id) & 7)::smallint);
    PERFORM count_unredeemed(r.campaign_id, window_minutes(u), (hashtext(u.user_id) & 7)::smallint, 1);
    UPDATE campaign_redeem_minutes SET n = n - 1
    WHERE campaign_id = r.campaign_id AND shard = (hashtext(u.user_id) & 7)::smallint
      AND minutes = floor(extract(epoch FROM r.redeemed_at - u.unlocked_at) / 60)::int;
    RETURN jsonb_build_object('outcome', 'done', 'response', jsonb_build_object(
        'id', r.id, 'unlock_id', r.unlock_id, 'offer_id', r.offer_id, 'venue_id', r.venue_id,
        'redeemed_at', r.redeemed_at, 'voided_at', r.voided_at, 'void_reason', r.void_reason));
END $$;
