-- Store a check-in, accepted or rejected with its reason: a rejection is part of the record too.
CREATE OR REPLACE FUNCTION record_checkin(
    p_user text, p_venue uuid, p_reason text, p_detail jsonb,
    p_lon double precision, p_lat double precision, p_accuracy_m double precision, p_observed_at timestamptz,
    p_device_id text, p_mocked boolean
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    checkin_id uuid;
BEGIN
    INSERT INTO checkins AS c (user_id, venue_id, status, reason, detail, lon, lat, accuracy_m, observed_at, device_id, mocked)
    VALUES (p_user, p_venue, CASE WHEN p_reason IS NULL THEN 'accepted' ELSE 'rejected' END, p_reason, p_detail,
            p_lon, p_lat, p_accuracy_m, p_observed_at, p_device_id, p_mocked)
    RETURNING c.id INTO checkin_id;
    RETURN checkin_id;
END $$;
