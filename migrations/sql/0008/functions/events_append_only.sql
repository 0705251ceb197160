-- The event record is append-only: no update, delete or truncate. One exception, for erasure
-- (offers/privacy/erasure.py): an update that changes nothing but user_id, from a person's sub to
-- an erasure placeholder ('erased:' and a random uuid), so the record keeps every event and its
-- figures while no longer naming who it was. Nothing else about an event can change.
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.user_id LIKE 'erased:%' AND NEW.user_id <> OLD.user_id
       AND to_jsonb(NEW) - 'user_id' = to_jsonb(OLD) - 'user_id' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
