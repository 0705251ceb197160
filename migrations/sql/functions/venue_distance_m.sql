-- Metres from a point to a venue's geofence, 0 inside or on the boundary (circles exactly, by their centre).
CREATE OR REPLACE FUNCTION venue_distance_m(v venues, pt geography) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v.circle_radius_m IS NULL THEN ST_Distance(v.fence, pt)
                ELSE greatest(0, ST_Distance(v.circle_center, pt) - v.circle_radius_m) END
$$;
