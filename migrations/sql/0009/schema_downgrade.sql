-- Undoes schema.sql of revision 0009: the three metrics back on the server's day (unlocks on the day
-- they were made, redemptions and voids on the redemption's day), then the column goes.
DELETE FROM campaign_counters WHERE metric IN ('unlock', 'redemption', 'void');
INSERT INTO campaign_counters (campaign_id, day, venue_id, metric, shard, n)
SELECT campaign_id, utc_day(unlocked_at), venue_id, 'unlock', user_shard(user_id), count(*)
FROM unlocks GROUP BY 1, 2, 3, 5
UNION ALL
SELECT r.campaign_id, utc_day(r.redeemed_at), r.venue_id, m.metric, user_shard(u.user_id), count(*)
FROM redemptions r JOIN unlocks u ON u.id = r.unlock_id
CROSS JOIN LATERAL (VALUES ('redemption'), ('void')) m (metric)
WHERE m.metric = 'redemption' OR r.voided_at IS NOT NULL
GROUP BY 1, 2, 3, 4, 5;
ALTER TABLE unlocks DROP COLUMN visit_day;
