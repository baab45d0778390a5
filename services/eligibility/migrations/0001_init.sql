-- The registry as eligibility sees it: latest message per key wins.
CREATE TABLE persons (
    person_id  text        PRIMARY KEY,
    region     text        NOT NULL,
    body       jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hospitals (
    hospital_code text        PRIMARY KEY,
    region        text        NOT NULL,
    level         text        NOT NULL,
    body          jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Every claim accepted for settlement (rejections are not recorded: the
-- hospital may correct and resend them).
CREATE TABLE claims (
    claim_id         text        PRIMARY KEY,
    hospital_code    text        NOT NULL,
    person_id        text        NOT NULL,
    content_hash     text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('accepted', 'pending_review', 'review_rejected', 'reversed')),
    document         bytea       NOT NULL,
    review_reason    text,
    reviewed_by      text,
    cancel_reason    text,
    cancel_published boolean     NOT NULL DEFAULT false,
    received_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_status ON claims (status) WHERE status = 'pending_review';
