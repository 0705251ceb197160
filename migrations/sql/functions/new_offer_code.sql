-- 60 random bits in Crockford base32: 12 characters read aloud as XXXX-XXXX-XXXX.
CREATE OR REPLACE FUNCTION new_offer_code() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    hex text := replace(gen_random_uuid()::text, '-', '');
    -- a v4 uuid's 13th hex digit is the version; the first 12 and the 3 after it are random
    bits bigint := ('x' || substr(hex, 1, 12) || substr(hex, 14, 3))::bit(60)::bigint;
    code text := '';
BEGIN
    FOR i IN 1..12 LOOP
        code := code || substr(alphabet, (bits & 31)::int + 1, 1);
        bits := bits >> 5;
        IF i IN (4, 8) THEN code := code || '-'; END IF;
    END LOOP;
    RETURN code;
END $$;
