-- See migrations/sqlite/0027_analysis.sql.
CREATE TABLE batch_analysis (
    batch_id      BIGINT PRIMARY KEY REFERENCES batch(id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    runner_id     TEXT,
    heartbeat_ms  BIGINT,
    probe         TEXT,
    concurrency   BIGINT NOT NULL DEFAULT 0,
    error         TEXT
);

CREATE TABLE user_analysis (
    user_id   BIGINT PRIMARY KEY REFERENCES batch_user(id) ON DELETE CASCADE,
    batch_id  BIGINT NOT NULL REFERENCES batch(id) ON DELETE CASCADE,
    result    TEXT NOT NULL
);
CREATE INDEX user_analysis_batch ON user_analysis(batch_id);
