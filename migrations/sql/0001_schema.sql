-- Schema of checkin-offers. Every foreign key has an index (unindexed keys turn deletes into scans).
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE merchants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venues (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    name             text NOT NULL,
    timezone         text NOT NULL,
    address          text,
    geofence         jsonb NOT NULL,                          -- as the merchant sent it: a circle stays a circle
    fence            geography(MultiPolygon, 4326) NOT NULL,  -- what the spatial index matches (a circle's circumscribed polygon)
    circle_center    geography(Point, 4326),                  -- circles only: the exact test is distance to the centre
    circle_radius_m  double precision,
    area_m2          double precision NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,                             -- soft delete: check-ins and events keep pointing here
    CHECK ((circle_center IS NULL) = (circle_radius_m IS NULL))
);
CREATE INDEX venues_fence_gist ON venues USING gist (fence) WHERE deleted_at IS NULL;
CREATE INDEX venues_merchant_id ON venues (merchant_id, id);

CREATE TABLE campaigns (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    merchant_id       uuid NOT NULL REFERENCES merchants (id),
    name              text NOT NULL,
    status            text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'ended')),
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    holdout_percent   smallint NOT NULL CHECK (holdout_percent BETWEEN 0 AND 50),
    attribution_days  smallint NOT NULL CHECK (attribution_days BETWEEN 1 AND 90),
    assignment_salt   text NOT NULL DEFAULT md5(gen_random_uuid()::text),
    activated_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX campaigns_merchant_id ON campaigns (merchant_id, id);

-- Once a campaign has been active, what its measurement depends on is frozen.
CREATE FUNCTION campaigns_freeze_measurement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.activated_at IS NOT NULL AND
       (NEW.holdout_percent, NEW.assignment_salt, NEW.attribution_days)
       IS DISTINCT FROM (OLD.holdout_percent, OLD.assignment_salt, OLD.attribution_days) THEN
        RAISE EXCEPTION 'measurement settings of campaign % are frozen', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER campaigns_freeze_measurement BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_freeze_measurement();

CREATE TABLE campaign_venues (
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    venue_id     uuid NOT NULL REFERENCES venues (id),
    PRIMARY KEY (campaign_id, venue_id)
);
CREATE INDEX campaign_venues_venue_id ON campaign_venues (venue_id);

CREATE TABLE offers (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id            uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    title                  text NOT NULL,
    description            text NOT NULL,
    terms                  text NOT NULL,
    rule                   jsonb NOT NULL CHECK (rule ? 'type'),  -- no offer without a check-in rule
    schedule               jsonb,
    per_user_limit         integer NOT NULL CHECK (per_user_limit >= 1),
    total_limit            integer NOT NULL CHECK (total_limit >= 1),
    redeem_within_minutes  integer NOT NULL CHECK (redeem_within_minutes >= 1),
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_campaign_id ON offers (campaign_id);

-- The budget is split over a few rows so concurrent unlocks do not queue on one hot counter.
CREATE TABLE offer_budget_shards (
    offer_id   uuid NOT NULL REFERENCES offers (id) ON DELETE CASCADE,
    shard      smallint NOT NULL,
    remaining  integer NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (offer_id, shard)
);

CREATE TABLE checkins (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text NOT NULL,
    venue_id     uuid REFERENCES venues (id),
    status       text NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason       text,
    detail       jsonb,
    lon          double precision NOT NULL,
    lat          double precision NOT NULL,
    accuracy_m   double precision NOT NULL,
    observed_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    device_id    text,
    mocked       boolean,
    CHECK ((status = 'accepted') = (reason IS NULL))
);
CREATE INDEX checkins_user_accepted ON checkins (user_id, observed_at DESC) WHERE status = 'accepted';
CREATE INDEX checkins_venue_observed ON checkins (venue_id, observed_at);

-- One row per (campaign, user): the randomised arm, fixed at the first accepted check-in.
CREATE TABLE exposures (
    campaign_id    uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    user_id        text NOT NULL,
    arm            text NOT NULL CHECK (arm IN ('treatment', 'control')),
    bucket         integer NOT NULL,
    exposed_at     timestamptz NOT NULL,
    venue_id       uuid NOT NULL REFERENCES venues (id),
    checkin_id     uuid NOT NULL REFERENCES checkins (id),
    return_visits  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, user_id)
);
CREATE INDEX exposures_venue_id ON exposures (venue_id);
CREATE INDEX exposures_checkin_id ON exposures (checkin_id);

