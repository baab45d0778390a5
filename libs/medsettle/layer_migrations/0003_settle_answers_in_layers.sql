-- A settle's answer is its layer's output (stored there already): the inbox
-- keeps only the cancels' answers, so each document is written once.
DELETE FROM inbox WHERE message_id LIKE 'settle:%';
