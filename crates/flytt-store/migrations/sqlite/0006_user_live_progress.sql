-- What a running sync is doing (JSON written by the runner about once a
-- second: folder, messages and bytes copied so far); cleared when it ends.
ALTER TABLE batch_user ADD COLUMN progress TEXT;
