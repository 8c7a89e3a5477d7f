-- Migration endpoints (SPEC §3): a named server connection with its limits.
CREATE TABLE endpoint (
    id                                INTEGER PRIMARY KEY,
    name                              TEXT NOT NULL UNIQUE,
    url                               TEXT NOT NULL,
    allow_plaintext                   INTEGER NOT NULL DEFAULT 0,
    ca_file                           TEXT,
    admin_user                        TEXT,
    -- How the admin opens a user's mailbox: 'master' (LOGIN user*admin) or
    -- 'plain' (AUTHENTICATE PLAIN with the user as authorization identity).
    admin_mode                        TEXT NOT NULL DEFAULT 'master',
    -- Sealed by flytt-secrets, bound to the endpoint's name; never plaintext.
    admin_password_sealed             TEXT,
    max_concurrent_migrations         INTEGER NOT NULL DEFAULT 20,
    max_concurrent_incremental_syncs  INTEGER NOT NULL DEFAULT 10,
    created_at                        TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
