-- Claims the platform could not settle consistently (CONTRACT §5
-- SETTLEMENT_FAILED): a layer could not handle it, or its one-bill broke an
-- invariant. One row per attempt, with the reasons and the compensation sent
-- back through the layers to take back what any of them counted; answered_at
-- is set once that compensation has come through and the hospital has been
-- answered. A claim whose attempt failed may be sent again (attempt + 1).
CREATE TABLE failures (
    claim_id     text        NOT NULL,
    attempt      integer     NOT NULL,
    person_id    text        NOT NULL,
    reasons      text[]      NOT NULL,
    document     bytea       NOT NULL,
    compensation bytea       NOT NULL,
    failed_at    timestamptz NOT NULL DEFAULT now(),
    answered_at  timestamptz,
    PRIMARY KEY (claim_id, attempt)
);
