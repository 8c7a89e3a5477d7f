//! Batches and their users: statuses, statistics, and what the job runner
//! needs to sync a user. Every status change is also written to the event
//! log, in the same transaction.

use std::collections::HashMap;

use sqlx::Row;

use crate::events::kind;
use flytt_batch::{
    BatchParameters, BatchStatus, BatchType, SyncProgress, UserOverrides, UserStatistics,
    UserStatus,
};

use crate::totals::{self, json, named, optional_json};
use crate::{BatchMail, Endpoint, Error, Result, Store, Totals};

/// A new batch and its users, as `create_batch` stores them.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub name: String,
    pub batch_type: BatchType,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub parameters: BatchParameters,
    pub users: Vec<NewBatchUser>,
}

#[derive(Clone, Debug)]
pub struct NewBatchUser {
    pub email: String,
    pub csv_line: u64,
    pub overrides: UserOverrides,
    pub user_name: Option<String>,
    pub password_sealed: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password_sealed: Option<String>,
    /// The CSV's RefreshToken: the source's OAuth refresh token, sealed.
    pub refresh_token_sealed: Option<String>,
}

/// A batch as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    pub name: String,
    pub batch_type: BatchType,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub status: BatchStatus,
    pub parameters: BatchParameters,
    pub created_at: String,
    /// When the batch first started syncing.
    pub started_at: Option<String>,
    /// When every user first finished the initial sync.
    pub initial_sync_done_at: Option<String>,
    pub completed_at: Option<String>,
    /// Users per status.
    pub user_counts: Vec<(UserStatus, u64)>,
    /// The users' statistics added up.
    pub totals: Totals,
    /// Users neither validated (logged in on both sides, or provisioned)
    /// nor failed.
    pub users_not_validated: u64,
    /// The notification mails claimed (sent, or being sent).
    pub mails_claimed: Vec<BatchMail>,
}

/// A batch as the runner sees it on every tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchState {
    pub name: String,
    pub batch_type: BatchType,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub status: BatchStatus,
    pub parameters: BatchParameters,
    /// Users per status.
    pub user_counts: Vec<(UserStatus, u64)>,
}

impl BatchState {
    /// Users in `status`.
    pub fn count(&self, status: UserStatus) -> u64 {
        count_of(&self.user_counts, status)
    }
}

impl BatchSummary {
    /// Users in `status`.
    pub fn count(&self, status: UserStatus) -> u64 {
        count_of(&self.user_counts, status)
    }
}

fn count_of(counts: &[(UserStatus, u64)], status: UserStatus) -> u64 {
    counts.iter().find(|(s, _)| *s == status).map_or(0, |c| c.1)
}

/// Everything the job runner needs to sync one user (sealed secrets stay
/// sealed until the runner opens them).
#[derive(Clone, Debug)]
pub struct WorkItem {
    pub user_id: i64,
    pub batch: String,
    pub batch_type: BatchType,
    pub batch_status: BatchStatus,
    pub parameters: BatchParameters,
    pub email: String,
    pub overrides: UserOverrides,
    pub user_name: Option<String>,
    pub password_sealed: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password_sealed: Option<String>,
    pub refresh_token_sealed: Option<String>,
    pub status: UserStatus,
    /// Seconds since the last good sync ended, if there was one.
    pub seconds_since_sync: Option<i64>,
    /// Whether the user was validated (or, staged, provisioned) already.
    pub validated: bool,
    /// The statistics recorded so far.
    pub stats: Option<UserStatistics>,
    /// Tries that met a transient error since the user last made progress.
    pub retries: u32,
    /// How long (ms) it has gone without progress, if its last try failed.
    pub stalled_ms: Option<u64>,
    pub source: Endpoint,
    pub target: Endpoint,
}

/// Which users of a batch `Store::startable_users` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startable {
    /// Queued users, for their initial sync (staged: once provisioned).
    Initial,
    /// Queued users of a staged batch that are not provisioned yet.
    Preparation,
    /// Synced users whose last sync ended at least this long ago.
    Incremental { interval_secs: u64 },
    /// Synced or Queued users, for the final sync before completion.
    Final,
    /// Synced users asked to complete before their batch (`user complete`).
    CompleteAsked,
}

/// Which users `Store::find_users` returns: all filters apply together.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserFilter<'a> {
    pub batch: Option<&'a str>,
    pub status: Option<UserStatus>,
    /// Part of the address, any case.
    pub search: Option<&'a str>,
    /// The whole address, any case.
    pub email: Option<&'a str>,
    /// Only users after this CSV line (a page's cursor, within one batch).
    pub after_line: Option<u64>,
    /// At most this many; none: all.
    pub limit: Option<u32>,
}

