-- Every operator decision (approve, reject, replay, any other change through an
-- operator API): who, what, when, and how it ended. Written before the action
-- runs (an action that cannot be recorded does not run), its outcome after.
CREATE TABLE IF NOT EXISTS operator_audit (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    service      text        NOT NULL,
    principal    text        NOT NULL,               -- the person (for the dashboard's calls: the user it acts for)
    role         text        NOT NULL,
    via          text        NOT NULL,               -- password (HTTP Basic) or service (the dashboard's credential)
    action       text        NOT NULL,               -- approve, reject, replay, or the method
    target       text,                               -- the claim or dead letter acted on
    method       text        NOT NULL,
    path         text        NOT NULL,
    detail       jsonb       NOT NULL DEFAULT '{}',  -- the request's reason, masked
    address      text,
    status       integer,                            -- the answer's HTTP status; NULL: the action never answered
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS operator_audit_at ON operator_audit (at);
