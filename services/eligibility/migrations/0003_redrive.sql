-- Stuck claims: when a claim was last driven again from the stage that
-- durably finished it (PostgreSQL is the source of truth, not the broker).
ALTER TABLE claims ADD COLUMN redriven_at timestamptz;
ALTER TABLE claims ADD COLUMN redrives integer NOT NULL DEFAULT 0;
CREATE INDEX claims_unconfirmed ON claims (updated_at) WHERE status IN ('accepted', 'reversed');
