-- What an administrator asked of a user whose sync was running ('Stop',
-- 'Remove': flytt_batch::UserRequest). The runner ends the sync at its
-- next safe point; then the request is carried out and cleared. No
-- sync starts for a user with a request.
ALTER TABLE batch_user ADD COLUMN requested TEXT;
