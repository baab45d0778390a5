-- Dead letters, kept for operators to list, inspect and replay.
CREATE TABLE dead_letters (
    id            bigserial   PRIMARY KEY,
    source        text        NOT NULL UNIQUE,   -- stage:topic:partition:offset of the failed record
    stage         text        NOT NULL,
    topic         text        NOT NULL,
    key           text        NOT NULL,
    error         text        NOT NULL,
    original      text        NOT NULL,
    encoding      text        NOT NULL,
    headers       jsonb       NOT NULL,
    failed_at     timestamptz,
    received_at   timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'replayed')),
    replayed_at   timestamptz,
    replayed_by   text
);
