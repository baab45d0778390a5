-- A claim the platform could not settle (SETTLEMENT_FAILED) may be sent again
-- and then settles afresh: its layer row is replaced by the new attempt's.
-- A layer that could not handle a claim stores it as `failed` (nothing
-- counted), so that a redelivery is answered the same way.
ALTER TABLE layers ADD COLUMN attempt integer NOT NULL DEFAULT 0;
ALTER TABLE layers DROP CONSTRAINT layers_status_check;
ALTER TABLE layers ADD CONSTRAINT layers_status_check CHECK (status IN ('settled', 'reversed', 'failed'));
