//! Leases: which runner works on which user, and until when.
//!
//! Several runners (`flytt serve` / `flytt worker` processes, on one or
//! several machines) share one database. A runner registers with an id and
//! renews a heartbeat; it claims a user with a compare-and-set that also
//! checks the endpoints' limits against every live lease, whoever holds it,
//! in one write transaction. A lease lasts until `lease_expires_ms` (the
//! database's clock) and is renewed by the holder's heartbeat; only an
//! expired lease is taken back. A runner records a user's end only while it
//! still holds the lease.

use std::time::Duration;

use sqlx::Row;

use flytt_batch::UserStatus;

use crate::events::kind;
use crate::{Result, Store};

/// The database's clock in milliseconds since 1970 (SQLite), as SQL text
/// (sqlx takes static strings only, against injection).
macro_rules! now_ms {
    () => {
        "{now_ms}"
    };
}

/// A user whose lease expired, or who never had one.
macro_rules! lease_expired {
    () => {
        concat!(
            "(u.lease_runner IS NULL OR u.lease_expires_ms < ",
            now_ms!(),
            ")"
        )
    };
}

/// A runner as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    pub stopped_at_ms: Option<i64>,
    /// Users it holds a live lease on.
    pub users_held: u64,
}

/// An endpoint's limits, as a claim checks them.
#[derive(Clone, Copy, Debug)]
pub struct EndpointLimit<'a> {
    pub endpoint: &'a str,
    pub max_migrations: u32,
    pub max_incremental: u32,
}

/// A claim of one user by one runner.
#[derive(Clone, Debug)]
pub struct Claim<'a> {
    pub user_id: i64,
    pub runner: &'a str,
    /// The status the user must still have.
    pub from: UserStatus,
    /// The running status it gets. The same status: a lease alone,
    /// unlogged, for a staged user's preparation, which succeeds only while
    /// the user is not prepared yet (another runner may have prepared it
    /// since the candidates were read).
    pub to: UserStatus,
    pub lease: Duration,
    /// Whether the sync counts against the incremental limit too (the
    /// users in IncrementalSyncing or Completing fill it).
    pub incremental: bool,
    /// The batch's source and target endpoints.
    pub limits: [EndpointLimit<'a>; 2],
}

