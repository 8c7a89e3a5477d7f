-- See migrations/sqlite/0016_user_counts.sql.
ALTER TABLE batch_user
    ADD COLUMN stat_folders BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_found BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_copied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_matched BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_skipped BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_failed BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_messages_altered BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_bytes_copied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN progress_messages_copied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN progress_bytes_copied BIGINT NOT NULL DEFAULT 0;
