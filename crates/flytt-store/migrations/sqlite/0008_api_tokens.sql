-- Bearer tokens for the HTTP API. Only a SHA-256 of each token is kept:
-- tokens are 256 random bits, so a plain hash cannot be turned back, and
-- a stolen database opens nothing.
CREATE TABLE api_token (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    sha256        TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_used_at  TEXT
);
