-- Undoes schema.sql of revision 0007. Ghost unlock events are append-only history and would fail
-- the old type check: the downgrade refuses while any exists rather than erase them.
DROP TABLE campaign_triggered;
ALTER TABLE campaign_effect DROP COLUMN pre, DROP COLUMN pre_sq, DROP COLUMN pre_visits;
ALTER TABLE exposures DROP COLUMN pre_period_visits, DROP COLUMN triggered_at, DROP COLUMN triggered_visits;
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'checkin_accepted', 'checkin_rejected', 'exposure', 'offer_unlocked', 'offer_redeemed', 'redemption_voided',
    'feedback_received', 'message_received'));
