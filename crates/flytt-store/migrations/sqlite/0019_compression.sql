-- Whether sessions to the endpoint are compressed (COMPRESS=DEFLATE):
-- never (the default) or always.
ALTER TABLE endpoint ADD COLUMN compression TEXT NOT NULL DEFAULT 'never';
