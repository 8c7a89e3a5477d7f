//! flytt's persistent state. The store knows nothing of IMAP: it keeps
//! numbers and names that the sync engine gives it (ARCHITECTURE.md,
//! invariant 2). SQLite is the embedded default; its file lives in the data
//! directory.
//!
//! Writes use WAL and a busy timeout so that a CLI command and a running
//! job can share the file. The public methods are the interface a
//! PostgreSQL backend will implement too.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("corrupt value in column {column}: {value}")]
    Corrupt { column: &'static str, value: i64 },
    #[error("an endpoint named {0:?} exists already")]
    EndpointExists(String),
    #[error("no endpoint named {0:?}")]
    NoSuchEndpoint(String),
    #[error("endpoint {0:?} is used by a batch; remove the batch first")]
    EndpointInUse(String),
    #[error("a batch named {0:?} exists already")]
    BatchExists(String),
    #[error("no batch named {0:?}")]
    NoSuchBatch(String),
    #[error("no user {0:?} in any batch")]
    NoSuchUser(String),
}

/// A new batch and its users, as `create_batch` stores them.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub name: String,
    pub batch_type: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub parameters: String,
    pub users: Vec<NewBatchUser>,
}

#[derive(Clone, Debug)]
pub struct NewBatchUser {
    pub email: String,
    pub csv_line: u64,
    pub overrides: String,
    pub user_name: Option<String>,
    pub password_sealed: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password_sealed: Option<String>,
}

/// A batch as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSummary {
    pub name: String,
    pub batch_type: String,
    pub source_endpoint: String,
    pub target_endpoint: String,
    pub status: String,
    pub parameters: String,
    pub created_at: String,
    /// Users per status.
    pub user_counts: Vec<(String, u64)>,
}

/// Everything the job runner needs to sync one user (sealed secrets stay
/// sealed until the runner opens them).
#[derive(Clone, Debug)]
pub struct WorkItem {
    pub user_id: i64,
    pub batch: String,
    pub batch_type: String,
    pub batch_status: String,
    pub parameters: String,
    pub email: String,
    pub overrides: String,
    pub user_name: Option<String>,
    pub password_sealed: Option<String>,
    pub target_user_name: Option<String>,
    pub target_password_sealed: Option<String>,
    pub status: String,
    /// Seconds since the last good sync ended, if there was one.
    pub seconds_since_sync: Option<i64>,
    /// The statistics recorded so far (JSON written by the runner).
    pub stats: Option<String>,
    pub source: Endpoint,
    pub target: Endpoint,
}

/// A user of a batch, without secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchUser {
    pub batch: String,
    pub email: String,
    pub csv_line: u64,
    pub overrides: String,
    pub user_name: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub last_synced_at: Option<String>,
    /// The last sync's statistics (JSON written by the runner).
    pub stats: Option<String>,
    /// What a running sync is doing (JSON written by the runner).
    pub progress: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Identifies a (source mailbox, target mailbox) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairId(i64);

/// A folder's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderState {
    pub source_folder: String,
    pub target_folder: String,
    pub source_uidvalidity: u32,
    pub target_uidvalidity: u32,
    pub highest_modseq: Option<u64>,
    pub uid_next: Option<u32>,
}

/// One copied message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopiedMessage {
    pub source_uid: u32,
    pub target_uid: Option<u32>,
    /// Space-separated, sorted.
    pub flags: String,
}

/// A migration endpoint as stored. The store keeps the URL as text and the
/// admin password sealed; it interprets neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
    pub allow_plaintext: bool,
    pub ca_file: Option<String>,
    pub admin_user: Option<String>,
    /// `master` or `plain` (see the migration); the store does not interpret it.
    pub admin_mode: String,
    pub admin_password_sealed: Option<String>,
    pub max_concurrent_migrations: u32,
    pub max_concurrent_incremental_syncs: u32,
}

/// The state store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

