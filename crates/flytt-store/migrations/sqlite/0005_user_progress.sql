-- What the job runner records per user: when the last sync ended well and
-- that sync's statistics (JSON written by the runner).
ALTER TABLE batch_user ADD COLUMN last_synced_at TEXT;
ALTER TABLE batch_user ADD COLUMN started_at TEXT;
ALTER TABLE batch_user ADD COLUMN stats TEXT;
