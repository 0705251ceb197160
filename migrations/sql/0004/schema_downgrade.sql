-- Undoes schema.sql of revision 0004: the receipts go back into idempotency_keys under their old
-- scope. Where an app user whose sub reads 'redeem:<merchant>:<staff>' stored a check-in under the
-- same key (possible only since 0004), the check-in keeps the row: a check-in retried without its
-- row would check in again, while a redemption retried without its row is only told that the
-- code was redeemed (409), which cannot redeem anything twice.
INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at)
SELECT 'redeem:' || merchant_id || ':' || staff_sub, key, request_hash, 201, response, created_at
FROM redemption_keys
ON CONFLICT (scope, key) DO NOTHING;
DROP TABLE redemption_keys;
