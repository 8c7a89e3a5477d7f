-- Whether the pass that recorded a folder's marks (highest_modseq) also
-- carried every deletion up to them over to the target (deletion sync):
-- then the next pass may learn the deletions since from QRESYNC's
-- VANISHED instead of comparing every UID.
ALTER TABLE folder_state ADD COLUMN deletions_synced INTEGER NOT NULL DEFAULT 0;
