-- A settle's answer is its one-bill's body (stored there already): the inbox
-- keeps only the cancels' answers.
DELETE FROM inbox WHERE message_id LIKE 'settle:%';
