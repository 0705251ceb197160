-- The audit trail of merchant-side changes (offers/audit.py): append-only (audit_append_only()),
-- read newest first, a page at a time, per merchant. merchant_id is NULL for a platform admin's
-- action that concerns no merchant (no foreign key: the trail outlives what it tells of, and a
-- merchant known only from its token is not provisioned by every change); actor_sub and
-- actor_role are the token's, as they were then.
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id uuid,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_sub   text NOT NULL,
    actor_role  text NOT NULL,
    action      text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type text NOT NULL,
    target_id   text,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_page ON audit_log (merchant_id, at DESC, id DESC);
