-- Several runners (processes, machines) share one database. Each has a row
-- with its heartbeat; a user being synced is leased to one runner until
-- lease_expires_ms (the database's clock, ms since 1970), renewed by the
-- heartbeat. Only an expired lease is taken back.
CREATE TABLE runner (
    id              TEXT PRIMARY KEY,
    host            TEXT NOT NULL,
    pid             INTEGER NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL,
    stopped_at_ms   INTEGER
);
ALTER TABLE batch_user ADD COLUMN lease_runner TEXT;
ALTER TABLE batch_user ADD COLUMN lease_expires_ms INTEGER;
CREATE INDEX batch_user_lease ON batch_user (lease_runner);
CREATE INDEX batch_user_status ON batch_user (status);
