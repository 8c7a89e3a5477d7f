-- See migrations/sqlite/0017_backoff.sql.
ALTER TABLE batch_user
    ADD COLUMN retry_at_ms BIGINT,
    ADD COLUMN retries BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stalled_since_ms BIGINT,
    ADD COLUMN waiting TEXT;
ALTER TABLE endpoint
    ADD COLUMN effective_migrations BIGINT,
    ADD COLUMN limit_changed_ms BIGINT;
