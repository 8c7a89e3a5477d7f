-- The event log: every change of a batch's or a user's status, with the
-- reason when there is one, and the administrator's actions. It outlives
-- the batches it speaks of (an audit trail), so it names them instead of
-- referencing them. The HTTP API streams it by id.
CREATE TABLE event (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    batch    TEXT NOT NULL,
    email    TEXT,
    kind     TEXT NOT NULL,
    status   TEXT,
    message  TEXT
);
CREATE INDEX event_batch ON event (batch, id);

-- When a batch first started, finished its initial syncs and completed:
-- for throughput, and for the notification mails' triggers.
ALTER TABLE batch ADD COLUMN started_at TEXT;
ALTER TABLE batch ADD COLUMN initial_sync_done_at TEXT;
ALTER TABLE batch ADD COLUMN completed_at TEXT;
