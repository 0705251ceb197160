-- Undoes schema.sql of revision 0002 (the functions using these are dropped before it runs).
DROP TYPE venue_match_limits;
ALTER TABLE offers
    DROP CONSTRAINT offers_rule_declared,
    DROP CONSTRAINT offers_rule_is_typed_object,
    DROP COLUMN rule_parameters,
    DROP COLUMN rule_type;
DROP TABLE rule_types;
