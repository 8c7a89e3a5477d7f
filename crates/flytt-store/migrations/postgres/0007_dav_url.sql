-- See migrations/sqlite/0020_dav_url.sql.
ALTER TABLE endpoint ADD COLUMN dav_url TEXT;