/// A user of a batch, without secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchUser {
    pub batch: String,
    pub email: String,
    pub csv_line: u64,
    pub overrides: UserOverrides,
    pub user_name: Option<String>,
    pub status: UserStatus,
    pub error: Option<String>,
    /// When the current or last sync started.
    pub started_at: Option<String>,
    /// When the user's first sync started (kept by later syncs).
    pub first_started_at: Option<String>,
    /// When the user was first known good (logged in on both sides).
    pub validated_at: Option<String>,
    pub last_synced_at: Option<String>,
    /// The statistics of its syncs.
    pub stats: Option<UserStatistics>,
    /// What a running sync is doing (written by the runner).
    pub progress: Option<SyncProgress>,
    /// The runner holding the user's lease while it syncs.
    pub runner: Option<String>,
    /// Why and how much longer the user waits before its next try, after a
    /// busy or lost server.
    pub waiting: Option<Waiting>,
    /// What the administrator asked of its running sync (stop, removal),
    /// not yet carried out.
    pub requested: Option<flytt_batch::UserRequest>,
}

/// A user waiting out a busy, throttling or lost server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// What the last try met ("source refused the connection: …").
    pub reason: String,
    /// Seconds until the next try may start (0: due now, waiting for a
    /// slot).
    pub seconds_left: u64,
}

/// A sync that met a transient error gives the user back to wait:
/// see `Store::postpone_user`.
#[derive(Clone, Copy, Debug)]
pub struct Postponement<'a> {
    /// How long until it may start again.
    pub wait: std::time::Duration,
    /// Why it waits, for `user show`, the API and the dashboard.
    pub reason: &'a str,
    /// Whether the sync copied anything before the error: the backoff and
    /// the time without progress start over.
    pub progressed: bool,
}

/// The columns of a new user, in the order `bind_user` binds them.
macro_rules! insert_users {
    () => {
        "INSERT INTO batch_user (batch_id, email, csv_line, overrides, user_name, \
         password_sealed, target_user_name, target_password_sealed, refresh_token_sealed)"
    };
}

fn bind_user<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    batch_id: i64,
    user: &'q NewBatchUser,
) -> Result<sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>> {
    Ok(query
        .bind(batch_id)
        .bind(&user.email)
        .bind(totals::db(user.csv_line))
        .bind(totals::to_json("overrides", &user.overrides)?)
        .bind(&user.user_name)
        .bind(&user.password_sealed)
        .bind(&user.target_user_name)
        .bind(&user.target_password_sealed)
        .bind(&user.refresh_token_sealed))
}

/// The query of work items of batch `?1` that meet a condition, in CSV
/// order, at most `?2` (no limit where it is NULL).
macro_rules! select_work_items {
    ($condition:expr) => {
        concat!(
            "SELECT u.id, b.name AS batch, b.batch_type, b.status AS batch_status, b.parameters, u.email, \
             u.overrides, u.user_name, u.password_sealed, u.target_user_name, u.target_password_sealed, \
             u.refresh_token_sealed, \
             u.status, u.stats, u.validated_at, {seconds_since_last_sync} AS since, \
             u.retries, {now_ms} - u.stalled_since_ms AS stalled_ms, \
             b.source_endpoint, b.target_endpoint \
             FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE b.name = ?1 AND ",
            $condition,
            " ORDER BY u.csv_line LIMIT COALESCE(?2, {no_limit})"
        )
    };
}

