-- The venue match of checkin() on its own: its step match_venue(), called as checkin() calls it for a
-- fix where the app named no venue, timed inside PostgreSQL so that no client round trip blurs the
-- comparison between venue counts. The function itself, not a copy of its text: it runs as it does in
-- a check-in, with PL/pgSQL's cached plan for its query. In a schema of its own: public holds the
-- project's functions only (the service's readiness check reports any other there as drift).
CREATE SCHEMA IF NOT EXISTS bench_probe;

-- Microseconds per match for each point, whether it matched a venue, and the venue it chose (or the
-- nearest one). Dropped first: older versions of it returned no venue.
DROP FUNCTION IF EXISTS bench_probe.bench_match_timings(
    double precision[], double precision[], double precision[], double precision, double precision);
CREATE FUNCTION bench_probe.bench_match_timings(
    p_lon double precision[], p_lat double precision[], p_accuracy_m double precision[],
    p_accuracy_cap_m double precision, p_nearest_radius_m double precision
) RETURNS TABLE (us double precision, matched boolean, venue_id uuid) LANGUAGE plpgsql AS $bench$
DECLARE
    limits venue_match_limits := ROW(p_accuracy_cap_m, p_nearest_radius_m);
    started timestamptz;
    v record;
BEGIN
    FOR i IN 1 .. cardinality(p_lon) LOOP
        started := clock_timestamp();
        v := match_venue(ST_SetSRID(ST_MakePoint(p_lon[i], p_lat[i]), 4326)::geography, p_accuracy_m[i], NULL, limits);
        us := extract(epoch FROM clock_timestamp() - started) * 1e6;
        matched := v.reason IS NULL;
        venue_id := v.id;
        RETURN NEXT;
    END LOOP;
END $bench$;
