-- Erasure receipts (offers/privacy/erasure.py): one row per erasure that found something to
-- erase (a repeated request answers the latest receipt again). The person is held only as a keyed
-- hash of their sub (HMAC-SHA256 under CHECKIN_PSEUDONYM_KEY), enough to recognise a repeated
-- request, never to read the sub back; nothing here leads to the placeholder their rows now carry.
CREATE TABLE privacy_erasures (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    subject_hash  text NOT NULL,
    requested_by  text NOT NULL,
    requested_at  timestamptz NOT NULL,
    completed_at  timestamptz NOT NULL,
    CONSTRAINT privacy_erasures_requested_by_known CHECK (requested_by IN ('self', 'platform_admin'))
);
CREATE INDEX privacy_erasures_subject ON privacy_erasures (subject_hash, requested_at DESC);
