-- The lon/lat box (SRID 4326 geometry) around every point within radius_m metres of pt: the fix's side
-- of the 2-D index prefilter (venues.fence_box &&) before an exact test on geography. Where the radius
-- reaches past ±180 or a pole, the box spans every longitude (a band of latitude): one box keeps the
-- match on a plain index scan, where two boxes split at ±180 need a bitmap scan, which made every
-- checkin() about 5% slower at 5,000 venues; only fixes that close to ±180 pay for the wider box.
-- Conservative on WGS84 and on PostGIS's sphere alike: a degree of latitude is at least 110,574 m long
-- (the meridian at the equator; the sphere's 111,195 m) and, at latitude φ, one of longitude at least
-- 111,319 m × cos φ (the sphere's 111,195 m × cos φ), so 110,000 m per degree overestimates both spans;
-- and every path within the radius stays between the latitudes ± radius_m / 110,000, whose parallels
-- are shortest at the one farthest from the equator. Plain SQL, so that it is inlined where it is called
-- (hence the half-width written out twice).
CREATE OR REPLACE FUNCTION lonlat_box(pt geography, radius_m double precision) RETURNS geometry
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN abs(ST_X(pt::geometry))
             + radius_m / (110000 * greatest(cos(radians(least(abs(ST_Y(pt::geometry)) + radius_m / 110000, 90))), 1e-9))
             > 180
        THEN ST_MakeEnvelope(-180, ST_Y(pt::geometry) - radius_m / 110000, 180, ST_Y(pt::geometry) + radius_m / 110000, 4326)
        ELSE ST_Expand(
            pt::geometry,
            radius_m / (110000 * greatest(cos(radians(least(abs(ST_Y(pt::geometry)) + radius_m / 110000, 90))), 1e-9)),
            radius_m / 110000)
    END
$$;
