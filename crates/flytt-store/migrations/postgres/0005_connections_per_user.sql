-- See migrations/sqlite/0018_connections_per_user.sql.
ALTER TABLE endpoint ADD COLUMN connections_per_user BIGINT NOT NULL DEFAULT 8;
