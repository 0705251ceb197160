-- Undo a mistaken redemption within the window: recorded, never erased; the code is live again.
CREATE OR REPLACE FUNCTION void_redemption(p_merchant uuid, p_redemption uuid, p_admin text, p_reason text, p_window interval)
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
    -- Counted where the redemption was, on the unlock's visit day: no day is ever left at -1.
    PERFORM bump_counter(r.campaign_id, u.visit_day, r.venue_id, 'void', user_shard(u.user_id));
    PERFORM count_unredeemed(r.campaign_id, window_minutes(u), user_shard(u.user_id), 1);
    UPDATE campaign_redeem_minutes SET n = n - 1
    WHERE campaign_id = r.campaign_id AND shard = user_shard(u.user_id)
      AND minutes = floor(extract(epoch FROM r.redeemed_at - u.unlocked_at) / 60)::int;
    RETURN jsonb_build_object('outcome', 'done', 'response', jsonb_build_object(
        'id', r.id, 'unlock_id', r.unlock_id, 'offer_id', r.offer_id, 'venue_id', r.venue_id,
        'redeemed_at', r.redeemed_at, 'voided_at', r.voided_at, 'void_reason', r.void_reason));
END $$;
