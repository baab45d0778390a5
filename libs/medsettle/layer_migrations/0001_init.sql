-- Tables of a layer stage (basic, insurer, assistance, backstop), in its own schema.
CREATE TABLE accumulators (
    person_id  text        NOT NULL,
    year       integer     NOT NULL,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, year)
);

-- The layer each settled claim got, and exactly what it added to the
-- person's accumulator, so that a reversal restores it.
CREATE TABLE layers (
    claim_id    text          PRIMARY KEY,
    person_id   text          NOT NULL,
    year        integer       NOT NULL,
    policy      text          NOT NULL,
    amount      numeric(14,2) NOT NULL,
    delta       jsonb         NOT NULL,
    output      bytea         NOT NULL,
    status      text          NOT NULL CHECK (status IN ('settled', 'reversed')),
    settled_at  timestamptz   NOT NULL DEFAULT now(),
    reversed_at timestamptz
);
CREATE INDEX layers_person_year ON layers (person_id, year);

-- Idempotent consumer: one row per handled message, written in the same
-- transaction as the state change, holding what was published.
CREATE TABLE inbox (
    message_id   text        PRIMARY KEY,
    output       bytea       NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
