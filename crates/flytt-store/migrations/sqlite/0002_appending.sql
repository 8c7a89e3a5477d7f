-- Set while APPENDs for the folder may be in flight. A run that finds it set
-- knows the previous one died mid-copy: the server may still be committing
-- that run's last commands, so the target folder must settle before it is
-- reconciled.
ALTER TABLE folder_state ADD COLUMN appending INTEGER NOT NULL DEFAULT 0;
