-- A user's statistics as numbers the database adds up: batch totals,
-- /metrics and the dashboard ask for sums instead of reading every user's
-- statistics JSON. Written with `stats` (and `progress`, for a running
-- sync's copies so far) by the store.
ALTER TABLE batch_user ADD COLUMN stat_folders INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_found INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_copied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_matched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_messages_altered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stat_bytes_copied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN progress_messages_copied INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN progress_bytes_copied INTEGER NOT NULL DEFAULT 0;
UPDATE batch_user SET
    stat_folders = COALESCE(json_extract(stats, '$.folders'), 0),
    stat_messages_found = COALESCE(json_extract(stats, '$.messages_found'), 0),
    stat_messages_copied = COALESCE(json_extract(stats, '$.messages_copied'), 0),
    stat_messages_matched = COALESCE(json_extract(stats, '$.messages_matched'), 0),
    stat_messages_skipped = COALESCE(json_extract(stats, '$.messages_skipped'), 0),
    stat_messages_failed = COALESCE(json_extract(stats, '$.messages_failed'), 0),
    stat_messages_altered = COALESCE(json_extract(stats, '$.messages_altered'), 0),
    stat_bytes_copied = COALESCE(json_extract(stats, '$.bytes_copied'), 0)
WHERE stats IS NOT NULL AND json_valid(stats);
