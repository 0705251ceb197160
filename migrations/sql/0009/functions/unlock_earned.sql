-- Unlock an offer whose rule a check-in met: for the user who checked in or, for a group rule,
-- for every member of the group. Treatment users unlock (unlock_offer); control users get a ghost
-- unlock under the same per-user limit and budget (ghost_unlock). Either kind triggers the user
-- (mark_triggered) at this check-in. Returns the user's own unlock; NULL when they got none (the
-- per-user limit or the budget is spent) or when it was a ghost.
CREATE OR REPLACE FUNCTION unlock_earned(p_offer offers, p_arm text, p_merchant uuid, p_venue uuid, p_user text,
                                         p_checkin uuid, p_observed_at timestamptz, p_shard smallint)
RETURNS unlocks LANGUAGE plpgsql AS $$
DECLARE
    group_window interval;
    member text;
    member_arm text;
    member_checkin uuid;
    u unlocks;
    own unlocks;
BEGIN
    IF p_offer.rule ->> 'type' <> 'group' THEN
        IF p_arm = 'treatment' THEN
            u := unlock_offer(p_offer, p_merchant, p_venue, p_user, p_checkin, utc_day(p_observed_at), p_shard);
            IF u.id IS NOT NULL THEN
                PERFORM mark_triggered(p_offer.campaign_id, p_user, p_observed_at, p_shard);
            END IF;
            RETURN u;
        END IF;
        IF ghost_unlock(p_offer, p_venue, p_user, p_checkin) THEN
            PERFORM mark_triggered(p_offer.campaign_id, p_user, p_observed_at, p_shard);
        END IF;
        RETURN NULL;
    END IF;

    -- The group: everyone exposed who checked in here within_minutes either side of this check-in
    -- and did not unlock (or ghost-unlock) in that window unlocks, each by their own arm, whoever
    -- completed it: this user in the response, the others in their wallets. Each member's unlock
    -- points at their own latest check-in in the group. Members go in user order, so concurrent
    -- completions of one group lock their rows in one order.
    group_window := make_interval(mins => (p_offer.rule ->> 'within_minutes')::int);
    FOR member, member_arm, member_checkin IN
        SELECT DISTINCT ON (c.user_id) c.user_id, e.arm, c.id FROM checkins c
        JOIN exposures e ON e.campaign_id = p_offer.campaign_id AND e.user_id = c.user_id
        WHERE c.venue_id = p_venue AND c.status = 'accepted'
          AND c.observed_at > p_observed_at - group_window AND c.observed_at < p_observed_at + group_window
          AND NOT EXISTS (SELECT 1 FROM user_offer_unlocks uo
                          WHERE uo.offer_id = p_offer.id AND uo.user_id = c.user_id
                            AND uo.last_unlock_at > now() - group_window)
        ORDER BY c.user_id, c.observed_at DESC
    LOOP
        IF member_arm = 'treatment' THEN
            u := unlock_offer(p_offer, p_merchant, p_venue, member,
                              CASE WHEN member = p_user THEN p_checkin ELSE member_checkin END,
                              utc_day(p_observed_at), p_shard);
            IF u.id IS NOT NULL THEN
                PERFORM mark_triggered(p_offer.campaign_id, member, p_observed_at, user_shard(member));
            END IF;
            IF member = p_user THEN
                own := u;
            END IF;
        ELSIF ghost_unlock(p_offer, p_venue, member, CASE WHEN member = p_user THEN p_checkin ELSE member_checkin END) THEN
            PERFORM mark_triggered(p_offer.campaign_id, member, p_observed_at, user_shard(member));
        END IF;
    END LOOP;
    RETURN own;
END $$;
