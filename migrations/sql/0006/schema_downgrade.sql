-- Undoes schema.sql of revision 0006.
DROP TABLE webhook_srm_state;
DROP TABLE webhook_outbox_cursor;
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_messages;
DROP TABLE webhook_endpoints;
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'checkin_accepted', 'checkin_rejected', 'exposure', 'offer_unlocked', 'offer_redeemed', 'redemption_voided'));
DROP INDEX events_outbox;
ALTER TABLE events DROP COLUMN tx;
