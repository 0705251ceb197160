-- Every by-day figure on one clock: the UTC day of the check-in (the phone's observed_at) that the
-- figure comes from. Check-ins and exposures were counted so already; an unlock now counts on the day
-- of the check-in that earned it (unlocks.visit_day), and its redemptions and voids on that day too.
-- The default serves writers that predate this revision (the bench's baseline functions); every
-- function here passes the check-in's day.
ALTER TABLE unlocks ADD COLUMN visit_day date;
UPDATE unlocks u SET visit_day = utc_day(c.observed_at) FROM checkins c WHERE c.id = u.checkin_id;
ALTER TABLE unlocks ALTER COLUMN visit_day SET DEFAULT utc_day(now()), ALTER COLUMN visit_day SET NOT NULL;

-- Recount the three metrics on the new clock, from the rows they count (a redemption row stays when
-- voided, and a voided code may be redeemed again: one 'redemption' per row, one 'void' per voided row).
DELETE FROM campaign_counters WHERE metric IN ('unlock', 'redemption', 'void');
INSERT INTO campaign_counters (campaign_id, day, venue_id, metric, shard, n)
SELECT campaign_id, visit_day, venue_id, 'unlock', user_shard(user_id), count(*)
FROM unlocks GROUP BY 1, 2, 3, 5
UNION ALL
SELECT r.campaign_id, u.visit_day, r.venue_id, m.metric, user_shard(u.user_id), count(*)
FROM redemptions r JOIN unlocks u ON u.id = r.unlock_id
CROSS JOIN LATERAL (VALUES ('redemption'), ('void')) m (metric)
WHERE m.metric = 'redemption' OR r.voided_at IS NOT NULL
GROUP BY 1, 2, 3, 4, 5;
