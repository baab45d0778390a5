-- Closed clearing statements (清算结账): written once, when a month is closed,
-- and never updated. A re-read of a closed month returns these bytes.
CREATE TABLE statements (
    month      date        PRIMARY KEY CHECK (extract(day FROM month) = 1),  -- first day of the month (CST)
    closed_at  timestamptz NOT NULL,
    closed_by  text        NOT NULL,  -- the operator, or 'schedule'
    entries    integer     NOT NULL,
    amount     numeric(16,2) NOT NULL,  -- what the funds owe the hospitals for the month, reversals deducted
    body       bytea       NOT NULL,  -- the statement as JSON, as /api/clearing answers it
    csv        bytea       NOT NULL,  -- the statement as CSV (UTF-8 with BOM), as /api/clearing.csv answers it
    sha256     text        NOT NULL   -- of csv
);

-- Every settlement and reversal a closed statement holds, once: a late one
-- (committed after its month was closed) goes into the next open month.
CREATE TABLE statement_lines (
    claim_id        text          NOT NULL,
    event           text          NOT NULL CHECK (event IN ('settled', 'reversed')),
    month           date          NOT NULL REFERENCES statements (month),
    hospital_code   text          NOT NULL,
    at              timestamptz   NOT NULL,
    basic           numeric(14,2) NOT NULL,  -- signed: a reversal is negative
    serious_illness numeric(14,2) NOT NULL,
    assistance      numeric(14,2) NOT NULL,
    backstop        numeric(14,2) NOT NULL,
    fund_total      numeric(14,2) NOT NULL,
    PRIMARY KEY (claim_id, event)
);
CREATE INDEX statement_lines_month ON statement_lines (month);

-- Nothing ever changes a closed statement.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a closed clearing statement never changes (%.%)', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER statements_never_change BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER statement_lines_never_change BEFORE UPDATE OR DELETE ON statement_lines
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
