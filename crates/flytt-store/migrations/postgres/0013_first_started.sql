-- See migrations/sqlite/0026_first_started.sql.
ALTER TABLE batch_user ADD COLUMN first_started_at TEXT;
UPDATE batch_user SET first_started_at = started_at;