/// How a claim ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// An endpoint has no free slot across all runners.
    NoSlot,
    /// Another runner holds it, or its status changed meanwhile.
    Taken,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Registers a runner (or registers it again after a restart).
    pub async fn register_runner(&self, id: &str, host: &str, pid: u32) -> Result<()> {
        sqlx::query(self.sql(concat!(
            "INSERT INTO runner (id, host, pid, started_at_ms, heartbeat_at_ms) \
             VALUES (?, ?, ?, ",
            now_ms!(),
            ", ",
            now_ms!(),
            ") ON CONFLICT (id) DO UPDATE SET \
             heartbeat_at_ms = excluded.heartbeat_at_ms, stopped_at_ms = NULL"
        )))
        .bind(id)
        .bind(host)
        .bind(i64::from(pid))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Renews the runner's heartbeat and its live leases for `lease`;
    /// returns the users it still holds (a lease that expired meanwhile may
    /// have been taken back: that user is not among them).
    pub async fn heartbeat(&self, runner: &str, lease: Duration) -> Result<Vec<i64>> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(self.sql(concat!(
            "UPDATE runner SET heartbeat_at_ms = ",
            now_ms!(),
            " WHERE id = ?"
        )))
        .bind(runner)
        .execute(&mut *tx)
        .await?;
        sqlx::query(self.sql(concat!(
            "UPDATE batch_user SET lease_expires_ms = ",
            now_ms!(),
            " + ? \
             WHERE lease_runner = ? AND lease_expires_ms >= ",
            now_ms!(),
            ""
        )))
        .bind(millis(lease))
        .bind(runner)
        .execute(&mut *tx)
        .await?;
        let held = sqlx::query(self.sql(concat!(
            "SELECT id FROM batch_user WHERE lease_runner = ? AND lease_expires_ms >= ",
            now_ms!(),
            ""
        )))
        .bind(runner)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| row.try_get("id"))
        .collect::<std::result::Result<Vec<i64>, _>>()?;
        tx.commit().await?;
        Ok(held)
    }

    /// Ends `runner`'s lease on a user without changing its status (the
    /// end of a preparation).
    pub async fn release_user(&self, user_id: i64, runner: &str) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE batch_user SET lease_runner = NULL, lease_expires_ms = NULL \
             WHERE id = ? AND lease_runner = ?",
        ))
        .bind(user_id)
        .bind(runner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a runner stopped (a clean stop: its leases were released).
    pub async fn stop_runner(&self, runner: &str) -> Result<()> {
        sqlx::query(self.sql(concat!(
            "UPDATE runner SET stopped_at_ms = ",
            now_ms!(),
            " WHERE id = ?"
        )))
        .bind(runner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every runner that has not stopped, with the users it holds.
    pub async fn runners(&self) -> Result<Vec<RunnerInfo>> {
        let rows = sqlx::query(self.sql(concat!(
            "SELECT r.id, r.host, r.pid, r.started_at_ms, r.heartbeat_at_ms, r.stopped_at_ms, \
             (SELECT COUNT(*) FROM batch_user u WHERE u.lease_runner = r.id \
              AND u.lease_expires_ms >= ",
            now_ms!(),
            ") AS held \
             FROM runner r WHERE r.stopped_at_ms IS NULL ORDER BY r.started_at_ms"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(RunnerInfo {
                    id: row.try_get("id")?,
                    host: row.try_get("host")?,
                    pid: crate::to_u32("pid", row.try_get("pid")?)?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    heartbeat_at_ms: row.try_get("heartbeat_at_ms")?,
                    stopped_at_ms: row.try_get("stopped_at_ms")?,
                    users_held: row.try_get::<i64, _>("held")?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Claims a user: in one write transaction, checks that both endpoints
    /// have a free slot counting every live lease (whoever holds it), then
    /// sets the running status and the lease only if the user still has
    /// `from` and no live lease. The change is logged.
    pub async fn claim_user(&self, claim: &Claim<'_>) -> Result<ClaimOutcome> {
        let mut tx = self.write_transaction().await?;
        // Claims on the same endpoints take their turns: on PostgreSQL the
        // endpoints' rows are locked (in name order, against deadlocks)
        // until this claim commits; SQLite's write lock does the same.
        sqlx::query(
            self.sql(
                "SELECT name FROM endpoint WHERE name = ? OR name = ? ORDER BY name{for_update}",
            ),
        )
        .bind(claim.limits[0].endpoint)
        .bind(claim.limits[1].endpoint)
        .fetch_all(&mut *tx)
        .await?;
        // A user whose row another transaction holds right now (a finish,
        // a take-back) is skipped this tick rather than waited for.
        let free = sqlx::query(self.sql("SELECT id FROM batch_user WHERE id = ?{skip_locked}"))
            .bind(claim.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if free.is_none() {
            return Ok(ClaimOutcome::Taken);
        }
        for limit in &claim.limits {
            let row = sqlx::query(self.sql(concat!(
                "SELECT COUNT(*) AS all_live, \
                 COALESCE(SUM(CASE WHEN u.status IN ('IncrementalSyncing', 'Completing') THEN 1 ELSE 0 END), 0) AS incremental \
                 FROM batch_user u JOIN batch b ON b.id = u.batch_id \
                 WHERE u.lease_runner IS NOT NULL AND u.lease_expires_ms >= ", now_ms!(), " \
                 AND (b.source_endpoint = ?1 OR b.target_endpoint = ?1)"
            )))
            .bind(limit.endpoint)
            .fetch_one(&mut *tx)
            .await?;
            let all: i64 = row.try_get("all_live")?;
            let incremental: i64 = row.try_get("incremental")?;
            if all >= i64::from(limit.max_migrations)
                || (claim.incremental && incremental >= i64::from(limit.max_incremental))
            {
                return Ok(ClaimOutcome::NoSlot);
            }
        }
        let claimed = sqlx::query(self.sql(concat!(
            "UPDATE batch_user SET status = ?1, error = NULL, lease_runner = ?2, \
             lease_expires_ms = ", now_ms!(), " + ?3, \
             started_at = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing') THEN {now} ELSE started_at END, \
             first_started_at = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing') THEN COALESCE(first_started_at, {now}) ELSE first_started_at END \
             WHERE id = ?4 AND status = ?5 \
             AND (lease_runner IS NULL OR lease_expires_ms < ", now_ms!(), ") \
             AND (?5 <> ?1 OR validated_at IS NULL)"
        )))
        .bind(claim.to.as_str())
        .bind(claim.runner)
        .bind(millis(claim.lease))
        .bind(claim.user_id)
        .bind(claim.from.as_str())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(ClaimOutcome::Taken);
        }
        if claim.from == claim.to {
            // A lease without a change of status (a staged user's
            // preparation): nothing to log.
            tx.commit().await?;
            return Ok(ClaimOutcome::Claimed);
        }
        let row = sqlx::query(self.sql(
            "SELECT b.name AS batch, u.email FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE u.id = ?",
        ))
        .bind(claim.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let batch: String = row.try_get("batch")?;
        let email: String = row.try_get("email")?;
        let message = format!("{} -> {} (runner {})", claim.from, claim.to, claim.runner);
        self.record(
            &mut tx,
            &batch,
            Some(&email),
            kind::USER_STATUS,
            Some(claim.to.as_str()),
            Some(&message),
        )
        .await?;
        tx.commit().await?;
        Ok(ClaimOutcome::Claimed)
    }

    /// Live leases per endpoint, whoever holds them: (all, incremental),
    /// where the users in IncrementalSyncing or Completing are incremental.
    pub async fn live_leases(&self) -> Result<std::collections::HashMap<String, (u32, u32)>> {
        let rows = sqlx::query(self.sql(concat!(
            "SELECT e.name AS endpoint, COUNT(*) AS all_live, \
             COALESCE(SUM(CASE WHEN u.status IN ('IncrementalSyncing', 'Completing') THEN 1 ELSE 0 END), 0) AS incremental \
             FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             JOIN endpoint e ON e.name = b.source_endpoint OR e.name = b.target_endpoint \
             WHERE u.lease_runner IS NOT NULL AND u.lease_expires_ms >= ",
            now_ms!(),
            " GROUP BY e.name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let endpoint: String = row.try_get("endpoint")?;
                let all = crate::to_u32("all_live", row.try_get("all_live")?)?;
                let incremental = crate::to_u32("incremental", row.try_get("incremental")?)?;
                Ok((endpoint, (all, incremental)))
            })
            .collect()
    }

    /// Ends the leases of a runner known to be dead (a process of this host
    /// that is gone), so its users need not wait for the leases to expire.
    pub async fn expire_runner(&self, runner: &str) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        sqlx::query(self.sql("UPDATE batch_user SET lease_expires_ms = 0 WHERE lease_runner = ?"))
            .bind(runner)
            .execute(&mut *tx)
            .await?;
        sqlx::query(self.sql(concat!(
            "UPDATE runner SET stopped_at_ms = ",
            now_ms!(),
            " WHERE id = ?"
        )))
        .bind(runner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Users left in `running` whose lease expired (or who never had one:
    /// a runner of an older version) go back to `resume`; returns how many.
    pub async fn take_back_expired(&self, running: UserStatus, resume: UserStatus) -> Result<u64> {
        let (running, resume) = (running.as_str(), resume.as_str());
        // Every runner asks every tick: a read first, so that the write lock
        // is taken only when there is something to take back.
        let any = sqlx::query(self.sql(concat!(
            "SELECT 1 FROM batch_user u WHERE u.status = ? AND ",
            lease_expired!(),
            " LIMIT 1"
        )))
        .bind(running)
        .fetch_optional(&self.pool)
        .await?;
        if any.is_none() {
            return Ok(0);
        }
        let mut tx = self.write_transaction().await?;
        // One statement decides which leases expired (the row locks of
        // PostgreSQL make a concurrent renewal wait, then find no lease);
        // the log names exactly those users.
        let taken = sqlx::query(self.sql(concat!(
            "UPDATE batch_user SET status = ?1, lease_runner = NULL, lease_expires_ms = NULL \
             WHERE id IN (SELECT u.id FROM batch_user u WHERE u.status = ?2 AND ",
            lease_expired!(),
            ") RETURNING batch_id, email, csv_line"
        )))
        .bind(resume)
        .bind(running)
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = taken
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("batch_id")?,
                    row.try_get::<i64, _>("csv_line")?,
                    row.try_get::<String, _>("email")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        taken.sort();
        let message = format!("{running} -> {resume}: the lease expired");
        for (batch_id, _, email) in &taken {
            let batch: String = sqlx::query(self.sql("SELECT name FROM batch WHERE id = ?"))
                .bind(batch_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("name")?;
            self.record(
                &mut tx,
                &batch,
                Some(email),
                kind::USER_STATUS,
                Some(resume),
                Some(&message),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(taken.len() as u64)
    }
}
