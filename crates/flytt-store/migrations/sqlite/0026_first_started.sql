-- When a user's first sync started, kept when later syncs start (as
-- Get-MigrationUserStatistics shows it); started_at is the current or
-- last sync's start. Users that synced before take their last start.
ALTER TABLE batch_user ADD COLUMN first_started_at TEXT;
UPDATE batch_user SET first_started_at = started_at;
