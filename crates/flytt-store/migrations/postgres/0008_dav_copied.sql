-- See migrations/sqlite/0021_dav_copied.sql.
CREATE TABLE dav_copied (
    pair_id      BIGINT NOT NULL REFERENCES mailbox_pair(id) ON DELETE CASCADE,
    source_href  TEXT NOT NULL,
    source_etag  TEXT,
    target_href  TEXT NOT NULL,
    target_etag  TEXT,
    kind         TEXT NOT NULL,
    PRIMARY KEY (pair_id, source_href)
);
