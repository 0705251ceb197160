-- pgbench: the check-in's own database call, exactly as the API makes it. The last line is filled in
-- at run time (bench/workload.py: pgbench_script) with offers/checkin.py's CHECKIN_SQL (or, for the
-- baseline, the call in bench/baseline.py), each bound parameter replaced by what pgbench supplies
-- (PGBENCH_VALUES there) and a random bench point joined in: a change to the call changes this script
-- too, and a new parameter stops the bench until given.
-- A random odd-numbered one of the seeded users (the HTTP load takes even-numbered ones, so that neither
-- sees the other's check-ins as a jump across the map) at a random one of the points the HTTP load uses.
-- Variables (-D): bench/workload.py: pgbench_variables.
\set p random(1, :points)
\set u 2 * random(0, :users / 2 - 1) + 1
{checkin_sql}
