-- Which source DAV resources (contacts, calendar items) are on the target,
-- per pair of DAV accounts (mailbox_pair with `dav:` keys): the source's
-- ETag when copied (a different one later means it changed) and the
-- target's name and ETag.
CREATE TABLE dav_copied (
    pair_id      INTEGER NOT NULL REFERENCES mailbox_pair(id) ON DELETE CASCADE,
    source_href  TEXT NOT NULL,
    source_etag  TEXT,
    target_href  TEXT NOT NULL,
    target_etag  TEXT,
    kind         TEXT NOT NULL,
    PRIMARY KEY (pair_id, source_href)
);
