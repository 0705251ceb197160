-- Once a campaign has been active, what its measurement depends on is frozen.
CREATE OR REPLACE FUNCTION campaigns_freeze_measurement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.activated_at IS NOT NULL AND
       (NEW.holdout_percent, NEW.assignment_salt, NEW.attribution_days)
       IS DISTINCT FROM (OLD.holdout_percent, OLD.assignment_salt, OLD.attribution_days) THEN
        RAISE EXCEPTION 'measurement settings of campaign % are frozen', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER campaigns_freeze_measurement BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_freeze_measurement();