/// `SELECT <every endpoint column> FROM endpoint <tail>`, as a static string
/// (sqlx takes only those, against injection).
macro_rules! select_endpoints {
    ($tail:literal) => {
        concat!(
            "SELECT name, url, allow_plaintext, ca_file, admin_user, admin_mode, admin_password_sealed, ",
            "max_concurrent_migrations, max_concurrent_incremental_syncs FROM endpoint ",
            $tail
        )
    };
}

fn endpoint_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Endpoint> {
    Ok(Endpoint {
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        allow_plaintext: row.try_get("allow_plaintext")?,
        ca_file: row.try_get("ca_file")?,
        admin_user: row.try_get("admin_user")?,
        admin_mode: row.try_get("admin_mode")?,
        admin_password_sealed: row.try_get("admin_password_sealed")?,
        max_concurrent_migrations: to_u32(
            "max_concurrent_migrations",
            row.try_get("max_concurrent_migrations")?,
        )?,
        max_concurrent_incremental_syncs: to_u32(
            "max_concurrent_incremental_syncs",
            row.try_get("max_concurrent_incremental_syncs")?,
        )?,
    })
}

async fn insert_users(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    batch_id: i64,
    users: &[NewBatchUser],
) -> Result<()> {
    for user in users {
        sqlx::query(
            "INSERT INTO batch_user (batch_id, email, csv_line, overrides, user_name, password_sealed, \
             target_user_name, target_password_sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(batch_id)
        .bind(&user.email)
        .bind(i64::try_from(user.csv_line).unwrap_or(i64::MAX))
        .bind(&user.overrides)
        .bind(&user.user_name)
        .bind(&user.password_sealed)
        .bind(&user.target_user_name)
        .bind(&user.target_password_sealed)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn to_u32(column: &'static str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Corrupt { column, value })
}

impl Store {
    /// Whether `data_dir` holds a store already.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join("flytt.db").exists()
    }

    /// Opens (creating if needed) `flytt.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("flytt.db");
        // Several flytt processes may open a new data directory at once;
        // migrations must run one at a time.
        let lock_path = data_dir.join("flytt.db.lock");
        let lock_file = lock_path.clone();
        // Waiting for the lock blocks; keep it off the async workers.
        let lock = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_file)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| Error::Open {
            path: lock_path.display().to_string(),
            source: sqlx::Error::Io(e),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let store = Self::connect(options, path.display().to_string()).await;
        drop(lock);
        store
    }

    /// A private in-memory store (tests, dry runs).
    pub async fn in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|source| Error::Open {
                path: ":memory:".into(),
                source,
            })?
            .foreign_keys(true);
        Self::connect(options, ":memory:".into()).await
    }

    async fn connect(options: SqliteConnectOptions, path: String) -> Result<Store> {
        // Waiting for another process's write is normal here, not an alert.
        let options = options
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Info, Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            // One writer at a time is SQLite's model anyway; readers share.
            .max_connections(if path == ":memory:" { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(|source| Error::Open { path, source })?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Adds an endpoint; its name must be new.
    pub async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO endpoint (name, url, allow_plaintext, ca_file, admin_user, admin_mode, admin_password_sealed, \
             max_concurrent_migrations, max_concurrent_incremental_syncs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&endpoint.name)
        .bind(&endpoint.url)
        .bind(endpoint.allow_plaintext)
        .bind(&endpoint.ca_file)
        .bind(&endpoint.admin_user)
        .bind(&endpoint.admin_mode)
        .bind(&endpoint.admin_password_sealed)
        .bind(i64::from(endpoint.max_concurrent_migrations))
        .bind(i64::from(endpoint.max_concurrent_incremental_syncs))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::EndpointExists(endpoint.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an endpoint's settings (found by name).
    pub async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<()> {
        let done = sqlx::query(
            "UPDATE endpoint SET url = ?, allow_plaintext = ?, ca_file = ?, admin_user = ?, admin_mode = ?, \
             admin_password_sealed = ?, max_concurrent_migrations = ?, max_concurrent_incremental_syncs = ? \
             WHERE name = ?",
        )
        .bind(&endpoint.url)
        .bind(endpoint.allow_plaintext)
        .bind(&endpoint.ca_file)
        .bind(&endpoint.admin_user)
        .bind(&endpoint.admin_mode)
        .bind(&endpoint.admin_password_sealed)
        .bind(i64::from(endpoint.max_concurrent_migrations))
        .bind(i64::from(endpoint.max_concurrent_incremental_syncs))
        .bind(&endpoint.name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchEndpoint(endpoint.name.clone()));
        }
        Ok(())
    }

    pub async fn endpoint(&self, name: &str) -> Result<Endpoint> {
        let row = sqlx::query(select_endpoints!("WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => endpoint_from_row(&row),
            None => Err(Error::NoSuchEndpoint(name.to_string())),
        }
    }

    /// Every endpoint, by name.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let rows = sqlx::query(select_endpoints!("ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    pub async fn remove_endpoint(&self, name: &str) -> Result<()> {
        let done = match sqlx::query("DELETE FROM endpoint WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
        {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                return Err(Error::EndpointInUse(name.to_string()));
            }
            other => other?,
        };
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchEndpoint(name.to_string()));
        }
        Ok(())
    }

    /// Stores a batch and its users in one transaction.
    pub async fn create_batch(&self, batch: &NewBatch) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        for endpoint in [&batch.source_endpoint, &batch.target_endpoint] {
            let found = sqlx::query("SELECT 1 FROM endpoint WHERE name = ?")
                .bind(endpoint)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(Error::NoSuchEndpoint(endpoint.clone()));
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO batch (name, batch_type, source_endpoint, target_endpoint, parameters) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&batch.name)
        .bind(&batch.batch_type)
        .bind(&batch.source_endpoint)
        .bind(&batch.target_endpoint)
        .bind(&batch.parameters)
        .execute(&mut *tx)
        .await;
        let batch_id = match inserted {
            Ok(done) => done.last_insert_rowid(),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::BatchExists(batch.name.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        insert_users(&mut tx, batch_id, &batch.users).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds users to an existing batch, in one transaction (status Queued).
    pub async fn add_batch_users(&self, batch: &str, users: &[NewBatchUser]) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query("SELECT id FROM batch WHERE name = ?")
            .bind(batch)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(Error::NoSuchBatch(batch.to_string()));
        };
        let batch_id: i64 = row.try_get("id")?;
        insert_users(&mut tx, batch_id, users).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every user in a batch that is not completed: (email, batch name).
    pub async fn active_users(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT u.email, b.name FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE b.status NOT IN ('Completed', 'CompletedWithErrors')",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("email")?, row.try_get("name")?)))
            .collect()
    }

    /// Every batch with its users counted per status.
    pub async fn batches(&self) -> Result<Vec<BatchSummary>> {
        let rows = sqlx::query(
            "SELECT name, batch_type, source_endpoint, target_endpoint, status, parameters, created_at \
             FROM batch ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut batches = Vec::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let counts = sqlx::query(
                "SELECT u.status, COUNT(*) AS n FROM batch_user u JOIN batch b ON b.id = u.batch_id \
                 WHERE b.name = ? GROUP BY u.status ORDER BY u.status",
            )
            .bind(&name)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get::<i64, _>("n")? as u64)))
            .collect::<Result<Vec<_>>>()?;
            batches.push(BatchSummary {
                name,
                batch_type: row.try_get("batch_type")?,
                source_endpoint: row.try_get("source_endpoint")?,
                target_endpoint: row.try_get("target_endpoint")?,
                status: row.try_get("status")?,
                parameters: row.try_get("parameters")?,
                created_at: row.try_get("created_at")?,
                user_counts: counts,
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
        let done = sqlx::query("DELETE FROM batch WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchBatch(name.to_string()));
        }
        Ok(())
    }

    /// Users, of one batch or of all, in CSV order.
    pub async fn batch_users(&self, batch: Option<&str>) -> Result<Vec<BatchUser>> {
        let rows = sqlx::query(
            "SELECT b.name AS batch, u.email, u.csv_line, u.overrides, u.user_name, u.status, u.error, \
             u.last_synced_at, u.stats, u.progress FROM batch_user u JOIN batch b ON b.id = u.batch_id \
             WHERE ?1 IS NULL OR b.name = ?1 ORDER BY b.name, u.csv_line",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BatchUser {
                    batch: row.try_get("batch")?,
                    email: row.try_get("email")?,
                    csv_line: row.try_get::<i64, _>("csv_line")? as u64,
                    overrides: row.try_get("overrides")?,
                    user_name: row.try_get("user_name")?,
                    status: row.try_get("status")?,
                    error: row.try_get("error")?,
                    last_synced_at: row.try_get("last_synced_at")?,
                    stats: row.try_get("stats")?,
                    progress: row.try_get("progress")?,
                })
            })
            .collect()
    }

    /// Sets a batch's status.
    pub async fn set_batch_status(&self, name: &str, status: &str) -> Result<()> {
        let done = sqlx::query("UPDATE batch SET status = ? WHERE name = ?")
            .bind(status)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NoSuchBatch(name.to_string()));
        }
        Ok(())
    }

    /// Moves a batch's users from one status to another (e.g. Failed ->
    /// Queued on a restart); returns how many moved.
    pub async fn move_users(&self, batch: &str, from: &str, to: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE batch_user SET status = ?, error = NULL WHERE status = ? \
             AND batch_id = (SELECT id FROM batch WHERE name = ?)",
        )
        .bind(to)
        .bind(from)
        .bind(batch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Moves users of every batch from one status to another (the runner's
    /// recovery after a crash).
    pub async fn move_all_users(&self, from: &str, to: &str) -> Result<u64> {
        let done = sqlx::query("UPDATE batch_user SET status = ? WHERE status = ?")
            .bind(to)
            .bind(from)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Users of batches in one of `batch_statuses`, with what a sync needs.
    pub async fn work_items(&self, batch_statuses: &[&str]) -> Result<Vec<WorkItem>> {
        let rows = sqlx::query(
            "SELECT u.id, b.name AS batch, b.batch_type, b.status AS batch_status, b.parameters, u.email, \
             u.overrides, u.user_name, u.password_sealed, u.target_user_name, u.target_password_sealed, \
             u.status, u.stats, CAST(strftime('%s','now') - strftime('%s', u.last_synced_at) AS INTEGER) AS since, \
             b.source_endpoint, b.target_endpoint \
             FROM batch_user u JOIN batch b ON b.id = u.batch_id ORDER BY b.created_at, u.csv_line",
        )
        .fetch_all(&self.pool)
        .await?;
        let endpoints: HashMap<String, Endpoint> = self
            .endpoints()
            .await?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let mut items = Vec::new();
        for row in rows {
            let batch_status: String = row.try_get("batch_status")?;
            if !batch_statuses.contains(&batch_status.as_str()) {
                continue;
            }
            let source: String = row.try_get("source_endpoint")?;
            let target: String = row.try_get("target_endpoint")?;
            let endpoint = |name: &String| {
                endpoints
                    .get(name)
                    .cloned()
                    .ok_or_else(|| Error::NoSuchEndpoint(name.clone()))
            };
            items.push(WorkItem {
                user_id: row.try_get("id")?,
                batch: row.try_get("batch")?,
                batch_type: row.try_get("batch_type")?,
                batch_status,
                parameters: row.try_get("parameters")?,
                email: row.try_get("email")?,
                overrides: row.try_get("overrides")?,
                user_name: row.try_get("user_name")?,
                password_sealed: row.try_get("password_sealed")?,
                target_user_name: row.try_get("target_user_name")?,
                target_password_sealed: row.try_get("target_password_sealed")?,
                status: row.try_get("status")?,
                seconds_since_sync: row.try_get("since")?,
                stats: row.try_get("stats")?,
                source: endpoint(&source)?,
                target: endpoint(&target)?,
            });
        }
        Ok(items)
    }

    /// Records what a running sync is doing (JSON), or clears it.
    pub async fn set_user_progress(&self, user_id: i64, progress: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE batch_user SET progress = ? WHERE id = ?")
            .bind(progress)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a user's new status; `Syncing` also stamps the start, and a
    /// good end (`Synced`, `Completed`) stamps the last sync and its stats.
    pub async fn set_user_status(
        &self,
        user_id: i64,
        status: &str,
        error: Option<&str>,
        stats: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE batch_user SET status = ?1, error = ?2, stats = COALESCE(?3, stats), \
             progress = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing', 'Completing') THEN progress ELSE NULL END, \
             started_at = CASE WHEN ?1 IN ('Syncing', 'IncrementalSyncing') THEN CURRENT_TIMESTAMP ELSE started_at END, \
             last_synced_at = CASE WHEN ?1 IN ('Synced', 'Completed') THEN CURRENT_TIMESTAMP ELSE last_synced_at END \
             WHERE id = ?4",
        )
        .bind(status)
        .bind(error)
        .bind(stats)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Starts a transaction that takes the write lock at once. A deferred
    /// transaction that reads first and writes later fails with "database is
    /// locked" when another process wrote meanwhile (WAL snapshots cannot be
    /// upgraded); an immediate one waits its turn within the busy timeout.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The pair's id, created on first use. Keys name the mailboxes
    /// (`user@host:port`); they hold no secret.
    pub async fn mailbox_pair(&self, source_key: &str, target_key: &str) -> Result<PairId> {
        sqlx::query(
            "INSERT INTO mailbox_pair (source_key, target_key) VALUES (?, ?) \
             ON CONFLICT (source_key, target_key) DO NOTHING",
        )
        .bind(source_key)
        .bind(target_key)
        .execute(&self.pool)
        .await?;
        let row =
            sqlx::query("SELECT id FROM mailbox_pair WHERE source_key = ? AND target_key = ?")
                .bind(source_key)
                .bind(target_key)
                .fetch_one(&self.pool)
                .await?;
        Ok(PairId(row.try_get("id")?))
    }

    pub async fn folder_state(
        &self,
        pair: PairId,
        source_folder: &str,
    ) -> Result<Option<FolderState>> {
        let row = sqlx::query(
            "SELECT source_folder, target_folder, source_uidvalidity, target_uidvalidity, \
             highest_modseq, uid_next FROM folder_state WHERE pair_id = ? AND source_folder = ?",
        )
        .bind(pair.0)
        .bind(source_folder)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<FolderState> {
            Ok(FolderState {
                source_folder: row.try_get("source_folder")?,
                target_folder: row.try_get("target_folder")?,
                source_uidvalidity: to_u32(
                    "source_uidvalidity",
                    row.try_get("source_uidvalidity")?,
                )?,
                target_uidvalidity: to_u32(
                    "target_uidvalidity",
                    row.try_get("target_uidvalidity")?,
                )?,
                highest_modseq: row
                    .try_get::<Option<i64>, _>("highest_modseq")?
                    .map(|v| v as u64),
                uid_next: row
                    .try_get::<Option<i64>, _>("uid_next")?
                    .map(|v| to_u32("uid_next", v))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Starts or restarts a folder's checkpoint. When either UIDVALIDITY
    /// differs from the stored one, the folder's UID map is dropped: its
    /// UIDs no longer name the same messages.
    pub async fn begin_folder(&self, pair: PairId, state: &FolderState) -> Result<()> {
        let mut tx = self.write_transaction().await?;
        let existing = sqlx::query(
            "SELECT source_uidvalidity, target_uidvalidity, target_folder FROM folder_state \
             WHERE pair_id = ? AND source_folder = ?",
        )
        .bind(pair.0)
        .bind(&state.source_folder)
        .fetch_optional(&mut *tx)
        .await?;
        let same_epoch = match &existing {
            Some(row) => {
                row.try_get::<i64, _>("source_uidvalidity")? == i64::from(state.source_uidvalidity)
                    && row.try_get::<i64, _>("target_uidvalidity")?
                        == i64::from(state.target_uidvalidity)
                    && row.try_get::<String, _>("target_folder")? == state.target_folder
            }
            None => false,
        };
        if !same_epoch {
            sqlx::query("DELETE FROM message_map WHERE pair_id = ? AND source_folder = ?")
                .bind(pair.0)
                .bind(&state.source_folder)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO folder_state (pair_id, source_folder, target_folder, source_uidvalidity, \
                 target_uidvalidity, highest_modseq, uid_next) VALUES (?, ?, ?, ?, ?, NULL, NULL) \
                 ON CONFLICT (pair_id, source_folder) DO UPDATE SET target_folder = excluded.target_folder, \
                 source_uidvalidity = excluded.source_uidvalidity, target_uidvalidity = excluded.target_uidvalidity, \
                 highest_modseq = NULL, uid_next = NULL",
            )
            .bind(pair.0)
            .bind(&state.source_folder)
            .bind(&state.target_folder)
            .bind(i64::from(state.source_uidvalidity))
            .bind(i64::from(state.target_uidvalidity))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that a pass over the folder completed up to these marks.
    pub async fn finish_folder(
        &self,
        pair: PairId,
        source_folder: &str,
        highest_modseq: Option<u64>,
        uid_next: Option<u32>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE folder_state SET highest_modseq = ?, uid_next = ? WHERE pair_id = ? AND source_folder = ?",
        )
        .bind(highest_modseq.map(|v| v as i64))
        .bind(uid_next.map(i64::from))
        .bind(pair.0)
        .bind(source_folder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks that APPENDs for the folder are (or are no longer) in flight.
    pub async fn set_appending(
        &self,
        pair: PairId,
        source_folder: &str,
        appending: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE folder_state SET appending = ? WHERE pair_id = ? AND source_folder = ?",
        )
        .bind(i64::from(appending))
        .bind(pair.0)
        .bind(source_folder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the last run died with APPENDs for the folder in flight.
    pub async fn was_appending(&self, pair: PairId, source_folder: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT appending FROM folder_state WHERE pair_id = ? AND source_folder = ?",
        )
        .bind(pair.0)
        .bind(source_folder)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get::<i64, _>("appending")? != 0,
            None => false,
        })
    }

    /// Every copied message of a folder.
    pub async fn copied(&self, pair: PairId, source_folder: &str) -> Result<Vec<CopiedMessage>> {
        let rows = sqlx::query(
            "SELECT source_uid, target_uid, flags FROM message_map \
             WHERE pair_id = ? AND source_folder = ? ORDER BY source_uid",
        )
        .bind(pair.0)
        .bind(source_folder)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(CopiedMessage {
                    source_uid: to_u32("source_uid", row.try_get("source_uid")?)?,
                    target_uid: row
                        .try_get::<Option<i64>, _>("target_uid")?
                        .map(|v| to_u32("target_uid", v))
                        .transpose()?,
                    flags: row.try_get("flags")?,
                })
            })
            .collect()
    }

    /// Records copies the target confirmed, in one transaction; a row that
    /// exists is replaced (its target UID became known, or flags changed).
    pub async fn record_copied(
        &self,
        pair: PairId,
        source_folder: &str,
        messages: &[CopiedMessage],
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_transaction().await?;
        for m in messages {
            sqlx::query(
                "INSERT INTO message_map (pair_id, source_folder, source_uid, target_uid, flags) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (pair_id, source_folder, source_uid) DO UPDATE \
                 SET target_uid = excluded.target_uid, flags = excluded.flags",
            )
            .bind(pair.0)
            .bind(source_folder)
            .bind(i64::from(m.source_uid))
            .bind(m.target_uid.map(i64::from))
            .bind(&m.flags)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(validity: u32) -> FolderState {
        FolderState {
            source_folder: "INBOX".into(),
            target_folder: "INBOX".into(),
            source_uidvalidity: validity,
            target_uidvalidity: 7,
            highest_modseq: None,
            uid_next: None,
        }
    }

    #[tokio::test]
    async fn uid_map_survives_reopen_and_resets_on_new_uidvalidity() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Open {
            path: "tmp".into(),
            source: sqlx::Error::Io(e),
        })?;
        let store = Store::open(dir.path()).await?;
        let pair = store.mailbox_pair("a@src:143", "a@dst:143").await?;
        assert_eq!(pair, store.mailbox_pair("a@src:143", "a@dst:143").await?);
        store.begin_folder(pair, &state(1)).await?;
        let copied = vec![
            CopiedMessage {
                source_uid: 1,
                target_uid: Some(10),
                flags: "\\Seen".into(),
            },
            CopiedMessage {
                source_uid: 2,
                target_uid: None,
                flags: String::new(),
            },
        ];
        store.record_copied(pair, "INBOX", &copied).await?;
        store
            .finish_folder(pair, "INBOX", Some(u64::from(u32::MAX) + 5), Some(3))
            .await?;
        drop(store);

        let store = Store::open(dir.path()).await?;
        assert_eq!(store.copied(pair, "INBOX").await?, copied);
        store.begin_folder(pair, &state(1)).await?;
        assert_eq!(
            store.copied(pair, "INBOX").await?.len(),
            2,
            "same epoch keeps the map"
        );
        assert_eq!(
            store
                .folder_state(pair, "INBOX")
                .await?
                .and_then(|s| s.highest_modseq),
            Some(u64::from(u32::MAX) + 5)
        );
        store.begin_folder(pair, &state(2)).await?;
        assert!(
            store.copied(pair, "INBOX").await?.is_empty(),
            "new UIDVALIDITY drops the map"
        );
        Ok(())
    }

    /// Regression: several `flytt sync` processes on one new data directory
    /// raced in the migration ("table already exists") and failed writes
    /// with "database is locked".
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_processes_share_a_new_data_dir() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Open {
            path: "tmp".into(),
            source: sqlx::Error::Io(e),
        })?;
        let mut tasks = Vec::new();
        for user in 0..8 {
            let path = dir.path().to_path_buf();
            tasks.push(tokio::spawn(async move {
                let store = Store::open(&path).await?;
                let pair = store
                    .mailbox_pair(&format!("u{user}@src"), &format!("u{user}@dst"))
                    .await?;
                store.begin_folder(pair, &state(1)).await?;
                for batch in 0..20u32 {
                    let rows: Vec<CopiedMessage> = (0..50)
                        .map(|i| CopiedMessage {
                            source_uid: batch * 50 + i + 1,
                            target_uid: Some(batch * 50 + i + 1),
                            flags: String::new(),
                        })
                        .collect();
                    store.record_copied(pair, "INBOX", &rows).await?;
                }
                Ok::<usize, Error>(store.copied(pair, "INBOX").await?.len())
            }));
        }
        for task in tasks {
            let copied = task.await.map_err(|e| Error::Open {
                path: e.to_string(),
                source: sqlx::Error::PoolClosed,
            })??;
            assert_eq!(copied, 1000);
        }
        Ok(())
    }

    #[tokio::test]
    async fn endpoints_are_named_uniquely_and_round_trip() -> Result<()> {
        let store = Store::in_memory().await?;
        let mut endpoint = Endpoint {
            name: "gammel".into(),
            url: "imaps://mail.example.org:993".into(),
            allow_plaintext: false,
            ca_file: None,
            admin_user: Some("admin".into()),
            admin_mode: "master".into(),
            admin_password_sealed: Some("v1:abcd:xyz".into()),
            max_concurrent_migrations: 20,
            max_concurrent_incremental_syncs: 10,
        };
        store.create_endpoint(&endpoint).await?;
        assert!(matches!(
            store.create_endpoint(&endpoint).await,
            Err(Error::EndpointExists(name)) if name == "gammel"
        ));
        assert_eq!(store.endpoint("gammel").await?, endpoint);
        endpoint.max_concurrent_migrations = 5;
        store.update_endpoint(&endpoint).await?;
        assert_eq!(store.endpoints().await?, vec![endpoint]);
        store.remove_endpoint("gammel").await?;
        assert!(matches!(
            store.endpoint("gammel").await,
            Err(Error::NoSuchEndpoint(_))
        ));
        assert!(matches!(
            store.remove_endpoint("gammel").await,
            Err(Error::NoSuchEndpoint(_))
        ));
        Ok(())
    }
}
