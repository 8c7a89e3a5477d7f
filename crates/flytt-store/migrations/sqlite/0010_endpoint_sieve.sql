-- Where the endpoint's ManageSieve server is (sieve://HOST[:PORT]); with
-- one on both sides, a user's Sieve scripts move with the mailbox.
ALTER TABLE endpoint ADD COLUMN sieve_url TEXT;
