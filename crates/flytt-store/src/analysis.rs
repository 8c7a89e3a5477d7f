//! A batch's analysis (`flytt batch analyze`): its state, and each user's
//! result as it comes. One analysis per batch at a time: asking for a new
//! one clears the last; a runner claims a requested one with a conditional
//! update (so of several runners one wins) and beats a heartbeat while it
//! works, and an analysis whose heartbeat stopped (its runner died) may be
//! claimed again.

use flytt_batch::{AnalysisRun, AnalysisState, BatchAnalysis, ProbeRate, UserAnalysis};
use sqlx::Row;

use crate::totals::{named, optional_json, parse, to_json};
use crate::{Error, Result, Store};

/// An analysis is taken over when its runner has not beaten its heartbeat
/// for this long (it beats every few seconds while it works).
pub const ANALYSIS_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Asks for an analysis of `batch`; a runner takes it up. `false`: one
    /// is running already (its runner alive), and nothing changed.
    pub async fn request_analysis(&self, batch: &str) -> Result<bool> {
        self.reset_analysis(batch, AnalysisState::Requested, None)
            .await
    }

    /// Starts an analysis of `batch` in this process (the CLI), as if
    /// requested and claimed at once. `false`: one is running elsewhere.
    pub async fn begin_analysis(&self, batch: &str, runner: &str) -> Result<bool> {
        self.reset_analysis(batch, AnalysisState::Running, Some(runner))
            .await
    }

    async fn reset_analysis(
        &self,
        batch: &str,
        state: AnalysisState,
        runner: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.write_transaction().await?;
        let batch_id: i64 = sqlx::query(self.sql("SELECT id FROM batch WHERE name = ?"))
            .bind(batch)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NoSuchBatch(batch.to_string()))?
            .try_get("id")?;
        let running = sqlx::query(self.sql(
            "SELECT 1 AS running FROM batch_analysis WHERE batch_id = ? AND state = 'Running' \
             AND heartbeat_ms >= {now_ms} - ?{for_update}",
        ))
        .bind(batch_id)
        .bind(millis(ANALYSIS_ABANDONED_AFTER))
        .fetch_optional(&mut *tx)
        .await?;
        if running.is_some() {
            return Ok(false);
        }
        sqlx::query(self.sql("DELETE FROM user_analysis WHERE batch_id = ?"))
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(self.sql(
            "INSERT INTO batch_analysis (batch_id, state, requested_at, started_at, runner_id, heartbeat_ms) \
             VALUES (?1, ?2, {now}, CASE WHEN ?3 IS NULL THEN NULL ELSE {now} END, ?3, \
             CASE WHEN ?3 IS NULL THEN NULL ELSE {now_ms} END) \
             ON CONFLICT (batch_id) DO UPDATE SET state = excluded.state, \
             requested_at = excluded.requested_at, started_at = excluded.started_at, \
             finished_at = NULL, runner_id = excluded.runner_id, \
             heartbeat_ms = excluded.heartbeat_ms, probe = NULL, concurrency = 0, error = NULL",
        ))
        .bind(batch_id)
        .bind(state.as_str())
        .bind(runner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce_change();
        Ok(true)
    }

    /// Claims for `runner` the oldest analysis asked for, or one whose
    /// runner has not beaten its heartbeat for `abandoned_after`
    /// (`ANALYSIS_ABANDONED_AFTER`): its batch's name, or `None`.
    pub async fn claim_analysis(
        &self,
        runner: &str,
        abandoned_after: std::time::Duration,
    ) -> Result<Option<String>> {
        let rows = sqlx::query(self.sql(
            "SELECT a.batch_id, b.name FROM batch_analysis a JOIN batch b ON b.id = a.batch_id \
             WHERE (a.state = 'Requested' OR (a.state = 'Running' AND a.heartbeat_ms < {now_ms} - ?1)) \
             ORDER BY a.requested_at LIMIT 1",
        ))
        .bind(millis(abandoned_after))
        .fetch_all(&self.pool)
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let batch_id: i64 = row.try_get("batch_id")?;
        let name: String = row.try_get("name")?;
        let done = sqlx::query(self.sql(
            "UPDATE batch_analysis SET state = 'Running', started_at = {now}, runner_id = ?2, \
             heartbeat_ms = {now_ms} WHERE batch_id = ?1 \
             AND (state = 'Requested' OR (state = 'Running' AND heartbeat_ms < {now_ms} - ?3))",
        ))
        .bind(batch_id)
        .bind(runner)
        .bind(millis(abandoned_after))
        .execute(&self.pool)
        .await?;
        Ok((done.rows_affected() == 1).then_some(name))
    }

    /// Beats the heartbeat of `runner`'s analysis of `batch`: `false` when
    /// it is no longer the runner's (taken over, or asked for anew), and the
    /// runner stops.
    pub async fn analysis_heartbeat(&self, batch: &str, runner: &str) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE batch_analysis SET heartbeat_ms = {now_ms} \
             WHERE batch_id = (SELECT id FROM batch WHERE name = ?1) \
             AND state = 'Running' AND runner_id = ?2",
        ))
        .bind(batch)
        .bind(runner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps one user's result (replacing an earlier one of the same
    /// analysis), if the analysis is still `runner`'s.
    pub async fn save_user_analysis(
        &self,
        batch: &str,
        runner: &str,
        user_id: i64,
        result: &UserAnalysis,
    ) -> Result<bool> {
        if !self.analysis_heartbeat(batch, runner).await? {
            return Ok(false);
        }
        sqlx::query(self.sql(
            "INSERT INTO user_analysis (user_id, batch_id, result) \
             SELECT ?1, batch_id, ?2 FROM batch_user WHERE id = ?1 \
             ON CONFLICT (user_id) DO UPDATE SET result = excluded.result",
        ))
        .bind(user_id)
        .bind(to_json("user_analysis.result", result)?)
        .execute(&self.pool)
        .await?;
        self.announce_change();
        Ok(true)
    }

    /// Ends `runner`'s analysis of `batch`: done, with the probe's rate and
    /// the concurrency the estimate assumes, or failed with the reason.
    pub async fn finish_analysis(
        &self,
        batch: &str,
        runner: &str,
        outcome: std::result::Result<Option<ProbeRate>, String>,
        concurrency: u32,
    ) -> Result<()> {
        let (state, probe, error) = match outcome {
            Ok(probe) => (AnalysisState::Done, probe, None),
            Err(reason) => (AnalysisState::Failed, None, Some(reason)),
        };
        let probe = probe
            .map(|p| to_json("batch_analysis.probe", &p))
            .transpose()?;
        sqlx::query(self.sql(
            "UPDATE batch_analysis SET state = ?3, finished_at = {now}, probe = ?4, \
             concurrency = ?5, error = ?6 \
             WHERE batch_id = (SELECT id FROM batch WHERE name = ?1) \
             AND state = 'Running' AND runner_id = ?2",
        ))
        .bind(batch)
        .bind(runner)
        .bind(state.as_str())
        .bind(probe)
        .bind(i64::from(concurrency))
        .bind(error)
        .execute(&self.pool)
        .await?;
        self.announce_change();
        Ok(())
    }

    /// The batch's last analysis with its users' results so far (in CSV
    /// order); `None` when none was asked for.
    pub async fn analysis(&self, batch: &str) -> Result<Option<BatchAnalysis>> {
        let row = sqlx::query(self.sql(
            "SELECT a.state, a.requested_at, a.started_at, a.finished_at, a.error, a.probe, \
             a.concurrency, (SELECT COUNT(*) FROM batch_user u WHERE u.batch_id = b.id) AS users \
             FROM batch b LEFT JOIN batch_analysis a ON a.batch_id = b.id WHERE b.name = ?",
        ))
        .bind(batch)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NoSuchBatch(batch.to_string()))?;
        if row.try_get::<Option<String>, _>("state")?.is_none() {
            return Ok(None);
        }
        let run = AnalysisRun {
            state: named(&row, "state")?,
            requested_at: row.try_get("requested_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            error: row.try_get("error")?,
            probe: optional_json(&row, "probe")?,
            concurrency: crate::to_u32("concurrency", row.try_get("concurrency")?)?,
        };
        let users = crate::totals::count(row.try_get("users")?);
        let results = sqlx::query(self.sql(
            "SELECT r.result FROM user_analysis r JOIN batch_user u ON u.id = r.user_id \
             JOIN batch b ON b.id = r.batch_id WHERE b.name = ? ORDER BY u.csv_line",
        ))
        .bind(batch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| parse("user_analysis.result", &row.try_get::<String, _>("result")?))
        .collect::<Result<Vec<UserAnalysis>>>()?;
        Ok(Some(BatchAnalysis::new(
            batch.to_string(),
            run,
            users,
            results,
        )))
    }
}
