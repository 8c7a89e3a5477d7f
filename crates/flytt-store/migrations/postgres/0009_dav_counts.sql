-- See migrations/sqlite/0022_dav_counts.sql (nothing to fill in: no
-- PostgreSQL database had DAV statistics before this).
ALTER TABLE batch_user
    ADD COLUMN stat_contacts_found BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_contacts_copied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_events_found BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_events_copied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_tasks_found BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_tasks_copied BIGINT NOT NULL DEFAULT 0;
