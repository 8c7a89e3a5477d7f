-- Migration batches and their users (SPEC §3). Parameters and per-user
-- overrides are JSON written by flytt-batch; the store does not read them.
CREATE TABLE batch (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    batch_type       TEXT NOT NULL,
    source_endpoint  TEXT NOT NULL REFERENCES endpoint(name),
    target_endpoint  TEXT NOT NULL REFERENCES endpoint(name),
    status           TEXT NOT NULL DEFAULT 'Created',
    parameters       TEXT NOT NULL,
    created_at       TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE batch_user (
    id                      INTEGER PRIMARY KEY,
    batch_id                INTEGER NOT NULL REFERENCES batch(id) ON DELETE CASCADE,
    email                   TEXT NOT NULL,
    csv_line                INTEGER NOT NULL,
    overrides               TEXT NOT NULL,
    user_name               TEXT,
    -- Sealed by flytt-secrets, bound to batch, user and column.
    password_sealed         TEXT,
    target_user_name        TEXT,
    target_password_sealed  TEXT,
    status                  TEXT NOT NULL DEFAULT 'Queued',
    error                   TEXT,
    UNIQUE (batch_id, email)
);
CREATE INDEX batch_user_email ON batch_user (email COLLATE NOCASE);
