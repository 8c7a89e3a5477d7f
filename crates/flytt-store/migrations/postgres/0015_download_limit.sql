-- See migrations/sqlite/0028_download_limit.sql.
ALTER TABLE endpoint ADD COLUMN download_per_day BIGINT;
CREATE TABLE download_window (
    source_key  TEXT PRIMARY KEY,
    started_ms  BIGINT NOT NULL,
    bytes       BIGINT NOT NULL
);
