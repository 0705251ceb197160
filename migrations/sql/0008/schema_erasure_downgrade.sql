-- Undoes schema_erasure.sql (the receipts go with it; the erased rows stay erased).
DROP TABLE privacy_erasures;
