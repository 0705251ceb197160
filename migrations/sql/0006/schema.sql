-- Schema changes of revision 0006 (undone by schema_downgrade.sql): webhooks. Tables, columns and
-- indexes only: no function or trigger changes, so nothing here has a source file.

-- The events table is the webhooks' outbox: offer_unlocked, offer_redeemed and redemption_voided
-- are already written by checkin(), redeem() and void_redemption() in the transaction of what they
-- report. What a reader needs besides is the writing transaction: identity values are taken before
-- commit, so a lower id can become visible after a higher one and a cursor on id alone would skip
-- it. The delivery worker (offers/webhooks/outbox.py) reads, in (tx, id) order, only events whose
-- transaction is older than every transaction still running. Existing rows keep NULL (no rewrite
-- of the table): they predate every webhook endpoint.
ALTER TABLE events ADD COLUMN tx xid8;
ALTER TABLE events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
-- Only the kinds a webhook reports (not check-ins or exposures): one small entry per unlock,
-- redemption, void, feedback or customer message, appended at the index's right edge.
CREATE INDEX events_outbox ON events (tx, id)
    WHERE tx IS NOT NULL
      AND type IN ('offer_unlocked', 'offer_redeemed', 'redemption_voided', 'feedback_received', 'message_received');

-- A customer's feedback and message are recorded as events too (offers/feedback.py,
-- offers/conversations.py), in the transaction that stores them. NOT VALID then VALIDATE: the
-- old rows are checked without blocking writes.
ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN (
    'checkin_accepted', 'checkin_rejected', 'exposure', 'offer_unlocked', 'offer_redeemed', 'redemption_voided',
    'feedback_received', 'message_received')) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_type_check;

-- A merchant's receivers. The secret signs every delivery (HMAC, so it must be stored as is): it
-- is returned once, when the endpoint is made, and never read by anything but the worker.
CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    url              text NOT NULL,
    event_types      text[] NOT NULL,
    secret           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    receives_since   timestamptz NOT NULL DEFAULT now(),  -- made or enabled again: events from then on
    failing_since    timestamptz,   -- the first failed attempt since the last success
    disabled_at      timestamptz,   -- after failing for 3 days; the reason says why
    disabled_reason  text,
    CONSTRAINT webhook_endpoints_some_events CHECK (cardinality(event_types) > 0),
    CONSTRAINT webhook_endpoints_disabled_why CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id, created_at, id);

-- One message per reported event, its body rendered once: every attempt and every endpoint gets
-- the same bytes under the same webhook-id. `source` names what it reports, so it is made once.
CREATE TABLE webhook_messages (
    id           uuid PRIMARY KEY,
    source       text NOT NULL,   -- event:<events.id>, budget_exhausted:offer:<id>:<limit>, srm_alert:<campaign>:<n>
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    body         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_messages_once UNIQUE (source)
);
CREATE INDEX webhook_messages_merchant_id ON webhook_messages (merchant_id);

-- One delivery per (endpoint, message): pending until an attempt succeeds or it has been retried
-- for 24 hours. A claimed delivery is leased while its attempt runs; a worker that dies leaves the
-- lease to expire (or the next leader clears it), so the message is sent again: at least once.
CREATE TABLE webhook_deliveries (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id       uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id        uuid NOT NULL REFERENCES webhook_messages (id),
    status            text NOT NULL DEFAULT 'pending',
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    lease_until       timestamptz,
    retry_until       timestamptz NOT NULL,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at      timestamptz,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, message_id),
    CONSTRAINT webhook_deliveries_status_known CHECK (status IN ('pending', 'succeeded', 'failed')),
    CONSTRAINT webhook_deliveries_pending_due CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_message_id ON webhook_deliveries (message_id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    error         text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at DESC);

-- How far the worker has read the events: every outbox event before (tx, event_id) is published.
CREATE TABLE webhook_outbox_cursor (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    tx        xid8 NOT NULL,
    event_id  bigint NOT NULL
);
INSERT INTO webhook_outbox_cursor (tx, event_id) VALUES ('0', 0);

-- A campaign's sample-ratio alert as the worker last saw it: srm_alert is sent when a campaign
-- goes into alert, once per time it does (`alerts` numbers them).
CREATE TABLE webhook_srm_state (
    campaign_id  uuid PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    alerting     boolean NOT NULL,
    alerts       integer NOT NULL DEFAULT 0,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
