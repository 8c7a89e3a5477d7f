-- See migrations/sqlite/0025_oauth.sql.
ALTER TABLE endpoint ADD COLUMN oauth TEXT;
ALTER TABLE batch_user ADD COLUMN refresh_token_sealed TEXT;
