-- What a request repeated under an Idempotency-Key gets: the stored response when the request is
-- the same, key_reused when it differs; no row for a new key. Inlined into the caller's query
-- (STABLE, set-returning SQL).
CREATE OR REPLACE FUNCTION idempotent_replay(p_scope text, p_key text, p_request_hash text)
RETURNS SETOF jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN k.request_hash <> p_request_hash THEN jsonb_build_object('outcome', 'key_reused')
                ELSE jsonb_build_object('outcome', 'replay', 'response', k.response) END
    FROM idempotency_keys k
    WHERE k.scope = p_scope AND k.key = p_key
$$;
