-- Redeem a code at the till, exactly once: the unlock's row lock serialises concurrent
-- attempts, so one wins and the others see it redeemed. Another merchant's code is
-- indistinguishable from an unknown one. The receipt carries the offer's title and terms, so
-- the till shows what it just gave away.
-- A staff member's Idempotency-Keys live in redemption_keys, scoped by (merchant, staff member) in
-- columns of their own: they share nothing with the app users' check-in keys (idempotency_keys),
-- whatever either sub spells.
CREATE OR REPLACE FUNCTION redeem(p_merchant uuid, p_code text, p_venue uuid, p_staff text,
                       p_idempotency_key text, p_request_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    replay jsonb;
    u unlocks;
    r redemptions;
    response jsonb;
BEGIN
    IF p_idempotency_key IS NOT NULL THEN
        -- The two-number form is a lock space of its own: no check-in's user lock or offer's rule lock
        -- (one number each) is ever this lock. Two keys whose hashes collide only wait for each other.
        PERFORM pg_advisory_xact_lock(hashtext(p_merchant || ':' || p_staff), hashtext(p_idempotency_key));
        SELECT CASE WHEN k.request_hash <> p_request_hash THEN jsonb_build_object('outcome', 'key_reused')
                    ELSE jsonb_build_object('outcome', 'replay', 'response', k.response) END
        INTO replay FROM redemption_keys k
        WHERE k.merchant_id = p_merchant AND k.staff_sub = p_staff AND k.key = p_idempotency_key;
        IF FOUND THEN
            -- A receipt stored before receipts carried the offer's texts answers like a new one.
            IF replay ? 'response' AND NOT replay -> 'response' ? 'title' THEN
                SELECT jsonb_set(replay, '{response}',
                                 replay -> 'response' || jsonb_build_object('title', o.title, 'terms', o.terms))
                INTO replay FROM offers o WHERE o.id = (replay -> 'response' ->> 'offer_id')::uuid;
            END IF;
            RETURN replay;
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
    -- Counted on the unlock's visit day, not today's: see unlock_offer.
    PERFORM bump_counter(u.campaign_id, u.visit_day, p_venue, 'redemption', user_shard(u.user_id));
    PERFORM count_unredeemed(u.campaign_id, window_minutes(u), user_shard(u.user_id), -1);
    INSERT INTO campaign_redeem_minutes AS m (campaign_id, minutes, shard, n)
    VALUES (u.campaign_id, floor(extract(epoch FROM r.redeemed_at - u.unlocked_at) / 60)::int, user_shard(u.user_id), 1)
    ON CONFLICT (campaign_id, minutes, shard) DO UPDATE SET n = m.n + 1;

    SELECT jsonb_build_object('id', r.id, 'unlock_id', u.id, 'offer_id', u.offer_id, 'venue_id', p_venue,
                              'redeemed_at', r.redeemed_at, 'title', o.title, 'terms', o.terms)
    INTO response FROM offers o WHERE o.id = u.offer_id;
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO redemption_keys (merchant_id, staff_sub, key, request_hash, response)
        VALUES (p_merchant, p_staff, p_idempotency_key, p_request_hash, response);
    END IF;
    RETURN jsonb_build_object('outcome', 'done', 'response', response);
END $$;
