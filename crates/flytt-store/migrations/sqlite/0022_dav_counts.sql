-- Contacts, events and tasks found and copied, as numbers the database adds
-- up for a batch's totals (see 0016_user_counts.sql).
ALTER TABLE batch_user ADD COLUMN stat_contacts_found INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_contacts_copied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_events_found INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_events_copied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_tasks_found INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_tasks_copied INTEGER NOT NULL DEFAULT 0;
UPDATE batch_user SET
    stat_contacts_found = COALESCE(json_extract(stats, '$.dav.contacts.found'), 0),
    stat_contacts_copied = COALESCE(json_extract(stats, '$.dav.contacts.copied'), 0),
    stat_events_found = COALESCE(json_extract(stats, '$.dav.events.found'), 0),
    stat_events_copied = COALESCE(json_extract(stats, '$.dav.events.copied'), 0),
    stat_tasks_found = COALESCE(json_extract(stats, '$.dav.tasks.found'), 0),
    stat_tasks_copied = COALESCE(json_extract(stats, '$.dav.tasks.copied'), 0)
WHERE stats IS NOT NULL AND json_valid(stats);
