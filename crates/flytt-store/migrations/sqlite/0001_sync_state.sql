-- One row per (source mailbox, target mailbox) pair that flytt has synced.
CREATE TABLE mailbox_pair (
    id          INTEGER PRIMARY KEY,
    source_key  TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    UNIQUE (source_key, target_key)
);

-- Per source folder: where it goes and the epochs the UID map is valid for.
CREATE TABLE folder_state (
    pair_id             INTEGER NOT NULL REFERENCES mailbox_pair(id) ON DELETE CASCADE,
    source_folder       TEXT NOT NULL,
    target_folder       TEXT NOT NULL,
    source_uidvalidity  INTEGER NOT NULL,
    target_uidvalidity  INTEGER NOT NULL,
    -- Source HIGHESTMODSEQ at the end of the last complete pass (CONDSTORE).
    highest_modseq      INTEGER,
    -- Source UIDNEXT at the end of the last complete pass.
    uid_next            INTEGER,
    PRIMARY KEY (pair_id, source_folder)
);

-- Source UID -> target UID, written only after the target confirmed the copy.
-- target_uid is NULL when the target did not say (no UIDPLUS).
CREATE TABLE message_map (
    pair_id        INTEGER NOT NULL,
    source_folder  TEXT NOT NULL,
    source_uid     INTEGER NOT NULL,
    target_uid     INTEGER,
    -- The flags last written to the target, space-separated, sorted.
    flags          TEXT NOT NULL,
    PRIMARY KEY (pair_id, source_folder, source_uid),
    FOREIGN KEY (pair_id, source_folder) REFERENCES folder_state(pair_id, source_folder) ON DELETE CASCADE
);
