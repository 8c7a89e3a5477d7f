-- Connection pairs (one session to each side) a migration of one user may
-- open on this endpoint: folders are copied in parallel over them.
ALTER TABLE endpoint ADD COLUMN connections_per_user INTEGER NOT NULL DEFAULT 8;
