-- The scheduler asks for one batch's users in one status, in CSV order,
-- a few at a time (Store::startable_users); batch pages count users per
-- status.
CREATE INDEX batch_user_work ON batch_user (batch_id, status, csv_line);
