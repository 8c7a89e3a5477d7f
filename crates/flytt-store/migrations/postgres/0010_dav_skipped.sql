-- See migrations/sqlite/0023_dav_skipped.sql.
ALTER TABLE batch_user
    ADD COLUMN stat_contacts_skipped BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_events_skipped BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_tasks_skipped BIGINT NOT NULL DEFAULT 0;