impl Store {
    async fn insert_users(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        batch_id: i64,
        users: &[NewBatchUser],
    ) -> Result<()> {
        // Many rows per statement: a batch of 50,000 users is 100 round trips
        // to a database server, not 50,000.
        const ROWS: usize = 500;
        const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
        static MANY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
        let many = MANY.get_or_init(|| {
            let rows = vec![ROW; ROWS].join(", ");
            // Built once, kept for the process (sqlx takes static SQL).
            Box::leak(format!("{} VALUES {rows}", insert_users!()).into_boxed_str())
        });
        let mut chunks = users.chunks_exact(ROWS);
        for chunk in chunks.by_ref() {
            let mut query = sqlx::query(self.sql(many));
            for user in chunk {
                query = bind_user(query, batch_id, user)?;
            }
            query.execute(&mut **tx).await?;
        }
        for user in chunks.remainder() {
            let one = concat!(insert_users!(), " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
            bind_user(sqlx::query(self.sql(one)), batch_id, user)?
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Stores a batch and its users in one transaction.
    pub async fn create_batch(&self, batch: &NewBatch) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for endpoint in [&batch.source_endpoint, &batch.target_endpoint] {
            let found = sqlx::query(self.sql("SELECT 1 FROM endpoint WHERE name = ?"))
                .bind(endpoint)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(Error::NoSuchEndpoint(endpoint.clone()));
            }
        }
        let inserted = sqlx::query(self.sql(
            "INSERT INTO batch (name, batch_type, source_endpoint, target_endpoint, parameters) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        ))
        .bind(&batch.name)
        .bind(batch.batch_type.name())
        .bind(&batch.source_endpoint)
        .bind(&batch.target_endpoint)
        .bind(totals::to_json("parameters", &batch.parameters)?)
        .fetch_one(&mut *tx)
        .await;
        let batch_id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::BatchExists(batch.name.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        self.insert_users(&mut tx, batch_id, &batch.users).await?;
        let message = format!(
            "{} batch from {} to {} with {} users",
            batch.batch_type.name(),
            batch.source_endpoint,
            batch.target_endpoint,
            batch.users.len()
        );
        self.record(
            &mut tx,
            &batch.name,
            None,
            kind::BATCH_CREATED,
            Some("Created"),
            Some(&message),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds users to an existing batch, in one transaction (status Queued).
    pub async fn add_batch_users(&self, batch: &str, users: &[NewBatchUser]) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(self.sql("SELECT id FROM batch WHERE name = ?"))
            .bind(batch)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(Error::NoSuchBatch(batch.to_string()));
        };
        let batch_id: i64 = row.try_get("id")?;
        self.insert_users(&mut tx, batch_id, users).await?;
        let message = format!("{} users added", users.len());
        self.record(
            &mut tx,
            batch,
            None,
            kind::USERS_ADDED,
            None,
            Some(&message),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every user in a batch that is not completed: (email, batch name).
    pub async fn active_users(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(self.sql(
            "SELECT u.email, b.name FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE b.status NOT IN ('Completed', 'CompletedWithErrors')",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("email")?, row.try_get("name")?)))
            .collect()
    }

    /// Every batch with what the runner decides by: its status,
    /// parameters and users per status (counted from an index alone; see
    /// `batches` for the statistics too).
    pub async fn batch_states(&self) -> Result<Vec<BatchState>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, name, batch_type, source_endpoint, target_endpoint, status, parameters \
             FROM batch ORDER BY name",
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut batches = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let user_counts = sqlx::query(self.sql(
                "SELECT status, COUNT(*) AS n FROM batch_user WHERE batch_id = ? GROUP BY status",
            ))
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((named(r, "status")?, totals::count(r.try_get("n")?))))
            .collect::<Result<Vec<_>>>()?;
            batches.push(BatchState {
                name: row.try_get("name")?,
                batch_type: named(&row, "batch_type")?,
                source_endpoint: row.try_get("source_endpoint")?,
                target_endpoint: row.try_get("target_endpoint")?,
                status: named(&row, "status")?,
                parameters: json(&row, "parameters")?,
                user_counts,
            });
        }
        Ok(batches)
    }

    /// Every batch with its users counted per status and their statistics
    /// added up.
    pub async fn batches(&self) -> Result<Vec<BatchSummary>> {
        let rows = sqlx::query(self.sql(
            "SELECT name, batch_type, source_endpoint, target_endpoint, status, parameters, created_at, \
             started_at, initial_sync_done_at, completed_at, \
             CASE WHEN status_mail_at IS NULL THEN 0 ELSE 1 END AS status_mail, \
             CASE WHEN initial_sync_mail_at IS NULL THEN 0 ELSE 1 END AS initial_sync_mail, \
             CASE WHEN completion_mail_at IS NULL THEN 0 ELSE 1 END AS completion_mail \
             FROM batch ORDER BY name",
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut batches = Vec::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            // Sums are cast back to integers: PostgreSQL sums BIGINTs as
            // NUMERIC.
            let rows = sqlx::query(self.sql(
                "SELECT u.status, COUNT(*) AS n, \
                 CAST(SUM(u.stat_folders) AS BIGINT) AS folders, \
                 CAST(SUM(u.stat_messages_found) AS BIGINT) AS messages_found, \
                 CAST(SUM(u.stat_messages_copied + u.progress_messages_copied) AS BIGINT) AS messages_copied, \
                 CAST(SUM(u.stat_messages_matched) AS BIGINT) AS messages_matched, \
                 CAST(SUM(u.stat_messages_skipped) AS BIGINT) AS messages_skipped, \
                 CAST(SUM(u.stat_messages_failed) AS BIGINT) AS messages_failed, \
                 CAST(SUM(u.stat_messages_altered) AS BIGINT) AS messages_altered, \
                 CAST(SUM(u.stat_bytes_copied + u.progress_bytes_copied) AS BIGINT) AS bytes_copied, \
                 CAST(SUM(u.stat_contacts_found) AS BIGINT) AS contacts_found, \
                 CAST(SUM(u.stat_contacts_copied) AS BIGINT) AS contacts_copied, \
                 CAST(SUM(u.stat_events_found) AS BIGINT) AS events_found, \
                 CAST(SUM(u.stat_events_copied) AS BIGINT) AS events_copied, \
                 CAST(SUM(u.stat_tasks_found) AS BIGINT) AS tasks_found, \
                 CAST(SUM(u.stat_tasks_copied) AS BIGINT) AS tasks_copied, \
                 CAST(SUM(u.stat_contacts_skipped) AS BIGINT) AS contacts_skipped, \
                 CAST(SUM(u.stat_events_skipped) AS BIGINT) AS events_skipped, \
                 CAST(SUM(u.stat_tasks_skipped) AS BIGINT) AS tasks_skipped, \
                 CAST(SUM(CASE WHEN u.validated_at IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unvalidated \
                 FROM batch_user u WHERE u.batch_id = (SELECT id FROM batch WHERE name = ?) \
                 GROUP BY u.status ORDER BY u.status",
            ))
            .bind(&name)
            .fetch_all(&self.pool)
            .await?;
            let mut counts = Vec::new();
            let mut sums = Totals::default();
            let mut users_not_validated = 0;
            for r in rows {
                let number = |column: &str| -> Result<u64> {
                    Ok(totals::count(r.try_get::<i64, _>(column)?))
                };
                let status: UserStatus = named(&r, "status")?;
                if status != UserStatus::Failed {
                    users_not_validated += number("unvalidated")?;
                }
                counts.push((status, number("n")?));
                sums.add(&Totals {
                    folders: number("folders")?,
                    messages_found: number("messages_found")?,
                    messages_copied: number("messages_copied")?,
                    messages_matched: number("messages_matched")?,
                    messages_skipped: number("messages_skipped")?,
                    messages_failed: number("messages_failed")?,
                    messages_altered: number("messages_altered")?,
                    bytes_copied: number("bytes_copied")?,
                    contacts_found: number("contacts_found")?,
                    contacts_copied: number("contacts_copied")?,
                    events_found: number("events_found")?,
                    events_copied: number("events_copied")?,
                    tasks_found: number("tasks_found")?,
                    tasks_copied: number("tasks_copied")?,
                    contacts_skipped: number("contacts_skipped")?,
                    events_skipped: number("events_skipped")?,
                    tasks_skipped: number("tasks_skipped")?,
                });
            }
            batches.push(BatchSummary {
                name,
                batch_type: named(&row, "batch_type")?,
                source_endpoint: row.try_get("source_endpoint")?,
                target_endpoint: row.try_get("target_endpoint")?,
                status: named(&row, "status")?,
                parameters: json(&row, "parameters")?,
                created_at: row.try_get("created_at")?,
                started_at: row.try_get("started_at")?,
                initial_sync_done_at: row.try_get("initial_sync_done_at")?,
                completed_at: row.try_get("completed_at")?,
                user_counts: counts,
                totals: sums,
                users_not_validated,
                mails_claimed: [
                    ("status_mail", BatchMail::Status),
                    ("initial_sync_mail", BatchMail::InitialSync),
                    ("completion_mail", BatchMail::Completion),
                ]
                .into_iter()
                .filter_map(|(column, mail)| match row.try_get::<i64, _>(column) {
                    Ok(0) => None,
                    Ok(_) => Some(Ok(mail)),
                    Err(e) => Some(Err(e)),
                })
                .collect::<std::result::Result<_, _>>()?,
            });
        }
        Ok(batches)
    }

    pub async fn batch(&self, name: &str) -> Result<BatchSummary> {
        self.batches()
            .await?
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| Error::NoSuchBatch(name.to_string()))
    }

    /// Removes a batch, its users and their sealed passwords. Mail is not
    /// the store's to touch.
    pub async fn remove_batch(&self, name: &str) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let done = sqlx::query(self.sql("DELETE FROM batch WHERE name = ?"))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchBatch(name.to_string()));
        }
        let message = "batch removed with its users and their stored passwords";
        self.record(
            &mut tx,
            name,
            None,
            kind::BATCH_REMOVED,
            None,
            Some(message),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Users, of one batch or of all, in CSV order.
    pub async fn batch_users(&self, batch: Option<&str>) -> Result<Vec<BatchUser>> {
        self.find_users(&UserFilter {
            batch,
            ..UserFilter::default()
        })
        .await
    }

    /// The user with this address (any case), in whichever batch.
    pub async fn user_by_email(&self, email: &str) -> Result<BatchUser> {
        self.find_users(&UserFilter {
            email: Some(email),
            limit: Some(1),
            ..UserFilter::default()
        })
        .await?
        .pop()
        .ok_or_else(|| Error::NoSuchUser(email.to_string()))
    }

    /// Users matching `filter`, by batch name and CSV line.
    pub async fn find_users(&self, filter: &UserFilter<'_>) -> Result<Vec<BatchUser>> {
        // The search is a substring of the address: LIKE's own wildcards in
        // it are escaped.
        let pattern = filter.search.map(|text| {
            let escaped = text
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let rows = sqlx::query(self.sql(
            "SELECT b.name AS batch, u.email, u.csv_line, u.overrides, u.user_name, u.status, u.error, \
             u.started_at, u.first_started_at, u.validated_at, u.last_synced_at, u.stats, u.progress, u.lease_runner, \
             u.waiting, u.retry_at_ms - {now_ms} AS retry_in_ms, u.requested FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE (?1 IS NULL OR b.name = ?1) AND (?2 IS NULL OR u.status = ?2) \
             AND (?3 IS NULL OR lower(u.email) LIKE ?3 ESCAPE '\\') AND (?4 IS NULL OR lower(u.email) = lower(?4)) \
             AND (?5 IS NULL OR u.csv_line > ?5) \
             ORDER BY b.name, u.csv_line LIMIT COALESCE(?6, {no_limit})",
        ))
        .bind(filter.batch)
        .bind(filter.status.map(UserStatus::as_str))
        .bind(pattern)
        .bind(filter.email)
        .bind(filter.after_line.map(totals::db))
        .bind(filter.limit.map(i64::from))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchUser {
                    batch: row.try_get("batch")?,
                    email: row.try_get("email")?,
                    csv_line: totals::count(row.try_get("csv_line")?),
                    overrides: json(row, "overrides")?,
                    user_name: row.try_get("user_name")?,
                    status: named(row, "status")?,
                    error: row.try_get("error")?,
                    started_at: row.try_get("started_at")?,
                    first_started_at: row.try_get("first_started_at")?,
                    validated_at: row.try_get("validated_at")?,
                    last_synced_at: row.try_get("last_synced_at")?,
                    stats: optional_json(row, "stats")?,
                    progress: optional_json(row, "progress")?,
                    runner: row.try_get("lease_runner")?,
                    waiting: match row.try_get::<Option<String>, _>("waiting")? {
                        Some(reason) => Some(Waiting {
                            reason,
                            seconds_left: totals::count(
                                row.try_get::<Option<i64>, _>("retry_in_ms")?
                                    .unwrap_or(0)
                                    .max(0),
                            )
                            .div_ceil(1000),
                        }),
                        None => None,
                    },
                    requested: match row.try_get::<Option<String>, _>("requested")? {
                        Some(_) => Some(named(row, "requested")?),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// Sets a batch's status, stamping when it first started, first
    /// finished its initial syncs and completed; a change is logged.
    pub async fn set_batch_status(&self, name: &str, status: BatchStatus) -> Result<()> {
        let status = status.as_str();
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(self.sql("SELECT status FROM batch WHERE name = ?{for_update}"))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(Error::NoSuchBatch(name.to_string()));
        };
        let old: String = row.try_get("status")?;
        if old == status {
            return Ok(());
        }
        sqlx::query(self.sql(
            "UPDATE batch SET status = ?1, \
             started_at = CASE WHEN ?1 = 'Syncing' THEN COALESCE(started_at, {now_fine}) ELSE started_at END, \
             initial_sync_done_at = CASE WHEN ?1 IN ('Synced', 'SyncedWithErrors') \
                 THEN COALESCE(initial_sync_done_at, {now_fine}) ELSE initial_sync_done_at END, \
             completed_at = CASE WHEN ?1 IN ('Completed', 'CompletedWithErrors') THEN {now_fine} ELSE completed_at END \
             WHERE name = ?2",
        ))
        .bind(status)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let message = format!("{old} -> {status}");
        self.record(
            &mut tx,
            name,
            None,
            kind::BATCH_STATUS,
            Some(status),
            Some(&message),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a batch's parameters (`batch set`); the change is logged
    /// with the names of what changed.
    pub async fn set_batch_parameters(
        &self,
        name: &str,
        parameters: &BatchParameters,
        changed: &str,
    ) -> Result<()> {
        let json = totals::to_json("parameters", parameters)?;
        let mut tx = self.write_transaction().await?;
        let done = sqlx::query(self.sql("UPDATE batch SET parameters = ? WHERE name = ?"))
            .bind(json)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchBatch(name.to_string()));
        }
        let message = format!("parameters changed: {changed}");
        self.record(&mut tx, name, None, kind::NOTE, None, Some(&message))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves a batch's users from one status to another (e.g. Failed ->
    /// Queued on a restart), clearing their errors; returns how many moved.
    pub async fn move_users(&self, batch: &str, from: UserStatus, to: UserStatus) -> Result<u64> {
        self.move_users_where(Some(batch), from, to).await
    }

    /// Moves users of every batch from one status to another (the runner's
    /// recovery after a crash).
    pub async fn move_all_users(&self, from: UserStatus, to: UserStatus) -> Result<u64> {
        self.move_users_where(None, from, to).await
    }

    async fn move_users_where(
        &self,
        batch: Option<&str>,
        from: UserStatus,
        to: UserStatus,
    ) -> Result<u64> {
        let (from, to) = (from.as_str(), to.as_str());
        let mut tx = self.write_transaction().await?;
        // PostgreSQL: the users stay as they are until this commits.
        sqlx::query(self.sql(
            "SELECT u.id FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE u.status = ?1 AND (?2 IS NULL OR b.name = ?2){for_update_of_u}",
        ))
        .bind(from)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let message = format!("{from} -> {to}");
        self.announce_events(&mut tx).await?;
        sqlx::query(self.sql(
            "INSERT INTO event (batch, email, kind, status, message) \
             SELECT b.name, u.email, ?1, ?2, ?3 FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE u.status = ?4 AND (?5 IS NULL OR b.name = ?5) ORDER BY u.csv_line",
        ))
        .bind(kind::USER_STATUS)
        .bind(to)
        .bind(&message)
        .bind(from)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(self.sql(
            "UPDATE batch_user SET status = ?1, error = NULL WHERE status = ?2 \
             AND (?3 IS NULL OR batch_id = (SELECT id FROM batch WHERE name = ?3))",
        ))
        .bind(to)
        .bind(from)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Up to `limit` users of `batch` that a runner may start now as
    /// `which` says, in CSV order, with what a sync needs; users another
    /// runner holds are not among them. Filtered and limited in the
    /// database: a tick's cost follows what can start, not the batch's size.
    pub async fn startable_users(
        &self,
        batch: &str,
        which: Startable,
        limit: u32,
    ) -> Result<Vec<WorkItem>> {
        // One static text per case (sqlx takes static SQL).
        macro_rules! select_work {
            ($condition:literal) => {
                select_work_items!(concat!(
                    "(u.lease_runner IS NULL OR u.lease_expires_ms < {now_ms}) \
                     AND (u.retry_at_ms IS NULL OR u.retry_at_ms <= {now_ms}) \
                     AND (u.requested IS NULL OR u.requested = 'Complete') AND ",
                    $condition,
                ))
            };
        }
        let (sql, interval_secs) = match which {
            Startable::Initial => (
                select_work!(
                    "u.status = 'Queued' AND (b.batch_type <> 'staged' OR u.validated_at IS NOT NULL)"
                ),
                None,
            ),
            Startable::Preparation => (
                select_work!(
                    "u.status = 'Queued' AND b.batch_type = 'staged' AND u.validated_at IS NULL"
                ),
                None,
            ),
            Startable::Final => (select_work!("u.status IN ('Synced', 'Queued')"), None),
            Startable::CompleteAsked => (
                select_work!("u.status = 'Synced' AND u.requested = 'Complete'"),
                None,
            ),
            Startable::Incremental { interval_secs } => (
                select_work!(
                    "u.status = 'Synced' AND u.requested IS NULL \
                     AND (u.last_synced_at IS NULL OR {seconds_since_last_sync} >= ?3)"
                ),
                Some(i64::try_from(interval_secs).unwrap_or(i64::MAX)),
            ),
        };
        let mut query = sqlx::query(self.sql(sql))
            .bind(batch)
            .bind(i64::from(limit));
        if let Some(interval_secs) = interval_secs {
            query = query.bind(interval_secs);
        }
        let rows = query.fetch_all(&self.pool).await?;
        self.work_items(&rows).await
    }

    /// Every user of `batch` in CSV order, with what a sync needs, whatever
    /// its status or lease: for Analyze, which changes nothing.
    pub async fn batch_work_items(&self, batch: &str) -> Result<Vec<WorkItem>> {
        let rows = sqlx::query(self.sql(select_work_items!("?2 IS NULL")))
            .bind(batch)
            .bind(None::<i64>)
            .fetch_all(&self.pool)
            .await?;
        self.work_items(&rows).await
    }

    async fn work_items(&self, rows: &[sqlx::any::AnyRow]) -> Result<Vec<WorkItem>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let endpoints: HashMap<String, Endpoint> = self
            .endpoints()
            .await?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let endpoint = |name: &String| {
            endpoints
                .get(name)
                .cloned()
                .ok_or_else(|| Error::NoSuchEndpoint(name.clone()))
        };
        rows.iter()
            .map(|row| {
                let source: String = row.try_get("source_endpoint")?;
                let target: String = row.try_get("target_endpoint")?;
                Ok(WorkItem {
                    user_id: row.try_get("id")?,
                    batch: row.try_get("batch")?,
                    batch_type: named(row, "batch_type")?,
                    batch_status: named(row, "batch_status")?,
                    parameters: json(row, "parameters")?,
                    email: row.try_get("email")?,
                    overrides: json(row, "overrides")?,
                    user_name: row.try_get("user_name")?,
                    password_sealed: row.try_get("password_sealed")?,
                    target_user_name: row.try_get("target_user_name")?,
                    target_password_sealed: row.try_get("target_password_sealed")?,
                    refresh_token_sealed: row.try_get("refresh_token_sealed")?,
                    status: named(row, "status")?,
                    seconds_since_sync: row.try_get("since")?,
                    validated: row.try_get::<Option<String>, _>("validated_at")?.is_some(),
                    stats: optional_json(row, "stats")?,
                    retries: crate::to_u32("retries", row.try_get("retries")?)?,
                    stalled_ms: row
                        .try_get::<Option<i64>, _>("stalled_ms")?
                        .map(|ms| totals::count(ms.max(0))),
                    source: endpoint(&source)?,
                    target: endpoint(&target)?,
                })
            })
            .collect()
    }

    /// Records that a user is known good (logged in on both sides); the
    /// first time counts.
    pub async fn set_user_validated(&self, user_id: i64) -> Result<()> {
        sqlx::query(self.sql(
            "UPDATE batch_user SET validated_at = COALESCE(validated_at, {now}) WHERE id = ?",
        ))
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps what a user's preparation found before any sync (a staged
    /// user's Sieve scripts, copied at provisioning) in its statistics; the
    /// syncs add theirs (`UserStatistics::then`). The count columns are
    /// the syncs' to write.
    pub async fn record_user_statistics(&self, user_id: i64, stats: &UserStatistics) -> Result<()> {
        sqlx::query(self.sql("UPDATE batch_user SET stats = ? WHERE id = ?"))
            .bind(totals::to_json("stats", stats)?)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what a running sync is doing (JSON), or clears it.
    pub async fn set_user_progress(
        &self,
        user_id: i64,
        progress: Option<&SyncProgress>,
    ) -> Result<()> {
        let json = progress
            .map(|p| totals::to_json("progress", p))
            .transpose()?;
        let (messages, bytes) = progress.map_or((0, 0), |p| (p.messages_copied, p.bytes_copied));
        sqlx::query(self.sql(
            "UPDATE batch_user SET progress = ?, progress_messages_copied = ?, \
             progress_bytes_copied = ? WHERE id = ?",
        ))
        .bind(json)
        .bind(totals::db(messages))
        .bind(totals::db(bytes))
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a user's new status; `Syncing` also stamps the start, and a
    /// good end (`Synced`, `Completed`) stamps the last sync and its stats.
    /// A change of status, or an error, is logged.
    pub async fn set_user_status(
        &self,
        user_id: i64,
        status: UserStatus,
        error: Option<&str>,
        stats: Option<&UserStatistics>,
    ) -> Result<()> {
        self.update_user_status(user_id, None, status, error, stats, None)
            .await
            .map(|_| ())
    }

    /// Like `set_user_status`, for the runner that holds the user's lease:
    /// recorded (and the lease released) only while `runner` still holds
    /// it. Returns whether it did.
    pub async fn finish_user(
        &self,
        user_id: i64,
        runner: &str,
        status: UserStatus,
        error: Option<&str>,
        stats: Option<&UserStatistics>,
    ) -> Result<bool> {
        self.update_user_status(user_id, Some(runner), status, error, stats, None)
            .await
    }

    /// Gives a user back after a transient error (a busy, throttling or
    /// lost server): like `finish_user` to `status` (Queued or Synced), and
    /// it may start again only after `postponement.wait`, which `user
    /// show` and the views explain. Counts the try for the backoff, and
    /// starts the time without progress unless the sync made some.
    pub async fn postpone_user(
        &self,
        user_id: i64,
        runner: &str,
        status: UserStatus,
        stats: Option<&UserStatistics>,
        postponement: &Postponement<'_>,
    ) -> Result<bool> {
        self.update_user_status(
            user_id,
            Some(runner),
            status,
            None,
            stats,
            Some(postponement),
        )
        .await
    }

    async fn update_user_status(
        &self,
        user_id: i64,
        holder: Option<&str>,
        status: UserStatus,
        error: Option<&str>,
        stats: Option<&UserStatistics>,
        postponed: Option<&Postponement<'_>>,
    ) -> Result<bool> {
        let status = status.as_str();
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(self.sql(
            "SELECT b.name AS batch, u.email, u.status FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE u.id = ?1 AND (?2 IS NULL OR u.lease_runner = ?2){for_update_of_u}",
        ))
        .bind(user_id)
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await?;
        // A user removed with its batch meanwhile has nothing to record; a
        // lease another runner took over is not this runner's to end.
        let Some(row) = row else {
            return Ok(false);
        };
        let stats_json = stats
            .map(|stats| totals::to_json("stats", stats))
            .transpose()?;
        let number = |pick: fn(&UserStatistics) -> u64| stats.map(|stats| totals::db(pick(stats)));
        let dav = |pick: fn(&flytt_batch::DavStatistics) -> u64| {
            stats.map(|stats| totals::db(stats.dav.as_ref().map_or(0, pick)))
        };
        sqlx::query(self.sql(
            "UPDATE batch_user SET status = ?1, error = ?2, stats = COALESCE(?3, stats), \
             stat_folders = COALESCE(?5, stat_folders), stat_messages_found = COALESCE(?6, stat_messages_found), \
             stat_messages_copied = COALESCE(?7, stat_messages_copied), stat_messages_matched = COALESCE(?8, stat_messages_matched), \
             stat_messages_skipped = COALESCE(?9, stat_messages_skipped), stat_messages_failed = COALESCE(?10, stat_messages_failed), \
             stat_messages_altered = COALESCE(?11, stat_messages_altered), stat_bytes_copied = COALESCE(?12, stat_bytes_copied), \
             stat_contacts_found = COALESCE(?16, stat_contacts_found), stat_contacts_copied = COALESCE(?17, stat_contacts_copied), \
             stat_events_found = COALESCE(?18, stat_events_found), stat_events_copied = COALESCE(?19, stat_events_copied), \
             stat_tasks_found = COALESCE(?20, stat_tasks_found), stat_tasks_copied = COALESCE(?21, stat_tasks_copied), \
             stat_contacts_skipped = COALESCE(?22, stat_contacts_skipped), stat_events_skipped = COALESCE(?23, stat_events_skipped), \
             stat_tasks_skipped = COALESCE(?24, stat_tasks_skipped), \
             progress = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN progress ELSE NULL END, \
             progress_messages_copied = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN progress_messages_copied ELSE 0 END, \
             progress_bytes_copied = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN progress_bytes_copied ELSE 0 END, \
             started_at = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing') THEN {now} ELSE started_at END, \
             first_started_at = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing') THEN COALESCE(first_started_at, {now}) ELSE first_started_at END, \
             last_synced_at = CASE WHEN ?1 IN ('Synced', 'Completed') THEN {now} ELSE last_synced_at END, \
             validated_at = CASE WHEN ?1 IN ('Synced', 'Completed') THEN COALESCE(validated_at, {now}) ELSE validated_at END, \
             lease_runner = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN lease_runner ELSE NULL END, \
             lease_expires_ms = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN lease_expires_ms ELSE NULL END, \
             retry_at_ms = CASE WHEN ?13 IS NULL THEN NULL ELSE {now_ms} + ?13 END, \
             requested = CASE WHEN requested = 'Complete' AND ?1 IN ('Completed', 'Failed') THEN NULL ELSE requested END, \
             waiting = ?14, \
             retries = CASE WHEN ?13 IS NULL THEN 0 WHEN ?15 = 1 THEN 1 ELSE retries + 1 END, \
             stalled_since_ms = CASE WHEN ?13 IS NULL OR ?15 = 1 OR stalled_since_ms IS NULL THEN \
                 CASE WHEN ?13 IS NULL THEN NULL ELSE {now_ms} END ELSE stalled_since_ms END \
             WHERE id = ?4",
        ))
        .bind(status)
        .bind(error)
        .bind(stats_json)
        .bind(user_id)
        .bind(number(|n| n.folders))
        .bind(number(|n| n.messages_found))
        .bind(number(|n| n.messages_copied))
        .bind(number(|n| n.messages_matched))
        .bind(number(|n| n.messages_skipped))
        .bind(number(|n| n.messages_failed))
        .bind(number(|n| n.messages_altered))
        .bind(number(|n| n.bytes_copied))
        .bind(postponed.map(|p| totals::db(p.wait.as_millis() as u64)))
        .bind(postponed.map(|p| p.reason))
        .bind(postponed.map(|p| i64::from(p.progressed)))
        .bind(dav(|d| d.contacts.found))
        .bind(dav(|d| d.contacts.copied))
        .bind(dav(|d| d.events.found))
        .bind(dav(|d| d.events.copied))
        .bind(dav(|d| d.tasks.found))
        .bind(dav(|d| d.tasks.copied))
        .bind(dav(|d| d.contacts.skipped))
        .bind(dav(|d| d.events.skipped))
        .bind(dav(|d| d.tasks.skipped))
        .execute(&mut *tx)
        .await?;
        let old: String = row.try_get("status")?;
        if old != status || error.is_some() {
            let batch: String = row.try_get("batch")?;
            let email: String = row.try_get("email")?;
            let message = match (error, postponed) {
                (Some(error), _) => format!("{old} -> {status}: {error}"),
                (None, Some(p)) => format!(
                    "{old} -> {status}: waiting {} s: {}",
                    p.wait.as_secs(),
                    p.reason
                ),
                (None, None) => format!("{old} -> {status}"),
            };
            self.record(
                &mut tx,
                &batch,
                Some(&email),
                kind::USER_STATUS,
                Some(status),
                Some(&message),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
