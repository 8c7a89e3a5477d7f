-- See migrations/sqlite/0019_compression.sql.
ALTER TABLE endpoint ADD COLUMN compression TEXT NOT NULL DEFAULT 'never';
