-- What the stages answered, as eligibility reads it on his.settlements (the
-- settlement stage names the message it answers in the x-answer-to header):
-- for each attempt of a claim, whether it was settled, reversed, or failed
-- (SETTLEMENT_FAILED, once its compensation came through). The re-drive
-- drives again only the claims no answer has come back for.
CREATE TABLE answers (
    claim_id    text        NOT NULL,
    attempt     integer     NOT NULL,
    answer      text        NOT NULL CHECK (answer IN ('settled', 'reversed', 'failed')),
    answered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (claim_id, attempt, answer)
);

-- Claims taken in before this migration are taken as answered: one of them
-- still stuck is driven again when its hospital sends it again.
INSERT INTO answers (claim_id, attempt, answer)
SELECT claim_id, attempt, CASE status WHEN 'accepted' THEN 'settled' ELSE 'reversed' END
FROM claims WHERE status IN ('accepted', 'reversed');
