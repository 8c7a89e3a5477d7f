-- Analyze: a batch's last analysis (its state, the probe's rate, the
-- concurrency it assumed) and each user's result (JSON: flytt_batch's
-- UserAnalysis). The runner that works on an analysis beats heartbeat_ms;
-- one whose heartbeat stopped is taken over.
CREATE TABLE batch_analysis (
    batch_id      INTEGER PRIMARY KEY REFERENCES batch(id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    runner_id     TEXT,
    heartbeat_ms  INTEGER,
    probe         TEXT,
    concurrency   INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);

CREATE TABLE user_analysis (
    user_id   INTEGER PRIMARY KEY REFERENCES batch_user(id) ON DELETE CASCADE,
    batch_id  INTEGER NOT NULL REFERENCES batch(id) ON DELETE CASCADE,
    result    TEXT NOT NULL
);
CREATE INDEX user_analysis_batch ON user_analysis(batch_id);
