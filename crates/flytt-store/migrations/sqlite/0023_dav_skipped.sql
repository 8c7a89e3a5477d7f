-- Contacts, events and tasks the target refused (or kept its own version
-- of), as numbers the database adds up for a batch's totals.
ALTER TABLE batch_user ADD COLUMN stat_contacts_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_events_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_tasks_skipped INTEGER NOT NULL DEFAULT 0;
UPDATE batch_user SET
    stat_contacts_skipped = COALESCE(json_extract(stats, '$.dav.contacts.skipped'), 0),
    stat_events_skipped = COALESCE(json_extract(stats, '$.dav.events.skipped'), 0),
    stat_tasks_skipped = COALESCE(json_extract(stats, '$.dav.tasks.skipped'), 0)
WHERE stats IS NOT NULL AND json_valid(stats);
