-- Schema changes of revision 0002 (undone by schema_downgrade.sql).

-- The rule types an offer can have and their parameter names: the database's one declaration of
-- them. offers/rules.py declares the same as pydantic models; tests/test_rules_registry.py proves
-- that the two agree.
CREATE TABLE rule_types (
    type            text PRIMARY KEY,
    parameters      text[] NOT NULL,
    -- The same names as a jsonb array in jsonb's own key order (shorter first, then bytewise),
    -- which is how offers.rule_parameters lists an offer's keys: equal sets compare equal.
    parameters_key  jsonb NOT NULL GENERATED ALWAYS AS
                        (jsonb_path_query_array(jsonb_object(parameters, parameters), '$.keyvalue().key')) STORED,
    UNIQUE (type, parameters_key)
);
INSERT INTO rule_types (type, parameters) VALUES
    ('every_checkin', '{}'),
    ('first_checkin', '{}'),
    ('nth_checkin',   '{n}'),
    ('loyalty',       '{visits, within_days}'),
    ('flash',         '{first_n}'),
    ('group',         '{min_people, within_minutes}'),
    ('top_visitor',   '{within_days}');

-- An offer's rule is a declared type with exactly that type's parameters, no more, no fewer.
ALTER TABLE offers
    ADD COLUMN rule_type text GENERATED ALWAYS AS (rule ->> 'type') STORED,
    ADD COLUMN rule_parameters jsonb GENERATED ALWAYS AS
        (CASE WHEN jsonb_typeof(rule) = 'object' THEN jsonb_path_query_array(rule - 'type', '$.keyvalue().key') END)
        STORED,
    ADD CONSTRAINT offers_rule_is_typed_object CHECK (rule_type IS NOT NULL AND rule_parameters IS NOT NULL),
    ADD CONSTRAINT offers_rule_declared FOREIGN KEY (rule_type, rule_parameters)
        REFERENCES rule_types (type, parameters_key);
CREATE INDEX offers_rule_type ON offers (rule_type, rule_parameters);  -- every foreign key has an index

-- How far checkin() looks for a venue (core/settings.py: match_accuracy_cap_m, nearest_venue_radius_m):
-- the accuracy circle a fix is matched with is capped, and a fix that matches no venue is measured
-- against the nearest one within a radius.
CREATE TYPE venue_match_limits AS (accuracy_cap_m double precision, nearest_radius_m double precision);
