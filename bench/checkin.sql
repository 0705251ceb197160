-- pgbench: the check-in's own database call, exactly as the API makes it. The last line is filled in
-- at run time (bench/workload.py: pgbench_script) with offers/checkin.py's CHECKIN_SQL, each bound
-- parameter replaced by what pgbench supplies (PGBENCH_VALUES there) and a random bench point joined
-- in: a change to the call changes this script too, and a new parameter stops the bench until given.
-- A random odd-numbered user out of 1,000,000 (the HTTP load takes even-numbered ones, so that neither
-- sees the other's check-ins as a jump across the map) at a random one of the points the HTTP load uses.
-- Variables (-D): points, max_accuracy_m, max_speed_kmh, cooldown_s.
\set p random(1, :points)
\set u 2 * random(0, 499999) + 1
{checkin_sql}
