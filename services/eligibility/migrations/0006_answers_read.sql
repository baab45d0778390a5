-- How far eligibility's reader of his.settlements has recorded the answers,
-- per partition: the next offset to handle, written in the statement that
-- records the batch's answers (so never ahead of them), by whichever
-- eligibility process holds the partition. The re-drive calls a claim stuck
-- only once this has reached the topic's end offsets taken before it looks.
-- Kept at its greatest: on the embedded broker, which loses its log on a
-- restart, offsets start again from 0 and the check then holds trivially.
-- A partition with no row yet counts as read up to 0.
CREATE TABLE answer_offsets (
    partition   integer PRIMARY KEY,
    next_offset bigint  NOT NULL
);
