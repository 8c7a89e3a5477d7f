//! flytt's persistent state. The store knows nothing of IMAP: it keeps
//! numbers and names that the sync engine gives it (ARCHITECTURE.md,
//! invariant 2). Two backends behind one `Store`: SQLite, the embedded
//! default, in the data directory (WAL and a busy timeout, so that a CLI
//! command and running jobs share the file), and PostgreSQL, which runners
//! on several machines share (`Store::connect`). One SQL text serves both
//! (see `dialect`).
//!
//! What goes in and out is typed: statuses, batch types, parameters and
//! overrides are flytt-batch's types; a stored value that does not parse is
//! an error, never a default.

mod analysis;
mod batches;
mod dav_state;
mod dialect;
mod directories;
mod endpoints;
mod events;
mod leases;
mod mails;
mod requests;
mod sync_state;
mod tokens;
mod totals;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

pub use analysis::ANALYSIS_ABANDONED_AFTER;
pub use batches::{
    BatchState, BatchSummary, BatchUser, NewBatch, NewBatchUser, Postponement, Startable,
    UserFilter, Waiting, WorkItem,
};
pub use dav_state::DavCopied;
pub use dialect::Backend;
pub use directories::StoredDirectory;
pub use endpoints::{
    AdminMode, Compression, DEFAULT_CONNECTIONS_PER_USER, DownloadLimit, Endpoint, EndpointOAuth,
    OAuthMechanism,
};
pub use events::{Event, EventFilter, kind as event_kind};
pub use leases::{Claim, ClaimOutcome, EndpointLimit, RunnerInfo};
pub use mails::BatchMail;
pub use requests::{UserChanges, UserRef};
pub use sync_state::{CopiedMessage, DownloadWindow, FolderState, InterruptedAppends, PairId};
pub use tokens::ApiToken;
pub use totals::Totals;

/// The environment variable that names a PostgreSQL database instead of
/// the data directory's SQLite file (`--database-url` on the command line).
pub const DATABASE_URL_ENV: &str = "FLYTT_DATABASE_URL";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the database {place}: {source}")]
    Open {
        place: String,
        source: DatabaseError,
    },
    #[error("not a database URL flytt can use: {0} (postgres://USER@HOST:PORT/DATABASE)")]
    BadUrl(String),
    #[error("cannot migrate the database: {0}")]
    Migrate(DatabaseError),
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
    #[error("corrupt value in column {column}: {value}")]
    Corrupt { column: &'static str, value: i64 },
    #[error("{column} holds {value:?}, which names nothing flytt knows")]
    Unknown { column: &'static str, value: String },
    #[error("{column} is not the JSON it should be: {reason}")]
    BadJson {
        column: &'static str,
        reason: String,
    },
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
    #[error("no user {email:?} in batch {batch:?}")]
    NoSuchUserInBatch { email: String, batch: String },
    #[error("user {email:?} is in batch {batch:?} already")]
    UserInBatch { email: String, batch: String },
    #[error("user {0:?} is syncing: stop it first (flytt user stop), then move it")]
    UserRunning(String),
    #[error("a directory named {0:?} exists already")]
    DirectoryExists(String),
    #[error("no directory named {0:?}")]
    NoSuchDirectory(String),
    #[error("directory {0:?} is used by an endpoint; change the endpoint first")]
    DirectoryInUse(String),
    #[error("a token named {0:?} exists already")]
    TokenExists(String),
    #[error("no token named {0:?}")]
    NoSuchToken(String),
}

impl Error {
    /// Whether the fault is the database's or the data's, not the
    /// request's: the caller logs it and shows no details.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Open { .. }
                | Error::BadUrl(_)
                | Error::Migrate(_)
                | Error::Database(_)
                | Error::Corrupt { .. }
                | Error::BadJson { .. }
                | Error::Unknown { .. }
        )
    }
}

/// What the database driver said, without its types (which backend's
/// driver it was is the store's business).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DatabaseError(Box<dyn std::error::Error + Send + Sync>);

