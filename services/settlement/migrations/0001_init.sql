-- The one-bills (一单制) confirmed to hospitals.
CREATE TABLE one_bills (
    claim_id            text          PRIMARY KEY,
    hospital_code       text          NOT NULL,
    hospital_level      text          NOT NULL,
    person_id           text          NOT NULL,
    policy              text          NOT NULL,
    visit_type          text          NOT NULL,
    service_date        date          NOT NULL,
    status              text          NOT NULL CHECK (status IN ('settled', 'reversed')),
    total               numeric(14,2) NOT NULL,
    self_pay            numeric(14,2) NOT NULL,
    over_limit_self_pay numeric(14,2) NOT NULL,
    pre_self_pay        numeric(14,2) NOT NULL,
    compliant           numeric(14,2) NOT NULL,
    deductible          numeric(14,2) NOT NULL,
    basic               numeric(14,2) NOT NULL,
    serious_illness     numeric(14,2) NOT NULL,
    assistance          numeric(14,2) NOT NULL,
    backstop            numeric(14,2) NOT NULL,
    fund_total          numeric(14,2) NOT NULL,
    personal            numeric(14,2) NOT NULL,
    body                bytea         NOT NULL,
    received_at         timestamptz,
    settled_at          timestamptz   NOT NULL,
    reversed_at         timestamptz
);
CREATE INDEX one_bills_hospital_date ON one_bills (hospital_code, service_date);
CREATE INDEX one_bills_person ON one_bills (person_id);

CREATE TABLE inbox (
    message_id   text        PRIMARY KEY,
    output       bytea       NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Settlements that broke an invariant: never confirmed as settled.
CREATE TABLE broken (
    claim_id  text        NOT NULL,
    kind      text        NOT NULL,
    reasons   text[]      NOT NULL,
    document  bytea       NOT NULL,
    found_at  timestamptz NOT NULL DEFAULT now()
);
