-- How precise a fix was, coarsely: what a check-in keeps of its accuracy once its position is
-- purged (offers/privacy/retention.py), and what fraud review shows beside the exact radius
-- while it is kept. NULL for no accuracy.
CREATE OR REPLACE FUNCTION accuracy_bucket(p_accuracy_m double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_accuracy_m IS NULL THEN NULL
                WHEN p_accuracy_m <= 10 THEN '0-10'
                WHEN p_accuracy_m <= 25 THEN '10-25'
                WHEN p_accuracy_m <= 50 THEN '25-50'
                WHEN p_accuracy_m <= 100 THEN '50-100'
                WHEN p_accuracy_m <= 250 THEN '100-250'
                ELSE '250+' END
$$;
