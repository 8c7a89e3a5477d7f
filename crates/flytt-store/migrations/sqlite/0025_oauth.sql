-- OAuth logins: an endpoint's OAuth client (JSON: mechanism, token URL,
-- client id, scope, the client secret and service account key sealed),
-- and a user's refresh token from the CSV, sealed like passwords.
ALTER TABLE endpoint ADD COLUMN oauth TEXT;
ALTER TABLE batch_user ADD COLUMN refresh_token_sealed TEXT;
