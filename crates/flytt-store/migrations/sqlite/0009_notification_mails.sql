-- When each of a batch's notification mails was claimed for sending (a
-- process claims one before sending it, so several processes never send
-- the same mail; a failed send releases the claim).
ALTER TABLE batch ADD COLUMN status_mail_at TEXT;
ALTER TABLE batch ADD COLUMN initial_sync_mail_at TEXT;
ALTER TABLE batch ADD COLUMN completion_mail_at TEXT;

-- When a user was first known good: logged in on both sides with its
-- folders listed (an IMAP batch's validation). The status mail waits for
-- every user to be validated or failed.
ALTER TABLE batch_user ADD COLUMN validated_at TEXT;
