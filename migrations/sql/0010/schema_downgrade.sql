-- Undoes schema.sql of revision 0010: the box and its index go; match_venue() of 0002 uses the
-- geography index again.
DROP INDEX venues_fence_box_gist;
ALTER TABLE venues DROP COLUMN fence_box;
