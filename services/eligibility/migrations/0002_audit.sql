-- Audit after settlement: what the flags need to know of each accepted claim,
-- the running cost of each main diagnosis, the flags themselves, and whether an
-- operator's review decision has reached the broker.

ALTER TABLE claims
    ADD COLUMN visit_type       text,
    ADD COLUMN admitted_on      date,
    ADD COLUMN discharged_on    date,
    ADD COLUMN level            text,
    ADD COLUMN diagnosis        text,
    ADD COLUMN total            numeric(14, 2),
    -- null: no decision; false: decided, answer not yet confirmed by the broker; true: sent.
    ADD COLUMN review_published boolean;

-- Claims accepted before this migration: the same facts, read from their document.
UPDATE claims AS c
SET visit_type    = d.doc -> 'claim' ->> 'visit_type',
    admitted_on   = (d.doc -> 'claim' ->> 'admitted_on')::date,
    discharged_on = (d.doc -> 'claim' ->> 'discharged_on')::date,
    level         = d.doc -> 'hospital' ->> 'level',
    diagnosis     = d.doc -> 'claim' -> 'diagnosis_codes' ->> 0,
    total         = (SELECT coalesce(sum((i ->> 'amount')::numeric), 0)
                     FROM jsonb_array_elements(d.doc -> 'claim' -> 'items') AS i),
    review_published = CASE WHEN c.reviewed_by IS NOT NULL THEN true END
FROM (SELECT claim_id, convert_from(document, 'UTF8')::jsonb AS doc FROM claims) AS d
WHERE d.claim_id = c.claim_id;

CREATE INDEX claims_inpatient_stays ON claims (person_id, admitted_on) WHERE visit_type = 'inpatient';
CREATE INDEX claims_review_unpublished ON claims (updated_at) WHERE review_published = false;

-- Running cost of each main diagnosis (first diagnosis code) by hospital level
-- and visit type, over the claims accepted and not reversed.
CREATE TABLE diagnosis_costs (
    diagnosis  text           NOT NULL,
    level      text           NOT NULL,
    visit_type text           NOT NULL,
    claims     bigint         NOT NULL,
    total      numeric(18, 2) NOT NULL,
    PRIMARY KEY (diagnosis, level, visit_type)
);

INSERT INTO diagnosis_costs (diagnosis, level, visit_type, claims, total)
SELECT diagnosis, level, visit_type, count(*), sum(total)
FROM claims
WHERE status = 'accepted' AND diagnosis IS NOT NULL AND level IS NOT NULL AND visit_type IS NOT NULL
GROUP BY diagnosis, level, visit_type;

-- Flags raised after settlement for an auditor to look at; never a route.
CREATE TABLE audit_flags (
    id               bigserial   PRIMARY KEY,
    claim_id         text        NOT NULL REFERENCES claims (claim_id),
    kind             text        NOT NULL CHECK (kind IN ('overlapping_stay', 'cost_outlier', 'random_sample')),
    reason           text        NOT NULL,
    related_claim_id text,
    flagged_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (claim_id, kind)
);
CREATE INDEX audit_flags_kind ON audit_flags (kind, id);
