-- Schema changes of revision 0007 (undone by schema_downgrade.sql): ghost unlocks, triggered sums
-- and CUPED sums. Columns, a table and the events type check; the functions are pinned beside this.

-- A control user's check-in that would have unlocked an offer records a ghost_unlock event
-- (ghost_unlock()): no code, not a webhook kind, so events_outbox's partial index is unchanged.
-- NOT VALID then VALIDATE: the old rows are checked without blocking writes.
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'checkin_accepted', 'checkin_rejected', 'exposure', 'offer_unlocked', 'offer_redeemed', 'redemption_voided',
    'feedback_received', 'message_received', 'ghost_unlock')) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_type_check;

-- On each exposure: accepted visits to the campaign's venues in the 28 days before it (the CUPED
-- covariate x), the user's first unlock, real or ghost (the trigger), and return visits counted
-- from the trigger. Exposures made before this revision keep x = 0 and no trigger: their
-- pre-period was never counted and their unlocks predate ghost unlocks, so control could not
-- have triggered. Constant defaults: no rewrite of the table.
ALTER TABLE exposures
    ADD COLUMN pre_period_visits integer NOT NULL DEFAULT 0,
    ADD COLUMN triggered_at timestamptz,
    ADD COLUMN triggered_visits integer NOT NULL DEFAULT 0;

-- CUPED sums beside the effect sums: Σx, Σx² at exposure, Σx·y as return visits arrive.
ALTER TABLE campaign_effect
    ADD COLUMN pre bigint NOT NULL DEFAULT 0,
    ADD COLUMN pre_sq bigint NOT NULL DEFAULT 0,
    ADD COLUMN pre_visits bigint NOT NULL DEFAULT 0;

-- The effect sums of triggered users, by the UTC day of their trigger: return visits after the
-- triggering check-in within attribution_days of it, with the same CUPED sums.
CREATE TABLE campaign_triggered (
    campaign_id     uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    arm             text NOT NULL,
    trigger_day     date NOT NULL,
    shard           smallint NOT NULL,
    users           bigint NOT NULL DEFAULT 0,
    returned_users  bigint NOT NULL DEFAULT 0,
    visits          bigint NOT NULL DEFAULT 0,
    visits_sq       bigint NOT NULL DEFAULT 0,
    pre             bigint NOT NULL DEFAULT 0,
    pre_sq          bigint NOT NULL DEFAULT 0,
    pre_visits      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, arm, trigger_day, shard)
);
