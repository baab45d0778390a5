-- The gateway's own store: each hospital's claims and their standing answer,
-- learnt from his.settlements (every answer, whoever sent the claim).
CREATE TABLE claims (
    hospital_code text NOT NULL,
    claim_id      text NOT NULL,
    status        text NOT NULL,            -- 'accepted' (sent here, no answer yet) or the answer's status
    standing      smallint NOT NULL,        -- which answer may replace which (repository.STANDING)
    answer        bytea,                    -- the his.settlements message, as it came
    settled_at    timestamptz,              -- of the 'settled' answer (kept once reversed)
    settled_on    date,                     -- that moment's day in China Standard Time
    total         numeric(14, 2),           -- of the settled (or reversed) one-bill
    fund_total    numeric(14, 2),
    accepted_at   timestamptz NOT NULL DEFAULT now(),
    answered_at   timestamptz,
    PRIMARY KEY (hospital_code, claim_id)
);
CREATE INDEX claims_by_settlement_day ON claims (hospital_code, settled_on) WHERE settled_on IS NOT NULL;

-- How far this store has read his.settlements, per partition (any gateway process).
CREATE TABLE answer_offsets (
    partition   integer PRIMARY KEY,
    next_offset bigint NOT NULL
);
