-- Certificates the endpoint's servers are trusted by, as pinned SHA-256
-- fingerprints (`sha256:HEX`), separated by spaces; empty for none.
ALTER TABLE endpoint ADD COLUMN tls_fingerprints TEXT NOT NULL DEFAULT '';
