-- Is a local time inside an offer's schedule? {"weekdays": [1..7 ISO], "windows": [{"start": "17:00", "end": "19:00"}]}
-- A window whose end is before its start runs past midnight and belongs to the day it starts:
-- Friday 22:00-02:00 covers Saturday 01:00, not Friday 01:00.
CREATE OR REPLACE FUNCTION schedule_allows(schedule jsonb, p_at timestamptz, p_tz text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    local_ts timestamp := p_at AT TIME ZONE p_tz;
    local_time time := local_ts::time;
    today jsonb := to_jsonb(extract(isodow FROM local_ts)::int);
    yesterday jsonb := to_jsonb(extract(isodow FROM local_ts - interval '1 day')::int);
    days jsonb := coalesce(schedule -> 'weekdays', '[1, 2, 3, 4, 5, 6, 7]');
    starts time;
    ends time;
    w jsonb;
BEGIN
    IF schedule IS NULL THEN RETURN true; END IF;
    IF coalesce(jsonb_array_length(schedule -> 'windows'), 0) = 0 THEN RETURN days @> today; END IF;
    FOR w IN SELECT * FROM jsonb_array_elements(schedule -> 'windows') LOOP
        starts := (w ->> 'start')::time;
        ends := (w ->> 'end')::time;
        IF starts < ends THEN
            IF local_time >= starts AND local_time < ends AND days @> today THEN RETURN true; END IF;
        ELSIF local_time >= starts THEN
            IF days @> today THEN RETURN true; END IF;
        ELSIF local_time < ends THEN
            IF days @> yesterday THEN RETURN true; END IF;
        END IF;
    END LOOP;
    RETURN false;
END $$;
