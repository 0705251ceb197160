-- How fast a user moved between two fixes, as the speed check judges it: the distance beyond both
-- accuracy circles (so GPS noise alone is never a move) over the time between the fixes, in either
-- order. A move in no time is infinitely fast; no move is 0 km/h. One row; a set-returning SQL
-- function so that a query using it in FROM has it inlined.
CREATE OR REPLACE FUNCTION implied_speed(
    a geography, a_accuracy_m double precision, a_at timestamptz,
    b geography, b_accuracy_m double precision, b_at timestamptz
) RETURNS TABLE (distance_m double precision, seconds double precision, speed_kmh double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT m.distance_m, m.seconds,
           CASE WHEN m.distance_m = 0 THEN 0
                WHEN m.seconds = 0 THEN 'Infinity'
                ELSE m.distance_m / m.seconds * 3.6 END
    FROM (SELECT greatest(0, ST_Distance(a, b) - a_accuracy_m - b_accuracy_m) AS distance_m,
                 abs(extract(epoch FROM b_at - a_at))::double precision AS seconds
          OFFSET 0) m  -- kept a subquery, so the geodesic distance is computed once, not once per use
$$;
