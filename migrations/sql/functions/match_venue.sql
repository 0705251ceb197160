-- The venue a fix is at: its accuracy circle (capped) must meet the venue's geofence. When none
-- matches, the venue the app named or else the nearest one within the search radius comes back
-- with the rejection's reason and the figures it reports (distance_m NULL when there is none).
CREATE OR REPLACE FUNCTION match_venue(
    pt geography, p_accuracy_m double precision, p_venue_id uuid, p_limits venue_match_limits,
    OUT id uuid, OUT name text, OUT timezone text, OUT merchant_id uuid, OUT distance_m double precision,
    OUT reason text, OUT detail jsonb
) LANGUAGE plpgsql STABLE AS $$
DECLARE
    radius constant double precision := least(p_accuracy_m, p_limits.accuracy_cap_m);
BEGIN
    -- Candidates from the 2-D index on the fences' lon/lat boxes (venues_fence_box_gist), whose tree
    -- stays tight as venues crowd into cities, where the geography one's 3-D boxes overlap; then the
    -- exact tests on geography: _ST_DWithin is ST_DWithin without the geography index condition.
    -- The fix's box (lonlat_box) through a sub-select, so that no plan estimates from its value: the
    -- plan cache then keeps one generic plan instead of planning every call again (about 100 µs each).
    -- Preference: the venue the app named, then a fence containing the point itself (smallest first),
    -- then the nearest; the id last, so that equals always give the same venue.
    SELECT vn.id, vn.name, vn.timezone, vn.merchant_id, vn.distance_m
    INTO id, name, timezone, merchant_id, distance_m
    FROM (
        SELECT x.*, venue_distance_m(x, pt) AS distance_m
        FROM venues x
        WHERE x.deleted_at IS NULL
          AND x.fence_box && (SELECT lonlat_box(pt, radius))
          AND _ST_DWithin(x.fence, pt, radius)
    ) vn
    WHERE vn.distance_m <= radius
    ORDER BY vn.id = p_venue_id DESC NULLS LAST, vn.distance_m = 0 DESC, vn.distance_m, vn.area_m2, vn.id
    LIMIT 1;
    IF FOUND AND (p_venue_id IS NULL OR id = p_venue_id) THEN
        RETURN;
    END IF;

    IF p_venue_id IS NOT NULL THEN
        SELECT x.id, x.name, x.timezone, x.merchant_id, venue_distance_m(x, pt)
        INTO id, name, timezone, merchant_id, distance_m
        FROM venues x WHERE x.id = p_venue_id AND x.deleted_at IS NULL;
        reason := 'venue_mismatch';
        detail := jsonb_build_object('venue_id', p_venue_id,
            'distance_m', round(distance_m::numeric, 1), 'accuracy_m', p_accuracy_m);
    ELSE
        -- the nearest venue within the search radius says how far outside the check-in was
        SELECT x.id, x.name, x.timezone, x.merchant_id, venue_distance_m(x, pt)
        INTO id, name, timezone, merchant_id, distance_m
        FROM venues x
        WHERE x.deleted_at IS NULL AND ST_DWithin(x.fence, pt, p_limits.nearest_radius_m)
        ORDER BY x.fence <-> pt LIMIT 1;
        reason := 'outside_geofence';
        detail := jsonb_build_object('nearest_venue_id', id,
            'distance_m', round(distance_m::numeric, 1), 'accuracy_m', p_accuracy_m);
    END IF;
END $$;
