-- See migrations/sqlite/0029_deletions_synced.sql.
ALTER TABLE folder_state ADD COLUMN deletions_synced BIGINT NOT NULL DEFAULT 0;
