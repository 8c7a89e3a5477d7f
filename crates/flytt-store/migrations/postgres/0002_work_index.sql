-- See migrations/sqlite/0015_work_index.sql.
CREATE INDEX batch_user_work ON batch_user (batch_id, status, csv_line);
