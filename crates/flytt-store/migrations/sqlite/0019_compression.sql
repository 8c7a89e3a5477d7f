-- Whether sessions to the endpoint are compressed (COMPRESS=DEFLATE):
-- auto (where the server is remote), always or never.
ALTER TABLE endpoint ADD COLUMN compression TEXT NOT NULL DEFAULT 'auto';
