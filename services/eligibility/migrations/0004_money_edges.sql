-- A claim the platform could not settle (settlement.failures) may be sent
-- again: it then settles afresh as attempt 1, 2, ...
ALTER TABLE claims ADD COLUMN attempt integer NOT NULL DEFAULT 0;
-- A cancel of a claim held in review withdraws it (CONTRACT §3).
ALTER TABLE claims DROP CONSTRAINT claims_status_check;
ALTER TABLE claims ADD CONSTRAINT claims_status_check
    CHECK (status IN ('accepted', 'pending_review', 'review_rejected', 'reversed', 'withdrawn'));
