-- A source endpoint's download limit per mailbox and day (Gmail: about
-- 2.5 GB), and how much each source mailbox has read in its current day
-- (keyed like mailbox_pair.source_key: the limit is the source account's,
-- whatever the target).
ALTER TABLE endpoint ADD COLUMN download_per_day INTEGER;
CREATE TABLE download_window (
    source_key  TEXT PRIMARY KEY,
    started_ms  INTEGER NOT NULL,
    bytes       INTEGER NOT NULL
);
