-- See migrations/sqlite/0024_dav_sync_token.sql.
CREATE TABLE dav_sync_token (
    pair_id     BIGINT NOT NULL REFERENCES mailbox_pair(id) ON DELETE CASCADE,
    collection  TEXT NOT NULL,
    token       TEXT NOT NULL,
    PRIMARY KEY (pair_id, collection)
);
