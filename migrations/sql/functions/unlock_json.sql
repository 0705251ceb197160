-- What the person who checked in sees of an unlocked offer: shown only here and in their wallet.
-- STABLE as jsonb_build_object is, so that it is inlined into the caller's expression.
CREATE OR REPLACE FUNCTION unlock_json(o offers, u unlocks) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('unlock_id', u.id, 'offer_id', o.id, 'title', o.title, 'description', o.description,
                              'terms', o.terms, 'code', u.code, 'expires_at', u.expires_at)
$$;
