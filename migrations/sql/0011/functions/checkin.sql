-- The check-in and its unlocks as one database call: a check-in costs one round trip, rule
-- evaluation included, and is atomic. The steps are functions of their own, each in its file:
-- match_venue, too_fast, too_frequent, count_return_visits, then per running campaign
-- (running_campaigns) accept_in_campaign (exposure_arm, rule_met, unlock_earned). Readable,
-- runnable in psql and pgbench:
--   SELECT checkin('user-1', 'key-1', 'hash', 10.75, 59.91, 12, now(), NULL, NULL, false,
--                  NULL, NULL, 250, interval '15 minutes', ROW(1000, 2000));
-- A refusal's writes (the check-in, its events and counters, the stored answer) are one statement,
-- as are an exposure's and an unlock's below: under concurrency each statement's snapshot and locks cost.
CREATE OR REPLACE FUNCTION checkin(
    p_user text, p_idempotency_key text, p_request_hash text,
    p_lon double precision, p_lat double precision, p_accuracy_m double precision, p_observed_at timestamptz,
    p_venue_id uuid, p_device_id text, p_mocked boolean,
    p_reason text, p_detail jsonb,                     -- a rejection already decided by the pure checks, or NULL
    p_max_speed_kmh double precision, p_cooldown interval,
    -- core/settings.py sets these; the default (its defaults too) serves calls written in SQL
    p_limits venue_match_limits DEFAULT ROW(1000, 2000)
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    pt geography := ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326)::geography;
    counter_shard smallint := user_shard(p_user);  -- spreads this user's counter updates
    checkin_id uuid := gen_random_uuid();
    replay jsonb;
    v record;                 -- the matched venue, or the named or nearest one with why it did not match
    reason text := p_reason;
    detail jsonb := p_detail;
    rejection jsonb;
    camp campaigns;
    any_campaign boolean := false;
    unlocked jsonb := '[]';
    response jsonb;
BEGIN
    -- One user's check-ins run one at a time: cool-down, velocity and visit counts read a settled history.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_user, 0));

    SELECT stored INTO replay FROM idempotent_replay(p_user, p_idempotency_key, p_request_hash) stored;
    IF FOUND THEN RETURN replay; END IF;

    v := match_venue(pt, p_accuracy_m, p_venue_id, p_limits);
    IF v.reason IS NOT NULL THEN
        reason := coalesce(reason, v.reason);
        detail := coalesce(detail, v.detail);
    END IF;
    -- The speed and cool-down checks read the user's accepted history here, under the user's
    -- lock: a concurrent check-in elsewhere is settled history by now.
    IF reason IS NULL THEN
        SELECT d INTO rejection FROM too_fast(p_user, pt, p_accuracy_m, p_observed_at, p_max_speed_kmh) d;
        IF FOUND THEN reason := 'too_fast'; detail := rejection; END IF;
    END IF;
    IF reason IS NULL THEN
        SELECT d INTO rejection FROM too_frequent(p_user, v.id, p_observed_at, p_cooldown) d;
        IF FOUND THEN reason := 'too_frequent'; detail := rejection; END IF;
    END IF;

    IF reason IS NOT NULL THEN
        -- A rejection is part of the record too: the check-in with its reason, a checkin_rejected
        -- event and counter at each campaign running here (one event without a campaign when none
        -- is), and the stored answer.
        response := jsonb_build_object(
            'id', checkin_id, 'status', 'rejected', 'reason', reason, 'detail', detail, 'unlocked', unlocked,
            'venue', CASE WHEN v.id IS NOT NULL THEN jsonb_build_object('id', v.id, 'name', v.name) END);
        WITH running AS (
            SELECT cp.id FROM running_campaigns(v.id, p_observed_at) cp
        ), recorded AS (
            INSERT INTO checkins (id, user_id, venue_id, status, reason, detail, lon, lat, accuracy_m, observed_at,
                                  device_id, mocked)
            VALUES (checkin_id, p_user, v.id, 'rejected', reason, detail, p_lon, p_lat, p_accuracy_m, p_observed_at,
                    p_device_id, p_mocked)
        ), logged AS (
            INSERT INTO events (type, campaign_id, venue_id, user_id, checkin_id, reason)
            SELECT 'checkin_rejected', r.id, v.id, p_user, checkin_id, reason
            FROM (SELECT id FROM running UNION ALL SELECT NULL WHERE NOT EXISTS (SELECT FROM running)) r
        ), counted AS (
            INSERT INTO campaign_counters AS c (campaign_id, day, venue_id, metric, shard, n)
            SELECT r.id, utc_day(p_observed_at), v.id, 'checkin_rejected:' || reason, counter_shard, 1 FROM running r
            ON CONFLICT (campaign_id, day, venue_id, metric, shard) DO UPDATE SET n = c.n + 1
        )
        INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
        VALUES (p_user, p_idempotency_key, p_request_hash, 201, response);
        RETURN jsonb_build_object('outcome', 'done', 'response', response);
    END IF;

    INSERT INTO checkins (id, user_id, venue_id, status, detail, lon, lat, accuracy_m, observed_at, device_id, mocked)
    VALUES (checkin_id, p_user, v.id, 'accepted', detail, p_lon, p_lat, p_accuracy_m, p_observed_at, p_device_id,
            p_mocked);
    PERFORM count_return_visits(p_user, v.id, p_observed_at, counter_shard);
    FOR camp IN SELECT * FROM running_campaigns(v.id, p_observed_at) LOOP
        any_campaign := true;
        unlocked := unlocked || accept_in_campaign(camp, v.id, v.merchant_id, v.timezone, p_user, checkin_id,
                                                   p_observed_at, counter_shard);
    END LOOP;

    response := jsonb_build_object(
        'id', checkin_id, 'status', 'accepted', 'reason', NULL, 'detail', detail, 'unlocked', unlocked,
        'venue', jsonb_build_object('id', v.id, 'name', v.name));
    WITH logged AS (   -- a check-in where no campaign runs has its event here; accept_in_campaign logs the others
        INSERT INTO events (type, venue_id, user_id, checkin_id)
        SELECT 'checkin_accepted', v.id, p_user, checkin_id WHERE NOT any_campaign
    )
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response)
    VALUES (p_user, p_idempotency_key, p_request_hash, 201, response);
    RETURN jsonb_build_object('outcome', 'done', 'response', response);
END $$;