CREATE TABLE unlocks (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    offer_id     uuid NOT NULL REFERENCES offers (id),
    campaign_id  uuid NOT NULL REFERENCES campaigns (id),
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    user_id      text NOT NULL,
    checkin_id   uuid NOT NULL REFERENCES checkins (id),
    code         text NOT NULL UNIQUE,
    unlocked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    redeemed_at  timestamptz
);
CREATE INDEX unlocks_user ON unlocks (user_id, unlocked_at DESC);
CREATE INDEX unlocks_offer_id ON unlocks (offer_id);
-- Covers the stats' time to redeem, which censors every unredeemed unlock (index-only scan).
CREATE INDEX unlocks_campaign_open ON unlocks (campaign_id, expires_at) INCLUDE (unlocked_at) WHERE redeemed_at IS NULL;
CREATE INDEX unlocks_merchant_id ON unlocks (merchant_id);
CREATE INDEX unlocks_venue_id ON unlocks (venue_id);
CREATE INDEX unlocks_checkin_id ON unlocks (checkin_id);

-- Per-user limit guard. Group unlocks are written for other users inside one user's
-- transaction, so a conditional upsert (not the user's lock) keeps the limit exact.
CREATE TABLE user_offer_unlocks (
    offer_id        uuid NOT NULL REFERENCES offers (id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    unlocks         integer NOT NULL,
    last_unlock_at  timestamptz NOT NULL,
    PRIMARY KEY (offer_id, user_id)
);

CREATE TABLE redemptions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    unlock_id    uuid NOT NULL REFERENCES unlocks (id),
    offer_id     uuid NOT NULL REFERENCES offers (id),
    campaign_id  uuid NOT NULL REFERENCES campaigns (id),
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    staff_sub    text NOT NULL,
    redeemed_at  timestamptz NOT NULL DEFAULT now(),
    voided_at    timestamptz,
    voided_by    text,
    void_reason  text
);
CREATE UNIQUE INDEX redemptions_one_live_per_unlock ON redemptions (unlock_id) WHERE voided_at IS NULL;
CREATE INDEX redemptions_unlock_id ON redemptions (unlock_id);
CREATE INDEX redemptions_offer_id ON redemptions (offer_id);
CREATE INDEX redemptions_campaign_id ON redemptions (campaign_id);
CREATE INDEX redemptions_merchant_id ON redemptions (merchant_id, redeemed_at DESC);
CREATE INDEX redemptions_venue_id ON redemptions (venue_id);

-- Append-only record of what happened, written in the transaction of the state change it describes.
CREATE TABLE events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type           text NOT NULL CHECK (type IN ('checkin_accepted', 'checkin_rejected', 'exposure',
                                                 'offer_unlocked', 'offer_redeemed', 'redemption_voided')),
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    campaign_id    uuid,
    offer_id       uuid,
    venue_id       uuid,
    user_id        text,
    checkin_id     uuid,
    unlock_id      uuid,
    redemption_id  uuid,
    arm            text,
    reason         text,
    data           jsonb
);
CREATE INDEX events_campaign ON events (campaign_id, occurred_at);
CREATE INDEX events_user ON events (user_id, occurred_at);

CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Stats kept current as events arrive, so a campaign's stats read a few hundred rows,
-- not millions of events. Rows are split by a per-user shard to avoid one hot counter.
CREATE TABLE campaign_counters (
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    day          date NOT NULL,
    venue_id     uuid NOT NULL,
    metric       text NOT NULL,   -- checkin_accepted, checkin_rejected:<reason>, exposure:<arm>, unlock, redemption, void
    shard        smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (campaign_id, day, venue_id, metric, shard)
);

-- Intention-to-treat sums per arm and exposure day: users, users with a return visit
-- inside the attribution window, return visits and their squares (for the variance).
CREATE TABLE campaign_effect (
    campaign_id     uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    arm             text NOT NULL,
    exposure_day    date NOT NULL,
    shard           smallint NOT NULL,
    users           bigint NOT NULL DEFAULT 0,
    returned_users  bigint NOT NULL DEFAULT 0,
    visits          bigint NOT NULL DEFAULT 0,
    visits_sq       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, arm, exposure_day, shard)
);

-- Minutes from unlock to redemption, for the time-to-redeem curve.
CREATE TABLE campaign_redeem_minutes (
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    minutes      integer NOT NULL,
    shard        smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (campaign_id, minutes, shard)
);

-- Unlocks not redeemed, by redemption window: with the few still open (read from unlocks),
-- this gives the expired ones, censored at their window, without scanning every unlock.
CREATE TABLE campaign_unredeemed (
    campaign_id     uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    window_minutes  integer NOT NULL,
    shard           smallint NOT NULL,
    n               bigint NOT NULL,
    PRIMARY KEY (campaign_id, window_minutes, shard)
);

CREATE TABLE idempotency_keys (
    scope         text NOT NULL,   -- the caller: keys of different callers never collide
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   integer NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
