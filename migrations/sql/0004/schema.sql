-- Schema changes of revision 0004 (undone by schema_downgrade.sql).

-- A staff member's Idempotency-Keys for redemptions, scoped by the merchant and the staff member
-- in columns of their own. Until 0004 they shared idempotency_keys with the app users' check-in
-- keys under the text scope 'redeem:<merchant>:<staff>', so an app user whose sub was spelled so
-- shared that staff member's keys. idempotency_keys now holds check-in keys only, scoped by the
-- user's sub as before. Purged like it (core/idempotency.py); no status code: a redemption
-- stores only its 201 receipt.
CREATE TABLE redemption_keys (
    merchant_id   uuid NOT NULL,
    staff_sub     text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, staff_sub, key)
);
CREATE INDEX redemption_keys_created_at ON redemption_keys (created_at);

-- Stored receipts move over with their age, so a till retrying across the deploy still gets its
-- receipt. A row is a redemption's when its scope reads redeem:<merchant uuid>:<staff> and it
-- stores a receipt (which has an unlock_id): an app user whose sub reads like that scope stored a
-- check-in (no unlock_id), which stays where it is.
WITH moved AS (
    DELETE FROM idempotency_keys
    WHERE scope ~ '^redeem:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:'
      AND response ? 'unlock_id'
    RETURNING scope, key, request_hash, response, created_at
)
INSERT INTO redemption_keys (merchant_id, staff_sub, key, request_hash, response, created_at)
SELECT substr(scope, 8, 36)::uuid, substr(scope, 45), key, request_hash, response, created_at FROM moved;
