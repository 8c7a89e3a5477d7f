-- The target folder's UIDNEXT when the APPENDs that may be in flight began.
-- After a crash, target messages from this UID on are the dead run's
-- copies: they are matched to the source by INTERNALDATE and Message-ID,
-- which a target that rewrites messages on APPEND keeps, where the bytes'
-- hash would no longer match.
ALTER TABLE folder_state ADD COLUMN appending_from_uid INTEGER;
