-- A busy or throttling server (issue 11). A user whose sync met a transient
-- error gives its slot back and waits: `retry_at_ms` (the database's clock)
-- is when it may start again, `waiting` says why, `retries` counts the
-- tries since it last made progress (for the exponential backoff) and
-- `stalled_since_ms` is when that was (it fails after a time without
-- progress). An endpoint that refused or throttled has an effective limit
-- of concurrent migrations below its configured one, lowered at most once
-- per cooldown (`limit_changed_ms`) and raised again by good syncs.
ALTER TABLE batch_user ADD COLUMN retry_at_ms INTEGER;
ALTER TABLE batch_user ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batch_user ADD COLUMN stalled_since_ms INTEGER;
ALTER TABLE batch_user ADD COLUMN waiting TEXT;
ALTER TABLE endpoint ADD COLUMN effective_migrations INTEGER;
ALTER TABLE endpoint ADD COLUMN limit_changed_ms INTEGER;
