-- The venue match of checkin() on its own, timed inside PostgreSQL so that no client round trip
-- blurs the comparison between venue counts. The placeholder in bench_match is replaced at run time
-- (bench/probes.py: match_query) by the SELECT ... INTO v ... LIMIT 1 copied from migrations/sql, the
-- function's own text rather than a rewrite of it, and runs as PL/pgSQL runs it there: a cached plan
-- with the point, accuracy and venue as parameters.
CREATE OR REPLACE FUNCTION bench_match(p_lon double precision, p_lat double precision, p_accuracy_m double precision)
RETURNS uuid LANGUAGE plpgsql AS $bench$
DECLARE
    pt geography := ST_SetSRID(ST_MakePoint(p_lon, p_lat), 4326)::geography;
    p_venue_id uuid;  -- the app named no venue
    v record;
BEGIN
    {match_query}
    IF FOUND THEN RETURN v.id; END IF;
    RETURN NULL;
END $bench$;

-- Microseconds per match for each point, and whether it matched a venue.
CREATE OR REPLACE FUNCTION bench_match_timings(p_lon double precision[], p_lat double precision[],
                                               p_accuracy_m double precision[])
RETURNS TABLE (us double precision, matched boolean) LANGUAGE plpgsql AS $bench$
DECLARE
    started timestamptz;
    venue uuid;
BEGIN
    FOR i IN 1 .. cardinality(p_lon) LOOP
        started := clock_timestamp();
        venue := bench_match(p_lon[i], p_lat[i], p_accuracy_m[i]);
        us := extract(epoch FROM clock_timestamp() - started) * 1e6;
        matched := venue IS NOT NULL;
        RETURN NEXT;
    END LOOP;
END $bench$;
