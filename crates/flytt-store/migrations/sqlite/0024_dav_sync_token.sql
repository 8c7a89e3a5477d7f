-- The sync-collection token (RFC 6578) of each source DAV collection, per
-- pair of DAV accounts: the next sync asks for the changes since it instead
-- of listing the whole collection. Written only after the collection's
-- changes are copied, so a killed run asks for them again.
CREATE TABLE dav_sync_token (
    pair_id     INTEGER NOT NULL REFERENCES mailbox_pair(id) ON DELETE CASCADE,
    collection  TEXT NOT NULL,
    token       TEXT NOT NULL,
    PRIMARY KEY (pair_id, collection)
);
