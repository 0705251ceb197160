-- Schema changes of revision 0005 (undone by schema_downgrade.sql): a customer's feedback on a
-- redeemed offer, and conversations between a customer and the merchant about an unlock.
-- Tables and indexes only: no function or trigger, so nothing here has a source file.

-- One conversation per unlock, opened by the customer's first message (or a feedback comment).
-- The unlock's merchant, campaign, offer and venue (where it was unlocked) never change, so
-- they are copied in: the merchant's inbox and a campaign's stats read this table alone.
CREATE TABLE conversations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    unlock_id         uuid NOT NULL REFERENCES unlocks (id),
    merchant_id       uuid NOT NULL REFERENCES merchants (id),
    campaign_id       uuid NOT NULL REFERENCES campaigns (id),
    offer_id          uuid NOT NULL REFERENCES offers (id),
    venue_id          uuid NOT NULL REFERENCES venues (id),
    user_id           text NOT NULL,
    status            text NOT NULL DEFAULT 'open',
    created_at        timestamptz NOT NULL DEFAULT now(),  -- the customer's first message
    last_message_at   timestamptz NOT NULL DEFAULT now(),
    waiting_since     timestamptz DEFAULT now(),           -- open: the customer's oldest message not answered yet
    first_reply_at    timestamptz,                         -- the merchant's first message
    closed_at         timestamptz,
    customer_read_at  timestamptz,                         -- the customer has read the merchant's messages up to here
    merchant_read_at  timestamptz,                         -- the merchant's side has read the customer's up to here
    -- The inbox's order: open ones by how long the customer has waited, the others by their last change.
    sort_at           timestamptz NOT NULL GENERATED ALWAYS AS (
                          CASE status WHEN 'open' THEN waiting_since WHEN 'closed' THEN closed_at ELSE last_message_at END
                      ) STORED,
    CONSTRAINT conversations_one_per_unlock UNIQUE (unlock_id),
    CONSTRAINT conversations_status_known CHECK (status IN ('open', 'answered', 'closed')),
    CONSTRAINT conversations_open_waits CHECK ((status = 'open') = (waiting_since IS NOT NULL)),
    CONSTRAINT conversations_closed_when CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
-- The merchant's inbox: one status, oldest waiting first (open) or newest change first (the
-- others). Also serves the merchant_id foreign key.
CREATE INDEX conversations_inbox ON conversations (merchant_id, status, sort_at, id);
CREATE INDEX conversations_user ON conversations (user_id, created_at DESC, id DESC);  -- the customer's list
CREATE INDEX conversations_campaign_id ON conversations (campaign_id);  -- the campaign's stats
CREATE INDEX conversations_offer_id ON conversations (offer_id);
CREATE INDEX conversations_venue_id ON conversations (venue_id);

-- author_sub is the customer's sub or the staff member who replied: each side sees only its own.
CREATE TABLE conversation_messages (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    author           text NOT NULL,
    kind             text NOT NULL DEFAULT 'message',  -- feedback: a feedback's comment, edited with it
    author_sub       text NOT NULL,
    body             text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    edited_at        timestamptz,
    CONSTRAINT conversation_messages_author_known CHECK (author IN ('customer', 'merchant')),
    CONSTRAINT conversation_messages_kind_known CHECK (kind IN ('message', 'feedback')),
    CONSTRAINT conversation_messages_feedback_by_customer CHECK (kind = 'message' OR author = 'customer'),
    CONSTRAINT conversation_messages_body_length CHECK (char_length(body) BETWEEN 1 AND 2000)
);
-- The thread in order, and the customer's messages of the last hour (the rate limit).
CREATE INDEX conversation_messages_thread ON conversation_messages (conversation_id, created_at, id);

-- Once per unlock, only after it was redeemed (checked by the service); a comment is also the
-- customer's message in the unlock's conversation (message_id).
CREATE TABLE unlock_feedback (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    unlock_id    uuid NOT NULL REFERENCES unlocks (id),
    campaign_id  uuid NOT NULL REFERENCES campaigns (id),
    offer_id     uuid NOT NULL REFERENCES offers (id),
    venue_id     uuid NOT NULL REFERENCES venues (id),
    user_id      text NOT NULL,
    rating       smallint NOT NULL,
    comment      text,
    message_id   uuid REFERENCES conversation_messages (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT unlock_feedback_once UNIQUE (unlock_id),
    CONSTRAINT unlock_feedback_rating_range CHECK (rating BETWEEN 1 AND 7),
    CONSTRAINT unlock_feedback_comment_length CHECK (char_length(comment) BETWEEN 1 AND 2000),
    CONSTRAINT unlock_feedback_comment_in_conversation CHECK ((comment IS NULL) = (message_id IS NULL))
);
CREATE INDEX unlock_feedback_campaign_id ON unlock_feedback (campaign_id);  -- the campaign's stats
CREATE INDEX unlock_feedback_offer_id ON unlock_feedback (offer_id);
CREATE INDEX unlock_feedback_venue_id ON unlock_feedback (venue_id);
CREATE INDEX unlock_feedback_message_id ON unlock_feedback (message_id);
