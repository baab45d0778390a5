-- A batch is written in one statement, without an explicit transaction (two
-- round trips instead of four): each accumulator carries a version, a batch
-- saves an accumulator only at the version it read, and `stale_batch` aborts
-- the whole statement when one was changed meanwhile (a consumer that lost its
-- partitions in a rebalance still finishing a batch). Its error code,
-- serialization_failure, makes the runtime pause and redeliver the batch.
ALTER TABLE accumulators ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION stale_batch(expected bigint, saved bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF saved <> expected THEN
        RAISE EXCEPTION 'accumulators changed under this batch: % of % saved', saved, expected
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN saved;
END
$$;