impl From<sqlx::Error> for DatabaseError {
    fn from(e: sqlx::Error) -> Self {
        DatabaseError(Box::new(e))
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(e.into())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate(DatabaseError(Box::new(e)))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The state store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Bumped when the event log may have grown (see `changes`).
    changes: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

/// The PostgreSQL channel every event is announced on.
const EVENTS_CHANNEL: &str = "flytt_events";

#[derive(Clone, Copy, PartialEq, Eq)]
enum SqliteKind {
    File,
    Memory,
}

fn to_u32(column: &'static str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Corrupt { column, value })
}

fn to_u64(column: &'static str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt { column, value })
}

/// `url` without its password, for messages.
pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

impl Store {
    /// Whether `data_dir` holds a store already.
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join("flytt.db").exists()
    }

    /// The database of `database_url` (PostgreSQL) when one is given, else
    /// the data directory's SQLite file.
    pub async fn open_at(data_dir: &Path, database_url: Option<&str>) -> Result<Store> {
        match database_url {
            Some(url) => Self::connect(url).await,
            None => Self::open(data_dir).await,
        }
    }

    /// Opens (creating if needed) `flytt.db` in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("flytt.db");
        let place = path.display().to_string();
        // Several flytt processes may open a new data directory at once;
        // migrations (and the switch to WAL) must run one at a time.
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
            place: lock_path.display().to_string(),
            source: sqlx::Error::Io(e).into(),
        })?;
        let url = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .to_url_lossy();
        let store = Self::connect_sqlite(url.as_str(), place, SqliteKind::File).await;
        drop(lock);
        store
    }

    /// A private in-memory store (tests, dry runs).
    pub async fn in_memory() -> Result<Store> {
        Self::connect_sqlite("sqlite::memory:", ":memory:".into(), SqliteKind::Memory).await
    }

    /// Connects to a PostgreSQL database (`postgres://USER@HOST:PORT/DB`)
    /// and migrates it; the migrations take a lock, so several runners may
    /// start at once.
    pub async fn connect(url: &str) -> Result<Store> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::BadUrl(redacted_url(url)));
        }
        let place = redacted_url(url);
        let options = Self::logged(
            AnyConnectOptions::from_str(url).map_err(|_| Error::BadUrl(place.clone()))?,
        );
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // A runner paused mid-transaction (SIGSTOP, a frozen VM)
                    // would hold its row locks until it wakes; the server
                    // ends such a session instead, and its lease expires.
                    connection
                        .execute("SET idle_in_transaction_session_timeout = '60s'")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| Error::Open {
                place: place.clone(),
                source: e.into(),
            })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = Store::with_pool(pool, Backend::Postgres);
        tokio::spawn(listen_for_events(
            url.to_string(),
            std::sync::Arc::downgrade(&store.changes),
        ));
        Ok(store)
    }

    async fn connect_sqlite(url: &str, place: String, kind: SqliteKind) -> Result<Store> {
        let options = Self::logged(AnyConnectOptions::from_str(url).map_err(|e| Error::Open {
            place: place.clone(),
            source: e.into(),
        })?);
        sqlx::any::install_default_drivers();
        let pool = match kind {
            // One writer at a time is SQLite's model anyway; readers share.
            SqliteKind::File => AnyPoolOptions::new().max_connections(4),
            // Every connection has a memory database of its own: keep one.
            SqliteKind::Memory => AnyPoolOptions::new()
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
        };
        let pool = pool
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // Waiting for another process's write is normal.
                    connection
                        .execute(
                            "PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON; \
                             PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| Error::Open {
                place: place.clone(),
                source: e.into(),
            })?;
        if kind == SqliteKind::File {
            // WAL lets readers go on while one process writes; the mode is
            // kept in the file (the caller holds the open lock).
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store::with_pool(pool, Backend::Sqlite))
    }

    fn with_pool(pool: AnyPool, backend: Backend) -> Store {
        Store {
            pool,
            backend,
            changes: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Wakes when the event log may have grown: on this process's writes,
    /// and on PostgreSQL on every runner's (LISTEN/NOTIFY). A hint only:
    /// readers still read the log by id, and should also look now and then
    /// (another process on the same SQLite file does not wake them).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn announce_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn logged(options: AnyConnectOptions) -> AnyConnectOptions {
        // Waiting for another process's write is normal here, not an alert.
        options
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Info, Duration::from_secs(5))
    }

    /// Which database this store keeps its state in.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `sql` in this backend's dialect (see `dialect`).
    pub(crate) fn sql(&self, sql: &'static str) -> &'static str {
        dialect::translate(self.backend, sql)
    }

    /// Starts a transaction for a read followed by writes. SQLite: takes the
    /// write lock at once (a deferred transaction that reads first and
    /// writes later fails with "database is locked" when another process
    /// wrote meanwhile; an immediate one waits its turn within the busy
    /// timeout). PostgreSQL: the statements lock the rows they read
    /// (`{for_update}`), so the transaction itself is a plain one.
    pub(crate) async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Forwards the database's event notifications to the store's `changes`
/// until the store is gone; reconnects after a lost connection.
async fn listen_for_events(url: String, changes: std::sync::Weak<tokio::sync::watch::Sender<u64>>) {
    while changes.strong_count() > 0 {
        if let Ok(mut listener) = sqlx::postgres::PgListener::connect(&url).await
            && listener.listen(EVENTS_CHANNEL).await.is_ok()
        {
            while listener.recv().await.is_ok() {
                match changes.upgrade() {
                    Some(changes) => changes.send_modify(|n| *n = n.wrapping_add(1)),
                    None => return,
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
