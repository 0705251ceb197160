-- A 2-D box around each fence in longitude and latitude, and a GiST index on it, for match_venue()'s
-- prefilter (lonlat_box() gives the fix's side): the geography index keeps 3-D geocentric boxes,
-- whose tree overlaps more and more as clustered cities fill up (3 pages a match at 10,000 venues,
-- 30 at 1,000,000), where a 2-D tree over lon/lat boxes stays shallow and tight (3 and 5).
-- The box must hold every point of the fence as geography reads it: edges are great-circle arcs, which
-- bow towards the pole beyond their end points' latitudes. Longitude runs monotonically along an arc
-- (a ring spans at most 180°: geo/geofence.py), so the vertices bound it; latitude does not, so the
-- arcs are first cut into pieces of at most `piece` metres on PostGIS's sphere (ST_Segmentize), every
-- point of which lies within piece / 2 of a vertex, hence within piece / 2 / 111,195 m° of its latitude:
-- the box grows by piece / 200,000 degrees north and south. Pieces of 10 m (5.6 m of margin), longer
-- for a fence with a long perimeter, so that no fence becomes more than about 1,000 pieces. A fence in
-- two parts either side of ±180 (a circle cut there) gets a box of every longitude: still conservative.
ALTER TABLE venues ADD COLUMN fence_box geometry(Polygon, 4326) GENERATED ALWAYS AS (
    ST_SetSRID(ST_Expand(
        ST_Segmentize(fence, greatest(10, ST_Perimeter(fence, false) / 1000))::geometry::box2d,
        0, greatest(10, ST_Perimeter(fence, false) / 1000) / 200000)::geometry, 4326)
) STORED;
CREATE INDEX venues_fence_box_gist ON venues USING gist (fence_box) WHERE deleted_at IS NULL;
